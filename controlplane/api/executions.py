"""ExecutionService servicer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime

import grpc

from controlplane import faults, secrets
from controlplane.api import access, checks, convert
from controlplane.api.status import rpc
from controlplane.engine.executor import RUN_AGAIN_WITH_SAVEPOINTS
from controlplane.errors import (
    FailedPreconditionError,
    InputValidationError,
    InvalidArgumentError,
    NotFoundError,
)
from controlplane.flows import coerce_inputs
from controlplane.model import Execution, TaskRun
from controlplane.store import repository as repo
from kestrel.v1 import execution_pb2, execution_pb2_grpc

log = logging.getLogger(__name__)


def _coerce(flow, raw_inputs):
    """Coerce inputs; any failure inside coercion is the caller's bad input, named."""
    try:
        return coerce_inputs(flow, raw_inputs)
    except InputValidationError:
        raise
    except (ValueError, OverflowError, RecursionError, TypeError) as exc:
        raise InputValidationError(
            f"flow {flow.namespace}.{flow.id}: inputs cannot be read: {type(exc).__name__}: {exc}"
        ) from None


_WATCH_COALESCE_FROM_SECONDS = 0.003
"""A WatchExecution read that took longer than this delays the next read as long (see there)."""


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    """Thin gRPC layer over the executor and the execution repository."""

    def __init__(self, control_plane) -> None:
        self._cp = control_plane

    async def _get(self, execution_id: str):
        checks.text_field(execution_id, "id", max_len=checks.MAX_EXECUTION_ID, required=True)
        async with self._cp.read() as conn:  # one statement: no transaction needed
            execution = await repo.get_execution(conn, execution_id)
        if execution is None:
            raise NotFoundError(f"execution '{execution_id}' not found")
        access.namespace(execution.namespace)
        return execution

    @rpc
    async def StartExecution(self, request: execution_pb2.StartExecutionRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
        checks.text_field(request.flow_id, "flow_id", max_len=checks.MAX_ID, required=True)
        checks.text_field(request.request_id, "request_id", max_len=checks.MAX_REQUEST_ID)
        labels = checks.labels(convert.labels_from_proto(request.labels))
        raw_inputs = convert.parse_json_object(request.inputs_json, "inputs_json") or {}
        access.namespace(request.namespace)

        async def start(savepoints: bool) -> tuple[str, bool, Execution | None]:
            async with self._cp.transaction() as unit:
                unit.savepoints = savepoints
                flow = await self._cp.flows.latest(unit.conn, request.namespace, request.flow_id, request.revision)
                if flow.disabled:
                    raise FailedPreconditionError(
                        f"flow {flow.namespace}.{flow.id} is disabled: cannot execute a disabled flow")
                inputs = _coerce(flow, raw_inputs)
                try:
                    inputs = checks.clean_json(inputs)  # NaN/Infinity cannot be stored (jsonb)
                except InvalidArgumentError as exc:
                    raise InputValidationError(f"flow {flow.namespace}.{flow.id}: inputs: {exc}") from None
                return await self._cp.executor.create_execution(unit, flow, inputs, labels, request.request_id or None)

        # As a worker's result (Dispatcher._record_result): without a savepoint (two round trips
        # fewer); if the advance fails, the whole start runs again with it in a savepoint, so
        # the execution is kept and the sweep retries the advance.
        try:
            execution_id, created, execution = await start(savepoints=False)
        except RUN_AGAIN_WITH_SAVEPOINTS as exc:
            log.warning("%s; starting the execution again with the advance in a savepoint", exc)
            execution_id, created, execution = await start(savepoints=True)
        faults.hit("start.committed")
        if execution is None:  # an earlier start's (request_id), or an advance left to the sweep
            execution = await self._get(execution_id)
        return execution_pb2.StartExecutionResponse(execution=convert.execution_to_proto(execution), created=created)

    @rpc
    async def GetExecution(self, request: execution_pb2.GetExecutionRequest, context: grpc.aio.ServicerContext):
        return execution_pb2.GetExecutionResponse(execution=convert.execution_to_proto(await self._get(request.id)))

    @rpc
    async def ListExecutions(self, request: execution_pb2.ListExecutionsRequest, context: grpc.aio.ServicerContext):
        size = checks.page_size(request.page_size, 50, 1000)
        checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE)
        checks.text_field(request.flow_id, "flow_id", max_len=checks.MAX_ID)
        checks.text_field(request.page_token, "page_token", max_len=500)
        states = [convert.state_from_proto(s) for s in request.states]
        before = None
        if request.page_token:
            stamp, sep, last_id = request.page_token.partition("/")
            try:
                before = (datetime.fromisoformat(stamp), last_id)
            except ValueError:
                raise InvalidArgumentError("page_token: malformed") from None
            if not sep:
                raise InvalidArgumentError("page_token: malformed")
        namespace = access.listing(request.namespace)
        if namespace is None:
            return execution_pb2.ListExecutionsResponse()
        async with self._cp.transaction() as unit:
            rows = await repo.list_executions(unit.conn, namespace, request.flow_id, states, size + 1, before)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = f"{last.created_at.isoformat()}/{last.id}"
        return execution_pb2.ListExecutionsResponse(
            executions=[convert.execution_to_proto(e) for e in rows[:size]], next_page_token=token
        )

    @rpc
    async def KillExecution(self, request: execution_pb2.KillExecutionRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.id, "id", max_len=checks.MAX_EXECUTION_ID, required=True)
        async with self._cp.transaction() as unit:
            await access.execution(unit.conn, request.id)
            await self._cp.executor.kill(unit, request.id)
            pending = await self._cp.executor.children(unit, request.id)
        faults.hit("kill.committed")
        await self._kill_children(pending)
        return execution_pb2.KillExecutionResponse(execution=convert.execution_to_proto(await self._get(request.id)))

    async def _kill_children(self, pending: list[str]) -> None:
        """Kill subflow executions (and theirs), each in its own transaction: one execution lock
        at a time, so a parent and its child never wait on each other."""
        seen: set[str] = set()
        while pending:
            child = pending.pop()
            if child in seen:
                continue
            seen.add(child)
            async with self._cp.transaction() as unit:
                with contextlib.suppress(FailedPreconditionError, NotFoundError):  # ended meanwhile
                    await self._cp.executor.kill(unit, child)
                pending.extend(await self._cp.executor.children(unit, child))

    @rpc
    async def ResumeExecution(self, request: execution_pb2.ResumeExecutionRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.id, "id", max_len=checks.MAX_EXECUTION_ID, required=True)
        inputs = convert.parse_json_object(request.inputs_json, "inputs_json") or {}
        async with self._cp.transaction() as unit:
            await access.execution(unit.conn, request.id)
            await self._cp.executor.resume(unit, request.id, inputs)
        return execution_pb2.ResumeExecutionResponse(execution=convert.execution_to_proto(await self._get(request.id)))

    @rpc
    async def RestartExecution(self, request: execution_pb2.RestartExecutionRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.id, "id", max_len=checks.MAX_EXECUTION_ID, required=True)
        async with self._cp.transaction() as unit:
            await access.execution(unit.conn, request.id)
            await self._cp.executor.restart(unit, request.id)
        return execution_pb2.RestartExecutionResponse(execution=convert.execution_to_proto(await self._get(request.id)))

    @rpc
    async def ReplayExecution(self, request: execution_pb2.ReplayExecutionRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.id, "id", max_len=checks.MAX_EXECUTION_ID, required=True)
        checks.text_field(request.task_run_id, "task_run_id", max_len=checks.MAX_EXECUTION_ID, required=True)
        async with self._cp.transaction() as unit:
            await access.execution(unit.conn, request.id)
            new = await self._cp.executor.replay(unit, request.id, request.task_run_id)
        return execution_pb2.ReplayExecutionResponse(execution=convert.execution_to_proto(await self._get(new.id)))

    @rpc
    async def SetExecutionLabels(
        self, request: execution_pb2.SetExecutionLabelsRequest, context: grpc.aio.ServicerContext
    ):
        checks.text_field(request.id, "id", max_len=checks.MAX_EXECUTION_ID, required=True)
        labels = checks.labels(convert.labels_from_proto(request.labels))
        async with self._cp.transaction() as unit:
            await access.execution(unit.conn, request.id)
            await self._cp.executor.set_labels(unit, request.id, labels)
        return execution_pb2.SetExecutionLabelsResponse(execution=convert.execution_to_proto(await self._get(request.id)))

    @rpc
    async def WatchExecution(self, request: execution_pb2.WatchExecutionRequest, context: grpc.aio.ServicerContext):
        # Task runs that did not change since the last read are not converted again (a long
        # execution changes one task run at a time), and the mask is built once.
        converted: dict[str, tuple[TaskRun, execution_pb2.TaskRun]] = {}

        def task_run_proto(tr: TaskRun, mask) -> execution_pb2.TaskRun:
            hit = converted.get(tr.id)
            if hit is None or hit[0] != tr:
                hit = (tr, convert.task_run_to_proto(tr, mask))
                converted[tr.id] = hit
            return hit[1]

        mask = None
        with self._cp.events.watch_execution(request.id) as changed:
            last = None
            while True:
                changed.clear()
                started = time.monotonic()
                execution = await self._get(request.id)
                if mask is None:
                    mask = secrets.execution_masker(execution.inputs).mask
                message = convert.execution_to_proto(execution, mask, task_run_proto)
                cost = time.monotonic() - started
                if message != last:
                    yield execution_pb2.WatchExecutionResponse(execution=message)
                    last = message
                if execution.state.is_terminal:
                    return
                # Woken by a change on any replica; re-read every 2 s in case a signal was lost.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 2.0)
                # A read costs more the more task runs the execution has, and a long execution
                # changes every few ms: wait as long as the last read took (at most 0.25 s), so
                # a watcher spends at most half its time reading and the changes meanwhile come
                # in one message. A small execution (a read of ~1 ms) is not held back.
                if cost > _WATCH_COALESCE_FROM_SECONDS:
                    await asyncio.sleep(min(cost, 0.25))
