"""The worker side of dispatch: registration, claiming task runs (long-poll), heartbeats,
results, shutdown and the lease reaper (DESIGN.md §3)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from controlplane import faults
from controlplane.config import Settings
from controlplane.coordination.events import Events
from controlplane.engine import groups
from controlplane.engine.executor import RUN_AGAIN_WITH_SAVEPOINTS, Executor, Lost
from controlplane.engine.unit import Unit
from controlplane.errors import ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from controlplane.model import State
from controlplane.service.log_ingest import LogIngest, LogLine
from controlplane.store import executor_ops as ops
from controlplane.store import repository as repo
from controlplane.store import working_directories as wd_store
from controlplane.store.ids import new_id
from controlplane.tokens import TaskTokenClaims, TaskTokenSigner

log = logging.getLogger(__name__)

Transaction = Callable[..., AbstractAsyncContextManager[Unit]]
"""``transaction(autocommit=False)``: see ``ControlPlane.transaction``."""


WORKER_TOUCH_SECONDS = 1.0
"""A poll records the worker's heartbeat (and re-reads its row) at most this often per replica."""


class _LogsOverBudget(Exception):
    """The log lines sent with a result took the attempt over its log budget."""


class Assignment:
    """A claimed task run with its signed token (plain data for the API layer);
    ``working_directory``: its WorkingDirectory group, None outside one."""

    __slots__ = ("claimed", "token", "working_directory")

    def __init__(self, claimed: repo.ClaimedTaskRun, token: str, working_directory: wd_store.Group | None = None) -> None:
        self.claimed = claimed
        self.token = token
        self.working_directory = working_directory


