"""WorkerService servicer."""

from __future__ import annotations

import json

import grpc

from controlplane.api import access, checks, convert
from controlplane.api.logs import log_lines
from controlplane.api.status import rpc
from controlplane.errors import FailedPreconditionError, InvalidArgumentError, ResourceExhaustedError
from controlplane.model import State
from controlplane.service.dispatch import Dispatcher
from controlplane.service.item_render import render_items
from controlplane.store import repository as repo
from kestrel.v1 import common_pb2, worker_pb2, worker_pb2_grpc

_REASONS = {
    worker_pb2.FAILURE_REASON_UNSPECIFIED: "TASK_ERROR",
    worker_pb2.FAILURE_REASON_TASK_ERROR: "TASK_ERROR",
    worker_pb2.FAILURE_REASON_WORKER_SHUTDOWN: "WORKER_SHUTDOWN",
    worker_pb2.FAILURE_REASON_TIMEOUT: "TIMEOUT",
    worker_pb2.FAILURE_REASON_CANCELLED: "CANCELLED",
}


_WORKER_STATES = frozenset({"", "ACTIVE", "STOPPED", "DEAD"})


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Thin gRPC layer over :class:`Dispatcher`."""

    def __init__(self, control_plane) -> None:
        self._cp = control_plane
        self._dispatch: Dispatcher = control_plane.dispatcher

    async def _owns(self, worker_id: str, *, registering: bool = False) -> None:
        """A worker token acts only as the workers it registered (:func:`access.worker`)."""
        if access.acts_as_worker():
            async with self._cp.transaction() as unit:
                await access.worker(unit.conn, worker_id, registering=registering)

    async def _owns_token(self, task_token: str) -> None:
        """:meth:`_owns` for the worker a task token was leased to."""
        if access.acts_as_worker():
            await self._owns(self._cp.signer.verify(task_token).worker_id)

    @rpc
    async def RegisterWorker(self, request: worker_pb2.RegisterWorkerRequest, context: grpc.aio.ServicerContext):
        checks.printable_field(request.worker_id, "worker_id", max_len=checks.MAX_ID)
        checks.printable_field(request.worker_group, "worker_group", max_len=checks.MAX_ID)
        checks.printable_field(request.hostname, "hostname", max_len=255)
        checks.printable_field(request.sdk, "sdk", max_len=100)
        if len(request.task_types) > checks.MAX_TASK_TYPES:
            raise InvalidArgumentError(
                f"task_types: at most {checks.MAX_TASK_TYPES} task types per worker, got {len(request.task_types)}"
            )
        for i, task_type in enumerate(request.task_types):
            checks.text_field(task_type, f"task_types[{i}]", max_len=checks.MAX_TASK_TYPE, required=True)
        if request.concurrency > 10_000:
            raise InvalidArgumentError(f"concurrency: at most 10000, got {request.concurrency}")
        checks.labels(convert.labels_from_proto(request.labels))
        await self._owns(request.worker_id, registering=True)
        worker_id = await self._dispatch.register_worker(
            request.worker_id, request.hostname, request.sdk, list(request.task_types), request.worker_group,
            convert.labels_from_proto(request.labels), request.concurrency or 1,
        )
        if access.current() is not None:
            async with self._cp.transaction() as unit:
                await access.bind_worker(unit.conn, worker_id)
        s = self._cp.settings
        return worker_pb2.RegisterWorkerResponse(
            worker_id=worker_id, heartbeat_interval_seconds=s.heartbeat_interval_seconds, lease_seconds=s.lease_seconds
        )

    @rpc
    async def PollTaskRuns(self, request: worker_pb2.PollTaskRunsRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.worker_id, "worker_id", max_len=checks.MAX_ID, required=True)
        if request.max_task_runs > 1000:
            raise InvalidArgumentError(f"max_task_runs: at most 1000, got {request.max_task_runs}")
        wait = checks.wait_seconds(request.wait_seconds)
        await self._owns(request.worker_id)
        remaining = context.time_remaining()
        if remaining is not None:
            wait = min(wait or remaining, max(remaining - 1.0, 0.0))
        assignments = await self._dispatch.poll(request.worker_id, request.max_task_runs or 1, wait)
        return worker_pb2.PollTaskRunsResponse(assignments=_assignments_to_proto(assignments))

    @rpc
    async def RecordTaskRunHeartbeat(
        self, request: worker_pb2.RecordTaskRunHeartbeatRequest, context: grpc.aio.ServicerContext
    ):
        await self._owns_token(request.task_token)
        expires, cancel = await self._dispatch.heartbeat(request.task_token)
        return worker_pb2.RecordTaskRunHeartbeatResponse(lease_expires_at=convert.ts(expires), cancel_requested=cancel)

    @rpc
    async def CompleteTaskRun(self, request: worker_pb2.CompleteTaskRunRequest, context: grpc.aio.ServicerContext):
        await self._refuse_oversized_outputs(request.task_token, request.outputs_json)
        outputs = convert.parse_json_object(request.outputs_json, "outputs_json")
        state = State.SUCCESS if request.state == common_pb2.STATE_UNSPECIFIED else convert.state_from_proto(request.state)
        await self._owns_token(request.task_token)
        group_outputs = convert.parse_json_object(request.working_directory_outputs_json, "working_directory_outputs_json")
        if request.max_next_task_runs > 1000:
            raise InvalidArgumentError(f"max_next_task_runs: at most 1000, got {request.max_next_task_runs}")
        lines = log_lines(request.logs, "logs")
        assignments = await self._dispatch.complete(request.task_token, outputs, state, group_outputs,
                                                    request.max_next_task_runs, lines)
        return worker_pb2.CompleteTaskRunResponse(assignments=_assignments_to_proto(assignments))

    @rpc
    async def FailTaskRun(self, request: worker_pb2.FailTaskRunRequest, context: grpc.aio.ServicerContext):
        if request.reason not in _REASONS:
            raise InvalidArgumentError(f"reason: unknown failure reason {request.reason}")
        await self._refuse_oversized_outputs(request.task_token, request.outputs_json)
        outputs = convert.parse_json_object(request.outputs_json, "outputs_json")
        await self._owns_token(request.task_token)
        await self._dispatch.fail(
            request.task_token, checks.clean_text(request.error_message)[:100_000], _REASONS[request.reason], outputs
        )
        return worker_pb2.FailTaskRunResponse()

    async def _refuse_oversized_outputs(self, token: str, outputs_json: str) -> None:
        """Outputs over ``Settings.max_output_bytes`` fail the attempt (TASK_ERROR, retry policy
        applies, the message logged in the execution) and the call is RESOURCE_EXHAUSTED with
        the same message; the SDKs then report that failure, which is accepted as a repeat."""
        limit = self._cp.settings.max_output_bytes
        if limit <= 0 or len(outputs_json) * 4 <= limit:
            return  # at most 4 UTF-8 bytes per character: certainly within the limit
        size = len(outputs_json.encode("utf-8", "surrogatepass"))
        if size <= limit:
            return
        message = (f"Task outputs are too large: {size} bytes of JSON, more than the limit of {limit} bytes "
                   "(KESTREL_MAX_OUTPUT_BYTES); write large results to a file (outputFiles) and output its URI")
        await self._dispatch.fail(token, message, "TASK_ERROR", None, log_error=True)
        raise ResourceExhaustedError(message)

    @rpc
    async def WorkerHeartbeat(self, request: worker_pb2.WorkerHeartbeatRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.worker_id, "worker_id", max_len=checks.MAX_ID, required=True)
        await self._owns(request.worker_id)
        cancel = await self._dispatch.worker_heartbeat(request.worker_id)
        if len(request.working_directory_ids) > 10_000:
            raise InvalidArgumentError("working_directory_ids: at most 10000")
        ended = await self._dispatch.ended_working_directories(request.worker_id, list(request.working_directory_ids))
        return worker_pb2.WorkerHeartbeatResponse(cancel_task_run_ids=cancel, ended_working_directory_ids=ended)

    @rpc
    async def ShutdownWorker(self, request: worker_pb2.ShutdownWorkerRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.worker_id, "worker_id", max_len=checks.MAX_ID, required=True)
        await self._owns(request.worker_id)
        async with self._cp.transaction() as unit:
            if await repo.get_worker(unit.conn, request.worker_id) is None:
                raise FailedPreconditionError(f"worker '{request.worker_id}' is not registered")
        count = await self._dispatch.shutdown_worker(request.worker_id)
        return worker_pb2.ShutdownWorkerResponse(requeued_task_runs=count)

    @rpc
    async def ListWorkers(self, request: worker_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext):
        if request.state not in _WORKER_STATES:
            raise InvalidArgumentError(f"state: one of ACTIVE, STOPPED, DEAD or empty, got {request.state[:40]!r}")
        async with self._cp.transaction() as unit:
            workers = await repo.list_workers(unit.conn, request.state)
        return worker_pb2.ListWorkersResponse(workers=[convert.worker_to_proto(w) for w in workers])

    @rpc
    async def RenderItems(self, request: worker_pb2.RenderItemsRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.task_token, "task_token", max_len=4096, required=True)
        checks.text_field(request.expression, "expression", max_len=100_000, required=True)
        await self._owns_token(request.task_token)
        async with self._cp.transaction() as unit:
            results = await render_items(
                unit.conn, self._cp.signer, self._cp.flows.load, self._cp.settings.namespace_prefix_globals,
                request.task_token, request.expression, list(request.items_json),
            )
        return worker_pb2.RenderItemsResponse(results=[
            worker_pb2.RenderedItem(error=r.error) if r.error is not None
            else worker_pb2.RenderedItem(value_json=json.dumps(r.value, separators=(",", ":"), ensure_ascii=False))
            for r in results
        ])

def _group_to_proto(a) -> worker_pb2.WorkingDirectoryGroup | None:
    """The assignment's WorkingDirectory group, None outside one."""
    group = a.working_directory
    if group is None:
        return None
    return worker_pb2.WorkingDirectoryGroup(
        id=group.id,
        input_files_json=convert.dump_json(group.input_files) if group.input_files else "",
        namespace_files_json=convert.dump_json(group.namespace_files) if group.namespace_files else "",
        output_files=group.output_files,
        last=group.last_task_id == a.claimed.task_id,
    )


def _assignments_to_proto(assignments) -> list[worker_pb2.TaskAssignment]:
    """Claimed task runs (``Dispatcher`` assignments) as sent to workers by PollTaskRuns and,
    eagerly, by CompleteTaskRun."""
    return [
        worker_pb2.TaskAssignment(
            task_token=a.token,
            task_run_id=a.claimed.task_run_id,
            execution_id=a.claimed.execution_id,
            namespace=a.claimed.namespace,
            flow_id=a.claimed.flow_id,
            flow_revision=a.claimed.flow_revision,
            task_id=a.claimed.task_id,
            task_type=a.claimed.task_type,
            attempt=a.claimed.attempt,
            properties_json=convert.dump_json(a.claimed.properties) or "{}",
            idempotency_key=f"{a.claimed.execution_id}:{a.claimed.task_run_id}",
            lease_expires_at=convert.ts(a.claimed.lease_expires_at),
            value=a.claimed.value or "",
            ready_at=convert.ts(a.claimed.ready_at),
            timeout_seconds=a.claimed.timeout_seconds or 0.0,
            working_directory=_group_to_proto(a),
        )
        for a in assignments
    ]
