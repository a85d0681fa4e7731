"""LogService servicer."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC

import grpc

from controlplane.api import access, checks, convert
from controlplane.api.status import rpc
from controlplane.errors import InvalidArgumentError, NotFoundError
from controlplane.service.log_ingest import LogLine
from controlplane.store import repository as repo
from kestrel.v1 import log_pb2, log_pb2_grpc


def log_lines(entries, field: str) -> list[LogLine]:
    """Workers' ``LogEntry`` messages (level, message, timestamp read) as plain lines.

    Raises:
        InvalidArgumentError: more than 10,000 entries, or an unknown level (naming ``field[i]``).
    """
    if len(entries) > 10_000:
        raise InvalidArgumentError(f"{field}: at most 10000 lines per call")
    now = repo.utcnow()
    return [LogLine(convert.level_from_proto(e.level, f"{field}[{i}].level"), e.message, _stamp(e, now))
            for i, e in enumerate(entries)]


def _stamp(entry: log_pb2.LogEntry, now):
    """The line's own timestamp, or ``now`` when it has none or it is out of range (the line is
    kept either way: logs are evidence)."""
    if not entry.HasField("timestamp"):
        return now
    try:
        return entry.timestamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        return now


class LogServicer(log_pb2_grpc.LogServiceServicer):
    """Stores and serves logs. Appends are authorised by a task token (signature only: lines of
    a stale attempt are still kept, tagged with their attempt)."""

    def __init__(self, control_plane) -> None:
        self._cp = control_plane

    @rpc
    async def AppendLogs(self, request: log_pb2.AppendLogsRequest, context: grpc.aio.ServicerContext):
        claims = self._cp.signer.verify(request.task_token)
        lines = log_lines(request.entries, "entries")
        async with self._cp.transaction() as unit:
            await access.worker(unit.conn, claims.worker_id)  # a worker token logs only for its own workers
            crossed = await self._cp.log_ingest.store(unit, claims, lines)
        if crossed:
            await self._cp.dispatcher.fail_over_log_budget(request.task_token)
        return log_pb2.AppendLogsResponse()

    def _levels(self, min_level: int) -> list[str]:
        convert.level_from_proto(min_level, "min_level")  # refuses values outside the enum
        return convert.LEVELS[min_level - 1:] if min_level > 1 else []

    @rpc
    async def ListLogs(self, request: log_pb2.ListLogsRequest, context: grpc.aio.ServicerContext):
        size = checks.page_size(request.page_size, 1000, 10_000)
        checks.text_field(request.execution_id, "execution_id", max_len=checks.MAX_EXECUTION_ID,
                          required=not request.task_token)
        checks.text_field(request.task_run_id, "task_run_id", max_len=checks.MAX_EXECUTION_ID)
        levels = self._levels(request.min_level)
        async with self._cp.transaction() as unit:
            execution_id = await access.log_reader(unit.conn, self._cp.signer, request.execution_id,
                                                   request.task_token)
            if await repo.get_execution(unit.conn, execution_id, with_task_runs=False) is None:
                raise NotFoundError(f"execution '{execution_id}' not found")
            rows = await repo.list_logs(unit.conn, execution_id, request.task_run_id,
                                        levels, request.after_sequence, size)
        return log_pb2.ListLogsResponse(entries=[convert.log_to_proto(r) for r in rows])

    @rpc
    async def TailLogs(self, request: log_pb2.TailLogsRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.execution_id, "execution_id", max_len=checks.MAX_EXECUTION_ID, required=True)
        after = request.after_sequence
        levels = self._levels(request.min_level)
        with self._cp.events.watch_execution(request.execution_id, logs=True) as changed:
            while True:
                changed.clear()
                async with self._cp.transaction() as unit:
                    execution = await repo.get_execution(unit.conn, request.execution_id, with_task_runs=False)
                    if execution is None:
                        raise NotFoundError(f"execution '{request.execution_id}' not found")
                    access.namespace(execution.namespace)
                    rows = await repo.list_logs(unit.conn, request.execution_id, "", levels, after, 1000)
                if rows:
                    after = rows[-1].seq
                    yield log_pb2.TailLogsResponse(entries=[convert.log_to_proto(r) for r in rows])
                    if len(rows) == 1000:
                        continue
                if execution.state.is_terminal:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 2.0)
