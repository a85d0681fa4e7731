"""FlowService servicer."""

from __future__ import annotations

import grpc

from controlplane.api import convert
from controlplane.api.status import rpc
from controlplane.errors import FlowValidationError, InvalidArgumentError, NotFoundError
from controlplane.service.flow_registry import FlowRegistry
from controlplane.store import repository as repo
from kestrel.v1 import flow_pb2, flow_pb2_grpc


class FlowServicer(flow_pb2_grpc.FlowServiceServicer):
    """Thin gRPC layer over :class:`FlowRegistry` and the flow repository."""

    def __init__(self, control_plane) -> None:
        self._cp = control_plane
        self._registry: FlowRegistry = control_plane.flows

    @rpc
    async def ValidateFlow(self, request: flow_pb2.ValidateFlowRequest, context: grpc.aio.ServicerContext):
        async with self._cp.transaction() as unit:
            try:
                flow, warnings = await self._registry.validate(unit.conn, request.source)
            except FlowValidationError as exc:
                ns, _, fid = exc.flow_ref.rpartition(".")
                return flow_pb2.ValidateFlowResponse(
                    valid=False, errors=[convert.issue_to_proto(i) for i in exc.issues], namespace=ns, id=fid
                )
        return flow_pb2.ValidateFlowResponse(
            valid=True, warnings=[convert.issue_to_proto(i) for i in warnings], namespace=flow.namespace, id=flow.id
        )

    @rpc
    async def RegisterFlow(self, request: flow_pb2.RegisterFlowRequest, context: grpc.aio.ServicerContext):
        if request.expected_revision < 0:
            raise InvalidArgumentError("expected_revision: must be >= 0")
        async with self._cp.transaction() as unit:
            row, created, warnings = await self._registry.register(unit.conn, request.source, request.expected_revision)
        return flow_pb2.RegisterFlowResponse(
            flow=convert.flow_to_proto(row), created_revision=created,
            warnings=[convert.issue_to_proto(i) for i in warnings],
        )

    @rpc
    async def GetFlow(self, request: flow_pb2.GetFlowRequest, context: grpc.aio.ServicerContext):
        async with self._cp.transaction() as unit:
            row = await repo.get_flow(unit.conn, request.namespace, request.id, request.revision)
        if row is None:
            rev = f" revision {request.revision}" if request.revision else ""
            raise NotFoundError(f"flow {request.namespace}.{request.id}{rev} not found")
        return flow_pb2.GetFlowResponse(flow=convert.flow_to_proto(row))

    @rpc
    async def ListFlows(self, request: flow_pb2.ListFlowsRequest, context: grpc.aio.ServicerContext):
        size = request.page_size or 100
        if size < 0 or size > 1000:
            raise InvalidArgumentError(f"page_size: must be between 1 and 1000, got {size}")
        after = None
        if request.page_token:
            ns, sep, fid = request.page_token.partition("/")
            if not sep:
                raise InvalidArgumentError("page_token: malformed")
            after = (ns, fid)
        async with self._cp.transaction() as unit:
            rows = await repo.list_flows(unit.conn, request.namespace, request.include_deleted, size + 1, after)
        token = f"{rows[size - 1].namespace}/{rows[size - 1].flow_id}" if len(rows) > size else ""
        return flow_pb2.ListFlowsResponse(flows=[convert.flow_to_proto(r) for r in rows[:size]], next_page_token=token)

    @rpc
    async def ListFlowRevisions(self, request: flow_pb2.ListFlowRevisionsRequest, context: grpc.aio.ServicerContext):
        async with self._cp.transaction() as unit:
            rows = await repo.list_flow_revisions(unit.conn, request.namespace, request.id)
        if not rows:
            raise NotFoundError(f"flow {request.namespace}.{request.id} not found")
        return flow_pb2.ListFlowRevisionsResponse(flows=[convert.flow_to_proto(r) for r in rows])

    @rpc
    async def DeleteFlow(self, request: flow_pb2.DeleteFlowRequest, context: grpc.aio.ServicerContext):
        async with self._cp.transaction() as unit:
            if not await repo.mark_flow_deleted(unit.conn, request.namespace, request.id):
                raise NotFoundError(f"flow {request.namespace}.{request.id} not found")
        return flow_pb2.DeleteFlowResponse()
