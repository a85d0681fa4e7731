"""Storing a worker's log lines: which lines are kept, what is hidden in them, and the
per-attempt size limit. Used by ``LogService.AppendLogs`` and by ``CompleteTaskRun``, which may
carry an attempt's last lines (stored in the transaction that records the result)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.api import checks
from controlplane.api.convert import LEVELS
from controlplane.engine.unit import Unit
from controlplane.errors import NotFoundError
from controlplane.secrets import execution_masker
from controlplane.store import repository as repo
from controlplane.tokens import TaskTokenClaims

if TYPE_CHECKING:
    from controlplane.engine.executor import Completed

_ALL_LEVELS = frozenset(LEVELS)
_RULES_CACHE_SIZE = 4096
MAX_MESSAGE = 1_000_000
"""Characters kept of one log line."""

FlowLoader = Callable[[AsyncConnection, str, str, int], Awaitable[Any]]


def _unchanged(text: str) -> str:
    return text


@dataclass(frozen=True)
class LogLine:
    """One line as a worker sent it: ``level`` one of ``convert.LEVELS``, ``timestamp`` UTC."""

    level: str
    message: str
    timestamp: datetime


class LogIngest:
    """Turns a worker's lines into ``logs`` rows and stores them.

    Args:
        load_flow: ``FlowRegistry.load``-like ``(conn, namespace, flow_id, revision) -> Flow``
            (raises NotFoundError).
        max_bytes_per_attempt: ``Settings.max_log_bytes_per_attempt`` (UTF-8 bytes; 0 = none).
    """

    def __init__(self, load_flow: FlowLoader, max_bytes_per_attempt: int) -> None:
        self._load_flow = load_flow
        self.max_bytes_per_attempt = max_bytes_per_attempt
        # execution id -> (flow, SECRET-input mask): both fixed for an execution's lifetime, so
        # a worker's log batches cost no extra query after the first (bounded LRU).
        self._rules: OrderedDict[str, tuple[Any, Callable[[str], str]]] = OrderedDict()

    @property
    def over_limit_message(self) -> str:
        """The error of an attempt whose logs went over :attr:`max_bytes_per_attempt`."""
        return (f"Task logs are too large: this attempt wrote more than {self.max_bytes_per_attempt} bytes of log "
                "text, the limit (KESTREL_MAX_LOG_BYTES_PER_ATTEMPT); later lines were dropped and the task run "
                "failed")

    async def store(
        self, unit: Unit, claims: TaskTokenClaims, lines: Sequence[LogLine], recorded: Completed | None = None
    ) -> bool:
        """Store the lines of ``claims``' attempt kept by the task's ``logLevel`` (as Kestra,
        lines below it are dropped), with the execution's SECRET inputs masked, within the
        attempt's byte budget. Returns True when this batch is the one that went over the
        budget (its lines up to the limit are stored; the caller fails the attempt).

        ``recorded``: the attempt's result was just recorded in ``unit``'s transaction (the
        lines, possibly none, came with it): its execution, flow and stored log volume, read
        under the execution's lock, serve here instead of a read of each, and lines that fit the
        budget go with the transaction's next round trip (no round trip of their own). An SDK
        sends an attempt's last lines once its earlier ones are stored, so the volume read is
        current; a batch sent concurrently could take it over the budget by that batch's size
        unnoticed. An attempt already over its budget (the batch that went over was stored but
        the attempt was not failed: a crash between the two, or the same result repeated in
        between) is reported over, with or without lines, so that it fails.

        Raises:
            NotFoundError: the execution does not exist (deleted), or the task run of a token
                signed without its task id does not.
        """
        limit = self.max_bytes_per_attempt
        if recorded is not None:
            if 0 < limit < recorded.log_bytes:
                return True  # already over (see above): the attempt fails
            if not lines:
                return False
        task_id = claims.task_id  # tokens signed before it was added carry none: look it up
        if not task_id:
            row = await repo.get_task_run_row(unit.conn, claims.task_run_id)
            if row is None:
                raise NotFoundError(f"task run {claims.task_run_id} not found")
            task_id = row.task_id
        kept_levels, mask = await self._rules_for(unit.conn, claims.execution_id, task_id, recorded)
        kept = [(line.level, mask(checks.clean_text(line.message[:MAX_MESSAGE])), line.timestamp)
                for line in lines if line.level in kept_levels]
        if recorded is not None:
            size = sum(len(message.encode("utf-8", "surrogatepass")) for _, message, _ in kept) if limit > 0 else 0
            if limit <= 0 or recorded.log_bytes + size <= limit:
                await repo.defer_attempt_logs(unit.conn, claims.execution_id, claims.task_run_id, task_id,
                                              claims.attempt, kept, size)
                unit.logs.add(claims.execution_id)
                return False
        rows = [
            {"execution_id": claims.execution_id, "task_run_id": claims.task_run_id, "task_id": task_id,
             "attempt": claims.attempt, "level": level, "message": message, "timestamp": timestamp}
            for level, message, timestamp in kept
        ]
        rows, crossed = await self._within_limit(unit.conn, claims, rows)
        try:
            await repo.append_logs(unit.conn, rows)
        except IntegrityError:  # the execution was deleted after its rules were cached
            raise NotFoundError(f"execution {claims.execution_id} not found (deleted?): "
                                "its log lines are not kept") from None
        unit.logs.add(claims.execution_id)
        return crossed

    async def _within_limit(self, conn, claims, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """The rows that fit in the attempt's budget and whether the attempt is over it (this
        batch went over, or an earlier one did: then the rest is dropped, and every later batch
        of the attempt too). Over is reported again for a later batch, so that the attempt
        fails even when the failure after the batch that went over never happened (a crash
        between the two, or a completion repeated in between); failing an ended attempt does
        nothing."""
        limit = self.max_bytes_per_attempt
        if limit <= 0 or not rows:
            return rows, False
        sizes = [len(row["message"].encode("utf-8", "surrogatepass")) for row in rows]
        total = await repo.add_attempt_log_bytes(conn, claims.execution_id, claims.task_run_id, claims.attempt,
                                                 sum(sizes))
        if total is None or total <= limit:
            return rows, False
        before = total - sum(sizes)
        if before > limit:
            return [], True  # already over: the attempt fails (if an earlier batch's failure did not happen)
        kept, used = [], before
        for row, size in zip(rows, sizes, strict=True):
            if used + size > limit:
                break
            kept.append(row)
            used += size
        return kept, True

    async def _rules_for(
        self, conn, execution_id: str, task_id: str, recorded: Completed | None = None
    ) -> tuple[frozenset[str], Callable[[str], str]]:
        """What to keep and hide in ``task_id``'s lines: the levels stored (all, or from the
        task's ``logLevel`` up) and a function masking the execution's decrypted SECRET inputs
        (the same masker the API uses: env secrets + this execution's SECRET inputs).
        ``recorded``: the execution and flow are those (not read)."""
        cached = self._rules.get(execution_id)
        if cached is None and recorded is not None:
            cached = (recorded.flow, execution_masker(recorded.execution.inputs).mask)
            self._remember(execution_id, cached)
        elif cached is None:
            execution = await repo.get_execution(conn, execution_id, with_task_runs=False)
            if execution is None:
                raise NotFoundError(f"execution {execution_id} not found (deleted?): its log lines are not kept")
            try:
                flow = await self._load_flow(conn, execution.namespace, execution.flow_id, execution.flow_revision)
            except NotFoundError:
                return _ALL_LEVELS, _unchanged
            cached = (flow, execution_masker(execution.inputs).mask)
            self._remember(execution_id, cached)
        else:
            self._rules.move_to_end(execution_id)
        flow, mask = cached
        try:
            minimum = flow.find_task(task_id).log_level
        except KeyError:
            minimum = None
        kept = frozenset(LEVELS[LEVELS.index(minimum):]) if minimum in LEVELS else _ALL_LEVELS
        return kept, mask

    def _remember(self, execution_id: str, rules: tuple[Any, Callable[[str], str]]) -> None:
        self._rules[execution_id] = rules
        if len(self._rules) > _RULES_CACHE_SIZE:
            self._rules.popitem(last=False)
