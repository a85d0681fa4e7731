"""FlowService servicer."""

from __future__ import annotations

import grpc

from controlplane.api import access, checks, convert
from controlplane.api.status import rpc
from controlplane.errors import FlowValidationError, InvalidArgumentError, NotFoundError
from controlplane.service.flow_registry import FlowRegistry
from controlplane.store import repository as repo
from kestrel.v1 import flow_pb2, flow_pb2_grpc

MAX_SOURCE = 2 * 1024 * 1024  # characters of one flow source


def _source(source: str) -> str:
    """A flow source: non-empty, no NUL character, at most 2 MiB.

    Raises:
        InvalidArgumentError: naming the field (and the line of a NUL).
    """
    if not source.strip():
        raise InvalidArgumentError("source: the flow source is empty")
    if "\x00" in source:
        line = source.count("\n", 0, source.index("\x00")) + 1
        raise InvalidArgumentError(f"source: line {line} contains a NUL character")
    if len(source) > MAX_SOURCE:
        raise InvalidArgumentError(f"source: a flow source is at most {MAX_SOURCE} characters, got {len(source)}")
    return source


def _flow_ref(namespace: str, flow_id: str) -> None:
    checks.text_field(namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
    checks.text_field(flow_id, "id", max_len=checks.MAX_ID, required=True)
    access.namespace(namespace)


class FlowServicer(flow_pb2_grpc.FlowServiceServicer):
    """Thin gRPC layer over :class:`FlowRegistry` and the flow repository."""

    def __init__(self, control_plane) -> None:
        self._cp = control_plane
        self._registry: FlowRegistry = control_plane.flows

    @rpc
    async def ValidateFlow(self, request: flow_pb2.ValidateFlowRequest, context: grpc.aio.ServicerContext):
        async with self._cp.transaction() as unit:
            try:
                flow, warnings = await self._registry.validate(
                    unit.conn, _source(request.source), lenient_expressions=request.lenient_expressions
                )
            except FlowValidationError as exc:
                ns, _, fid = exc.flow_ref.rpartition(".")
                return flow_pb2.ValidateFlowResponse(
                    valid=False, errors=[convert.issue_to_proto(i) for i in exc.issues], namespace=ns, id=fid
                )
        access.namespace(flow.namespace)
        return flow_pb2.ValidateFlowResponse(
            valid=True, warnings=[convert.issue_to_proto(i) for i in warnings], namespace=flow.namespace, id=flow.id
        )

    @rpc
    async def RegisterFlow(self, request: flow_pb2.RegisterFlowRequest, context: grpc.aio.ServicerContext):
        if request.expected_revision < 0:
            raise InvalidArgumentError("expected_revision: must be >= 0")
        async with self._cp.transaction() as unit:
            row, created, warnings = await self._registry.register(
                unit.conn, _source(request.source), request.expected_revision,
                lenient_expressions=request.lenient_expressions,
            )
            access.namespace(row.namespace)  # raised inside the transaction: nothing is stored
            await access.flow_reach(row.source)
        return flow_pb2.RegisterFlowResponse(
            flow=convert.flow_to_proto(row), created_revision=created,
            warnings=[convert.issue_to_proto(i) for i in warnings],
        )

    @rpc
    async def GetFlow(self, request: flow_pb2.GetFlowRequest, context: grpc.aio.ServicerContext):
        _flow_ref(request.namespace, request.id)
        async with self._cp.transaction() as unit:
            row = await repo.get_flow(unit.conn, request.namespace, request.id, request.revision)
        if row is None:
            rev = f" revision {request.revision}" if request.revision else ""
            raise NotFoundError(f"flow {request.namespace}.{request.id}{rev} not found")
        return flow_pb2.GetFlowResponse(flow=convert.flow_to_proto(row))

    @rpc
    async def ListFlows(self, request: flow_pb2.ListFlowsRequest, context: grpc.aio.ServicerContext):
        size = checks.page_size(request.page_size, 100, 1000)
        checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE)
        checks.text_field(request.page_token, "page_token", max_len=500)
        after = None
        if request.page_token:
            ns, sep, fid = request.page_token.partition("/")
            if not sep:
                raise InvalidArgumentError("page_token: malformed")
            after = (ns, fid)
        namespace = access.listing(request.namespace)
        if namespace is None:
            return flow_pb2.ListFlowsResponse()
        async with self._cp.transaction() as unit:
            rows = await repo.list_flows(unit.conn, namespace, request.include_deleted, size + 1, after)
        token = f"{rows[size - 1].namespace}/{rows[size - 1].flow_id}" if len(rows) > size else ""
        # Listings leave the YAML source out (GetFlow has it): many large flows must still list.
        return flow_pb2.ListFlowsResponse(
            flows=[convert.flow_to_proto(r, with_source=False) for r in rows[:size]], next_page_token=token
        )

    @rpc
    async def ListFlowRevisions(self, request: flow_pb2.ListFlowRevisionsRequest, context: grpc.aio.ServicerContext):
        _flow_ref(request.namespace, request.id)
        async with self._cp.transaction() as unit:
            rows = await repo.list_flow_revisions(unit.conn, request.namespace, request.id)
        if not rows:
            raise NotFoundError(f"flow {request.namespace}.{request.id} not found")
        return flow_pb2.ListFlowRevisionsResponse(flows=[convert.flow_to_proto(r) for r in rows])

    @rpc
    async def DeleteFlow(self, request: flow_pb2.DeleteFlowRequest, context: grpc.aio.ServicerContext):
        _flow_ref(request.namespace, request.id)
        async with self._cp.transaction() as unit:
            if not await repo.mark_flow_deleted(unit.conn, request.namespace, request.id):
                raise NotFoundError(f"flow {request.namespace}.{request.id} not found")
        return flow_pb2.DeleteFlowResponse()
