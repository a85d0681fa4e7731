"""LogService servicer."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC
from typing import Any

import grpc
from sqlalchemy import exc as sa_exc

from controlplane.api import access, checks, convert
from controlplane.api.status import rpc
from controlplane.errors import InvalidArgumentError, NotFoundError
from controlplane.secrets import execution_masker
from controlplane.store import repository as repo
from kestrel.v1 import log_pb2, log_pb2_grpc


def _unchanged(text: str) -> str:
    return text


_ALL_LEVELS = frozenset(convert.LEVELS)
_RULES_CACHE_SIZE = 4096
_MAX_MESSAGE = 1_000_000  # characters kept of one log line


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
        # execution id -> (flow, SECRET-input mask): both fixed for an execution's lifetime, so
        # a worker's log batches cost no extra query after the first (bounded LRU).
        self._rules: OrderedDict[str, tuple[Any, Callable[[str], str]]] = OrderedDict()

    @rpc
    async def AppendLogs(self, request: log_pb2.AppendLogsRequest, context: grpc.aio.ServicerContext):
        claims = self._cp.signer.verify(request.task_token)
        if len(request.entries) > 10_000:
            raise InvalidArgumentError("entries: at most 10000 lines per call")
        now = repo.utcnow()
        try:
            async with self._cp.transaction() as unit:
                crossed = await self._append(unit, claims, request, now)
        except sa_exc.IntegrityError:  # the execution was deleted after its rules were cached
            raise NotFoundError(f"execution {claims.execution_id} not found (deleted?): its log lines are not kept") from None
        if crossed:
            await self._fail_over_log_limit(request.task_token)
        return log_pb2.AppendLogsResponse()

    async def _append(self, unit, claims, request: log_pb2.AppendLogsRequest, now) -> bool:
        """Store one AppendLogs batch in ``unit``; True when it crossed the attempt's log limit."""
        rows: list[dict[str, Any]] = []
        await access.worker(unit.conn, claims.worker_id)  # a worker token logs only for its own workers
        task_id = claims.task_id  # tokens signed before it was added carry none: look it up
        if not task_id:
            tr = await repo.get_task_run_row(unit.conn, claims.task_run_id)
            if tr is None:
                raise NotFoundError(f"task run {claims.task_run_id} not found")
            task_id = tr.task_id
        kept_levels, mask = await self._log_rules(unit.conn, claims.execution_id, task_id)
        for i, entry in enumerate(request.entries):
            level = convert.level_from_proto(entry.level, f"entries[{i}].level")
            if level not in kept_levels:
                continue
            rows.append(
                {"execution_id": claims.execution_id, "task_run_id": claims.task_run_id, "task_id": task_id,
                 "attempt": claims.attempt, "level": level,
                 "message": mask(checks.clean_text(entry.message[:_MAX_MESSAGE])), "timestamp": _stamp(entry, now)}
            )
        rows, crossed = await self._within_log_limit(unit.conn, claims, rows)
        await repo.append_logs(unit.conn, rows)
        unit.logs.add(claims.execution_id)
        return crossed

    async def _within_log_limit(self, conn, claims, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """The rows that fit in the attempt's log budget (``Settings.max_log_bytes_per_attempt``)
        and whether this batch is the one that went over it (then the rest is dropped, and
        every later batch of the attempt too)."""
        limit = self._cp.settings.max_log_bytes_per_attempt
        if limit <= 0 or not rows:
            return rows, False
        sizes = [len(row["message"].encode("utf-8", "surrogatepass")) for row in rows]
        total = await repo.add_attempt_log_bytes(conn, claims.task_run_id, claims.attempt, sum(sizes))
        if total is None or total <= limit:
            return rows, False
        before = total - sum(sizes)
        if before > limit:
            return [], False  # already over: the attempt was failed by an earlier batch
        kept, used = [], before
        for row, size in zip(rows, sizes, strict=True):
            if used + size > limit:
                break
            kept.append(row)
            used += size
        return kept, True

    async def _fail_over_log_limit(self, token: str) -> None:
        limit = self._cp.settings.max_log_bytes_per_attempt
        message = (f"Task logs are too large: this attempt wrote more than {limit} bytes of log text, the limit "
                   "(KESTREL_MAX_LOG_BYTES_PER_ATTEMPT); later lines were dropped and the task run failed")
        with contextlib.suppress(NotFoundError):  # the attempt had already ended
            await self._cp.dispatcher.fail(token, message, "TASK_ERROR", None, log_error=True)

    async def _log_rules(self, conn, execution_id: str, task_id: str) -> tuple[frozenset[str], Callable[[str], str]]:
        """What to keep and hide in ``task_id``'s log lines: the levels stored (all, or from the
        task's ``logLevel`` up, as Kestra drops lines below it) and a function masking the
        execution's decrypted SECRET inputs (Kestra masks them in logs)."""
        cached = self._rules.get(execution_id)
        if cached is None:
            execution = await repo.get_execution(conn, execution_id, with_task_runs=False)
            if execution is None:
                raise NotFoundError(f"execution {execution_id} not found (deleted?): its log lines are not kept")
            try:
                flow = await self._cp.flows.load(conn, execution.namespace, execution.flow_id, execution.flow_revision)
            except NotFoundError:
                return _ALL_LEVELS, _unchanged
            # The same masker the API uses: env secrets + this execution's SECRET inputs.
            cached = (flow, execution_masker(execution.inputs).mask)
            self._rules[execution_id] = cached
            if len(self._rules) > _RULES_CACHE_SIZE:
                self._rules.popitem(last=False)
        else:
            self._rules.move_to_end(execution_id)
        flow, mask = cached
        try:
            minimum = flow.find_task(task_id).log_level
        except KeyError:
            minimum = None
        kept = frozenset(convert.LEVELS[convert.LEVELS.index(minimum):]) if minimum in convert.LEVELS else _ALL_LEVELS
        return kept, mask

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