class Dispatcher:
    """Implements the WorkerService operations.

    Args:
        transaction: ``async with transaction() as unit`` opens a transaction and announces its
            wake-ups after commit (``transaction(autocommit=True)``: statements commit one by one).
        executor: Records results and advances executions.
        signer: Task token signer.
        events: This replica's wake-up signals.
        settings: Lease, heartbeat and poll durations (seconds).
        logs: Stores the log lines a completion carries (without it, they are refused).
    """

    def __init__(
        self, transaction: Transaction, executor: Executor, signer: TaskTokenSigner, events: Events, settings: Settings,
        *, logs: LogIngest | None = None,
    ) -> None:
        self._tx = transaction
        self._logs = logs
        self._executor = executor
        self._signer = signer
        self._events = events
        self._settings = settings
        # Per worker on this replica: (monotonic time, row) of its last heartbeat by a poll, and
        # the queue-signal count before its last claim when that claim drained what it can take.
        self._touched: dict[str, tuple[float, repo.WorkerRow]] = {}
        self._drained: dict[str, int] = {}

    async def register_worker(
        self, worker_id: str, hostname: str, sdk: str, task_types: list[str], worker_group: str,
        labels: dict[str, str], concurrency: int,
    ) -> str:
        """Register a worker; returns its id (a new one when ``worker_id`` is empty).

        Raises:
            InvalidArgumentError: no task types, or concurrency < 1.
        """
        if not task_types:
            raise InvalidArgumentError("task_types: a worker must register at least one task type")
        if concurrency < 1:
            raise InvalidArgumentError(f"concurrency: must be >= 1, got {concurrency}")
        worker_id = worker_id or f"worker-{new_id()}"
        self._forget_worker(worker_id)
        async with self._tx() as unit:
            # A live worker keeps its id: another process (other host or SDK) may not take it
            # over while it heartbeats. The same worker re-registering (e.g. after a control-plane
            # restart) announces the same host and SDK.
            live = await repo.live_worker_identity(unit.conn, worker_id, self._settings.worker_dead_after_seconds)
            if live is not None and live != (hostname, sdk):
                raise ConflictError(
                    f"worker_id: '{worker_id}' is registered by a live worker on host {live[0]!r} ({live[1]}); "
                    "choose another id, or wait until it stops"
                )
            await repo.upsert_worker(unit.conn, worker_id, hostname, sdk, sorted(set(task_types)), worker_group,
                                     labels, concurrency)
        return worker_id

    async def poll(self, worker_id: str, max_task_runs: int, wait_seconds: float) -> list[Assignment]:
        """Claim up to ``max_task_runs`` task runs, waiting up to ``wait_seconds`` (capped by
        ``Settings.poll_wait_seconds``) for work; woken at once when work is queued.

        Raises:
            InvalidArgumentError: ``max_task_runs`` < 1.
            FailedPreconditionError: unknown or stopped worker (it must register again).
        """
        if max_task_runs < 1:
            raise InvalidArgumentError(f"max_task_runs: must be >= 1, got {max_task_runs}")
        wait = min(wait_seconds or self._settings.poll_wait_seconds, self._settings.poll_wait_seconds)
        deadline = time.monotonic() + wait
        with contextlib.ExitStack() as stack:
            claimed: list[repo.ClaimedTaskRun] = []
            groups_: dict[str, Any] = {}
            worker = self._recent_worker(worker_id)
            if worker is not None:
                # Registered before the check below: a signal after it wakes this poll.
                waiter = stack.enter_context(self._events.poll_waiter(worker.task_types, worker.worker_group))
                if self._drained.get(worker_id) != self._events.queued_signals:
                    async with self._tx(autocommit=True) as unit:
                        claimed, groups_ = await self._claim(unit, worker, max_task_runs)
                # else: its last claim left nothing it could take and nothing was queued since:
                # no round trip, wait for a wake-up.
            else:
                async with self._tx() as unit:  # the first claim shares its transaction with the heartbeat
                    worker = await self._touch(unit, worker_id)
                    if worker is None:
                        raise FailedPreconditionError(
                            f"worker '{worker_id}' is not registered (or has shut down); register again"
                        )
                    # Registered before the first claim: work queued while it runs is not missed.
                    waiter = stack.enter_context(self._events.poll_waiter(worker.task_types, worker.worker_group))
                    claimed, groups_ = await self._claim(unit, worker, max_task_runs)
            while not claimed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                # Woken by new work (one poll per queued task run); the recheck cap (1 s by
                # default) also catches delayed (available_at) rows and signals lost between replicas.
                await waiter.wait(min(remaining, self._settings.poll_recheck_seconds))
                waiter.woken.clear()
                async with self._tx(autocommit=True) as unit:
                    claimed, groups_ = await self._claim(unit, worker, max_task_runs)
            faults.hit("claim.committed")
            return self._assign(worker_id, claimed, groups_)

    def _recent_worker(self, worker_id: str) -> repo.WorkerRow | None:
        """The worker as its poll read it less than :data:`WORKER_TOUCH_SECONDS` ago on this
        replica (its heartbeat is that recent too), else None."""
        seen = self._touched.get(worker_id)
        if seen is None or time.monotonic() - seen[0] >= WORKER_TOUCH_SECONDS:
            return None
        return seen[1]

    async def _touch(self, unit: Unit, worker_id: str) -> repo.WorkerRow | None:
        """Record the worker's heartbeat and read its row (remembered for
        :data:`WORKER_TOUCH_SECONDS`); None when it is not an ACTIVE registered worker."""
        worker = await repo.touch_active_worker(unit.conn, worker_id)
        if worker is not None:
            self._remember_worker(worker)
        return worker

    def _remember_worker(self, worker: repo.WorkerRow) -> None:
        if len(self._touched) > 10_000:
            self._touched.clear()
            self._drained.clear()
        self._touched[worker.id] = (time.monotonic(), worker)

    def _forget_worker(self, worker_id: str) -> None:
        self._touched.pop(worker_id, None)
        self._drained.pop(worker_id, None)

    async def _claim(
        self, unit: Unit, worker: repo.WorkerRow, limit: int, *, last: bool = False
    ) -> tuple[list[repo.ClaimedTaskRun], dict[str, Any]]:
        """Claim for ``worker``; returns the claimed task runs and the WorkingDirectory groups
        they belong to, pinned to this worker.

        ``unit`` may be autocommit (no BEGIN/COMMIT round trips): the claim is one statement,
        and pinning a group is a separate atomic ``UPDATE ... WHERE workerId IS NULL``. A crash
        between the two leaves the claimed child unpinned and undelivered: its lease expires and
        the group starts again as for any lost worker; no other child of the group is queued
        meanwhile (a group's children run one after another).

        ``last``: nothing else follows in ``unit``'s transaction: the claim carries its
        ``COMMIT`` (one round trip fewer), and a group's pinning, when there is one, goes in a
        transaction of its own, as in an autocommit claim."""
        signals = self._events.queued_signals  # read before the claim: a signal during it counts as new
        claimed = await repo.claim_task_runs(
            unit.conn, worker.id, worker.task_types, worker.worker_group, limit, self._settings.lease_seconds,
            commit=last,
        )
        if len(claimed) < limit:
            self._drained[worker.id] = signals  # nothing more for it until the next signal
        else:
            self._drained.pop(worker.id, None)  # there may be more
        unit.executions.update(c.execution_id for c in claimed)
        groups_ = await wd_store.pin_and_describe(unit.conn, claimed, worker.id) if claimed else {}
        return claimed, groups_

    def _assign(
        self, worker_id: str, claimed: list[repo.ClaimedTaskRun], groups_: dict[str, Any]
    ) -> list[Assignment]:
        return [
            Assignment(c, self._signer.sign(TaskTokenClaims(c.execution_id, c.task_run_id, c.attempt,
                                                             c.lease_epoch, worker_id, c.task_id)),
                       groups_.get(c.group_id) if c.group_id else None)
            for c in claimed
        ]

    async def heartbeat(self, token: str) -> tuple[Any, bool]:
        """Extend a lease: (new expiry, cancel requested).

        Raises:
            InvalidArgumentError: malformed token. NotFoundError: stale token.
        """
        claims = self._signer.verify(token)
        async with self._tx() as unit:
            result = await repo.extend_lease(unit.conn, claims.task_run_id, claims.attempt, claims.lease_epoch,
                                             self._settings.lease_seconds)
        if result is None:
            raise NotFoundError(f"task run {claims.task_run_id} attempt {claims.attempt}: lease is no longer held")
        return result

    async def complete(
        self, token: str, outputs: dict[str, Any] | None, state: State, group_outputs: dict[str, Any] | None = None,
        max_next: int = 0, lines: Sequence[LogLine] = (),
    ) -> list[Assignment]:
        """Record success (see :meth:`Executor.complete`); ``group_outputs``: the enclosing
        WorkingDirectory's outputs, sent with its last child (recorded first, so the tasks the
        executor starts next can read them).

        Eager dispatch: with ``max_next`` > 0, up to that many task runs are claimed for the
        worker that held the lease in the same transaction (the task runs this result just
        queued included: they are never seen, or polled for, by anyone else) and returned. A
        stopped or unknown worker, or a repeat of a recorded result, gets none.

        ``lines``: the attempt's last log lines, stored in the same transaction as the result
        (one AppendLogs call fewer; a repeat of the result stores nothing). Lines that take the
        attempt over its log budget fail it instead, as AppendLogs does. A stale result's lines
        are still stored (in their own transaction), as AppendLogs keeps a stale attempt's lines.

        Raises:
            InvalidArgumentError: ``state`` is not SUCCESS or WARNING, the token is malformed, or
                lines were sent to a dispatcher without a log store.
            NotFoundError: stale token (see :meth:`Executor.complete`), or the lines went over
                the attempt's log budget (the attempt failed saying so).
        """
        if state not in (State.SUCCESS, State.WARNING):
            raise InvalidArgumentError(f"state: a completion is SUCCESS or WARNING, not {state}")
        if lines and self._logs is None:
            raise InvalidArgumentError("logs: this control plane does not take log lines with a result")
        claims = self._signer.verify(token)
        eager: tuple[list[repo.ClaimedTaskRun], dict[str, Any]] = ([], {})

        async def record(unit: Unit) -> None:
            nonlocal eager
            eager = ([], {})  # run again after a failed advance: claim again
            if group_outputs:
                await wd_store.record_outputs(unit.conn, claims, group_outputs)
            recorded = await self._executor.complete(unit, claims, outputs, state)
            if recorded and self._logs is not None and await self._logs.store(unit, claims, lines, recorded):
                raise _LogsOverBudget
            if max_next > 0 and recorded:
                eager = await self._claim_eagerly(unit, claims.worker_id, max_next)

        try:
            await self._record_result(record)
        except NotFoundError:
            # A stale result (lease lost meanwhile): its lines are still the attempt's evidence,
            # kept tagged with its attempt as AppendLogs keeps a stale attempt's lines (the SDK
            # sends them nowhere else). Over the budget they are cut; nothing is failed.
            if lines:
                with contextlib.suppress(NotFoundError):  # the execution was deleted
                    async with self._tx() as unit:
                        await self._logs.store(unit, claims, lines)
            raise
        except _LogsOverBudget:
            # Rolled back: store the lines alone (up to the budget) and fail the attempt, as a
            # separate AppendLogs would have.
            assert self._logs is not None
            if lines:
                async with self._tx() as unit:
                    await self._logs.store(unit, claims, lines)
            await self.fail_over_log_budget(token)
            raise NotFoundError(f"task run {claims.task_run_id} attempt {claims.attempt}: "
                                f"{self._logs.over_limit_message}") from None
        faults.hit("result.committed")
        if not eager[0]:
            return []
        faults.hit("claim.committed")
        return self._assign(claims.worker_id, *eager)

    async def fail_over_log_budget(self, token: str) -> None:
        """Fail the attempt of ``token`` because its log lines went over
        ``Settings.max_log_bytes_per_attempt`` (nothing when it had already ended)."""
        assert self._logs is not None
        with contextlib.suppress(NotFoundError):
            await self.fail(token, self._logs.over_limit_message, "TASK_ERROR", None, log_error=True)

    async def _claim_eagerly(
        self, unit: Unit, worker_id: str, limit: int
    ) -> tuple[list[repo.ClaimedTaskRun], dict[str, Any]]:
        """Claim for ``worker_id`` inside a result's transaction (see :meth:`complete`); the task
        runs it takes are removed from the unit's wake-ups, so no poll is woken for them."""
        worker = self._recent_worker(worker_id) or await self._touch(unit, worker_id)
        if worker is None:
            return [], {}  # stopped, shut down or unknown: no new work
        if not unit.queued and not unit.tasks_queued and self._drained.get(worker_id) == self._events.queued_signals:
            return [], {}  # nothing queued since its last claim found nothing: no round trip
        # The result's transaction ends with this claim (see complete): it carries the COMMIT.
        claimed, groups_ = await self._claim(unit, worker, limit, last=True)
        for c in claimed:
            key = (c.task_type, worker.worker_group)
            if key in unit.queued:
                unit.queued.remove(key)
        return claimed, groups_

    async def fail(self, token: str, error: str, reason: str, outputs: dict[str, Any] | None, *,
                   log_error: bool = False) -> None:
        """Record a failure (see :meth:`Executor.fail`; ``log_error`` for a failure the control
        plane decided)."""
        claims = self._signer.verify(token)
        await self._record_result(lambda unit: self._executor.fail(unit, claims, error, reason, outputs,
                                                                          log_error=log_error))

    async def _record_result(self, record: Callable[[Unit], Awaitable[None]]) -> None:
        """Run ``record`` (a result and the advance after it) in one transaction without
        savepoints; if the advance fails, that transaction is rolled back and ``record`` runs
        again with the advance in a savepoint (the result is kept, the sweep retries the
        advance). Either way the worker is answered only after a commit."""
        try:
            async with self._tx() as unit:
                unit.savepoints = False
                await record(unit)
        except RUN_AGAIN_WITH_SAVEPOINTS as exc:
            log.warning("%s; recording the result again with the advance in a savepoint", exc)
            async with self._tx() as unit:
                await record(unit)

    async def worker_heartbeat(self, worker_id: str) -> list[str]:
        """Mark a worker alive; returns the ids of the task runs it holds that must stop (their
        execution was killed), so a kill reaches every running task run of the worker at its next
        worker heartbeat instead of at each task run's own heartbeat.

        Raises:
            FailedPreconditionError: unknown or stopped worker.
        """
        async with self._tx() as unit:
            if not await repo.touch_worker(unit.conn, worker_id):
                raise FailedPreconditionError(f"worker '{worker_id}' is not registered (or has shut down); register again")
            return await ops.cancelled_task_runs_of_worker(unit.conn, worker_id)

    async def ended_working_directories(self, worker_id: str, group_ids: list[str]) -> list[str]:
        """Of the working directories ``worker_id`` keeps, those it may delete now (their
        WorkingDirectory ended or moved on)."""
        if not group_ids:
            return []
        async with self._tx() as unit:
            return await wd_store.ended(unit.conn, worker_id, group_ids)

    async def shutdown_worker(self, worker_id: str) -> int:
        """Mark a worker stopped and re-queue its unfinished task runs at once; returns how many."""
        self._forget_worker(worker_id)
        async with self._tx() as unit:
            await repo.set_worker_state(unit.conn, worker_id, "STOPPED")
            held = await repo.running_task_runs_of_worker(unit.conn, worker_id)
        count = 0
        for task_run_id, attempt, epoch, execution_id in held:
            try:
                async with self._tx() as unit:
                    await self._executor.lose(
                        unit, TaskTokenClaims(execution_id, task_run_id, attempt, epoch, worker_id), Lost("WORKER_SHUTDOWN")
                    )
                count += 1
            except NotFoundError:
                pass  # finished or reaped meanwhile
        return count

    async def reap_once(self) -> int:
        """Turn expired leases into lost attempts (re-dispatched or failed), and attempts running
        past their task's ``timeout`` (plus ``Settings.timeout_grace_seconds``) into TIMEOUT
        failures (retried or failed by the retry policy); returns how many.

        The worker enforces ``timeout`` itself and reports TIMEOUT; the server-side check covers
        a worker that keeps heartbeating but never reports. Several replicas may run this at
        once: rows are taken with SKIP LOCKED and every change is fenced, so each expired attempt
        is handled once.
        """
        grace = self._settings.timeout_grace_seconds
        async with self._tx() as unit:
            expired = await repo.expired_leases(unit.conn)
            timed_out = await repo.timed_out_attempts(unit.conn, grace)
        count = 0
        for late in timed_out:
            error = (f"Timeout after {late.timeout_seconds:g} seconds: worker {late.worker_id} did not stop and "
                     f"report the attempt within the {grace:g} s grace period; the control plane failed it")
            try:
                async with self._tx() as unit:
                    await self._executor.fail(
                        unit, TaskTokenClaims(late.execution_id, late.task_run_id, late.attempt, late.lease_epoch,
                                              late.worker_id),
                        error, "TIMEOUT", log_error=True,
                    )
                count += 1
            except NotFoundError:
                pass  # reported meanwhile
        for task_run_id, attempt, epoch, execution_id in expired:
            try:
                async with self._tx() as unit:
                    await self._executor.lose(
                        unit, TaskTokenClaims(execution_id, task_run_id, attempt, epoch, ""), Lost("LEASE_EXPIRED")
                    )
                count += 1
            except NotFoundError:
                pass
        async with self._tx() as unit:
            stranded = await wd_store.stranded(unit.conn, self._settings.worker_dead_after_seconds)
        for item in stranded:
            async with self._tx() as unit:
                await groups.recover_stranded(self._executor, unit, item, self._settings.max_redeliveries)
            count += 1
        if count:
            log.info("reaper: %d expired lease(s) handled", count)
        return count


    async def fail_unserved_once(self) -> int:
        """Fail the queued task runs that no ACTIVE worker (of their task type, in their worker
        group) could take for ``Settings.schedule_to_start_seconds`` (0 = wait forever); returns
        how many (see :meth:`Executor.fail_unserved`)."""
        limit = self._settings.schedule_to_start_seconds
        if limit <= 0:
            return 0
        async with self._tx() as unit:
            late = await repo.unserved_queued_task_runs(unit.conn, limit)
        count = 0
        for run in late:
            group = f"worker group '{run.worker_group}'" if run.worker_group else "the default worker group"
            error = (f"no live worker in {group} runs task type {run.task_type}: the task run waited "
                     f"{limit:g} s in the queue, its schedule-to-start limit (KESTREL_SCHEDULE_TO_START_SECONDS); "
                     f"start a worker for it (`kestrel worker --worker-group …`, see `kestrel workers`)")
            async with self._tx() as unit:
                if await self._executor.fail_unserved(unit, run.execution_id, run.task_run_id, error):
                    count += 1
        if count:
            log.warning("%d task run(s) failed: no live worker within the schedule-to-start limit", count)
        return count


async def ticks(interval: float) -> AsyncIterator[None]:
    """Yield every ``interval`` seconds forever (for background loops)."""
    while True:
        yield None
        await asyncio.sleep(interval)
