"""The scheduler: keeps trigger rows in step with the flows, fires due Schedule ticks, starts
Flow-triggered executions from upstream state changes, and starts Webhook executions.

Highly available by construction: every control-plane replica runs :meth:`Scheduler.run_once`;
the Redis leader fires ticks on time and the others (``standby=True``) only fire ticks that are
already ``standby_delay`` late, so a dead leader costs about that much lateness. Correctness never
depends on Redis: each trigger is evaluated with its row locked (``FOR UPDATE SKIP LOCKED``) and
every tick or upstream event is claimed in ``trigger_fires`` (unique on namespace, flow, trigger
and scheduled date / event key) in the same transaction as the execution it creates, so it can
never start two executions. A MultipleCondition's window lives in the trigger row's ``state``
(read and written under that row lock); an upstream event that counts in a window is claimed as
``<event key>:counted`` so it counts once.

The clock is injected (``clock``) so tests run months of schedules in seconds.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from controlplane.engine.unit import Unit
from controlplane.errors import ExpressionError, InputValidationError, NotFoundError
from controlplane.expressions import render
from controlplane.flows.durations import parse_duration
from controlplane.model import Flow
from controlplane.model.state import State
from controlplane.scheduler import store
from controlplane.scheduler.conditions import ConditionContext, all_hold, holds, window_start
from controlplane.scheduler.cron import local_iso
from controlplane.scheduler.launch import insert, launch, prepare
from controlplane.scheduler.triggers import TriggerDef, definitions
from controlplane.store import repository as repo

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_FLOW_CURSOR = "flow-triggers"


def system_clock() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


@dataclass
class SchedulerOptions:
    """Timings of the scheduler, in seconds.

    Attributes:
        standby_delay: A non-leader replica fires a tick only once it is this late.
        missed_after: A tick older than this when evaluated is "missed" and handled by
            ``recoverMissedSchedules`` (ALL fires it, LAST fires only the latest missed one,
            NONE skips them).
        max_ticks: Most ticks of one trigger fired in one pass (the rest on the next passes).
        sync_interval: How often trigger rows are compared with the latest flow revisions.
        flow_skew: Every ``skew_every`` passes the Flow-trigger scan re-reads executions changed
            up to this long before its watermark (changes committed late); every ``deep_every``
            passes it re-reads ``deep_lookback``. ``scan_page``: executions read per pass.
        batch: Due schedule rows locked and fired per transaction. 500: 200 every-second
            schedules fire in one batch; with 100 the second batch waited ~50 ms behind the
            first one's writes and the executor sweep it woke (cron p99 210 → ~51 ms, bench/).
    """

    standby_delay: float = 1.0
    missed_after: float = 15.0
    max_ticks: int = 100
    sync_interval: float = 1.0
    flow_skew: float = 5.0
    deep_every: int = 240
    deep_lookback: float = 120.0
    skew_every: int = 8
    scan_page: int = 2000
    batch: int = 500


@dataclass
class _Writes:
    """Fires and trigger moves of one batch, written together (few statements per batch)."""

    fires: list[tuple[str, str, str, dict[str, Any], Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    #: (definition, its new next date): computed ahead once the batch is stored, see schedules_once.
    ahead: list[tuple[TriggerDef, datetime]] = field(default_factory=list)


@dataclass
class _FlowEntry:
    revision: int
    deleted: bool
    flow: Flow | None = None
    defs: list[TriggerDef] = field(default_factory=list)


class Scheduler:
    """Trigger evaluation for one control-plane replica.

    Args:
        transaction: ``async with transaction() as unit`` opens one transaction (a :class:`Unit`).
        load_flow: ``await load_flow(conn, namespace, flow_id, revision)`` -> parsed :class:`Flow`.
        executor: The executor (``advance_safely``) that runs created executions.
        clock: Returns the current aware UTC time.
        options: Timings.
        globals_: Kestra ``globals`` for expressions.
    """

    def __init__(
        self,
        transaction: Callable[[], Any],
        load_flow: Callable[..., Any],
        executor: Any,
        clock: Clock = system_clock,
        options: SchedulerOptions | None = None,
        globals_: Mapping[str, Any] | None = None,
    ) -> None:
        self._tx = transaction
        self._load = load_flow
        self._executor = executor
        self.clock = clock
        self.options = options or SchedulerOptions()
        self._globals = dict(globals_ or {})
        self._flows: dict[tuple[str, str], _FlowEntry] = {}
        self._last_sync: float | None = None
        self._seen: dict[str, int] = {}
        self._passes = 0
        self._listener_keys: frozenset[tuple[str, str, str, int]] = frozenset()
        self._full_page = False

    # -- sync -------------------------------------------------------------------------------

    async def sync_once(self, force: bool = True) -> int:
        """Create, update or delete trigger rows after flows changed; returns flows handled.

        A new schedule starts from now (Kestra); a schedule whose cron, zone or dates changed
        restarts from the later of now and its last fire; a disabled flow or trigger has no next date.
        """
        loop_now = asyncio.get_running_loop().time()
        if not force and self._last_sync is not None and loop_now - self._last_sync < self.options.sync_interval:
            return 0
        self._last_sync = loop_now
        async with self._tx() as unit:
            latest = await store.latest_flow_revisions(unit.conn)
        handled = 0
        present = set()
        for namespace, flow_id, revision, deleted in latest:
            key = (namespace, flow_id)
            present.add(key)
            known = self._flows.get(key)
            if known is not None and known.revision == revision and known.deleted == deleted:
                continue
            try:
                await self._sync_flow(namespace, flow_id, revision, deleted)
            except Exception:
                log.exception("scheduler: cannot read the triggers of flow %s.%s revision %d", namespace, flow_id, revision)
                self._flows[key] = _FlowEntry(revision, deleted)
            handled += 1
        for key in list(self._flows):
            if key not in present:
                del self._flows[key]
        return handled

    async def _sync_flow(self, namespace: str, flow_id: str, revision: int, deleted: bool) -> None:
        entry = _FlowEntry(revision, deleted)
        async with self._tx() as unit:
            conn = unit.conn
            if deleted:
                await store.delete_triggers(conn, namespace, flow_id, keep=[])
                self._flows[(namespace, flow_id)] = entry
                return
            flow = await self._load(conn, namespace, flow_id, revision)
            defs = definitions(flow)
            entry.flow, entry.defs = flow, defs
            await store.delete_triggers(conn, namespace, flow_id, keep=[d.id for d in defs])
            now = self.clock()
            for d in defs:
                signature = d.signature + ("|disabled" if d.disabled or flow.disabled else "")
                row = await store.get_trigger(conn, namespace, flow_id, d.id, lock=True)
                values: dict[str, Any] = {"namespace": namespace, "flow_id": flow_id, "trigger_id": d.id,
                                          "kind": d.kind, "type": d.type, "flow_revision": revision,
                                          "signature": signature}
                if d.kind == "schedule" and (row is None or row.signature != signature):
                    start = max(now, row.last_date) if row is not None and row.last_date else now
                    values["next_date"] = None if d.disabled or flow.disabled else d.next_after(start)
                    if row is None and d.backfill_start is not None:
                        end = d.backfill_end or now
                        values["backfill"] = {"start": d.backfill_start.isoformat(), "end": end.isoformat(),
                                              "next": d.backfill_start.isoformat(), "labels": {}}
                await store.upsert_trigger(conn, **values)
        self._flows[(namespace, flow_id)] = entry

    def _definition(self, namespace: str, flow_id: str, trigger_id: str) -> tuple[Flow, TriggerDef] | None:
        entry = self._flows.get((namespace, flow_id))
        if entry is None or entry.flow is None:
            return None
        for d in entry.defs:
            if d.id == trigger_id:
                return entry.flow, d
        return None

    async def _definition_at(self, conn: Any, row: store.TriggerRow) -> tuple[Flow, TriggerDef] | None:
        """The definition of a trigger row at the revision the row was synced from."""
        found = self._definition(row.namespace, row.flow_id, row.trigger_id)
        if found is not None and found[0].revision == row.flow_revision:
            return found
        try:
            flow = await self._load(conn, row.namespace, row.flow_id, row.flow_revision)
            defs = definitions(flow)
        except Exception:
            log.exception("scheduler: cannot read flow %s.%s revision %d", row.namespace, row.flow_id, row.flow_revision)
            return None
        for d in defs:
            if d.id == row.trigger_id:
                return flow, d
        return None

    # -- the loop body ------------------------------------------------------------------------

    async def run_once(self, standby: bool = False) -> int:
        """One pass: sync (at most every ``sync_interval``), due schedules, Flow triggers.

        Args:
            standby: True on a replica that does not hold the scheduler leadership.

        Returns:
            Executions created.
        """
        # The sync first: a flow deleted or changed before a tick must not fire it (the sync
        # costs the fires of that tick a few ms, issue 10).
        await self.sync_once(force=False)
        created = await self.schedules_once(standby=standby)
        created += await self.flow_triggers_once(standby=standby)
        return created

    async def next_wakeup(self) -> datetime | None:
        """The soonest next date of an enabled schedule (the loop sleeps until then at most)."""
        async with self._tx() as unit:
            return await store.earliest_next_date(unit.conn)

    # -- schedules --------------------------------------------------------------------------

    async def schedules_once(self, standby: bool = False) -> int:
        """Fire every due tick of every enabled schedule (and backfills); returns executions created."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.options.standby_delay) if standby else now
        created = 0
        # Batches of due triggers, each batch one transaction holding their rows
        # (FOR UPDATE SKIP LOCKED: another scheduler takes the other rows meanwhile).
        for _ in range(20):
            async with self._tx() as unit:
                rows = await store.lock_due_schedules(unit.conn, cutoff, limit=self.options.batch)
                writes = _Writes()
                for row in rows:
                    await self._run_schedule(unit, row, cutoff, writes)
                created += len(await store.fire_many(unit.conn, writes.fires))
                await store.move_many(unit.conn, writes.moves)
            # Each fire needs the date after its tick (trigger.next, and the schedule's next
            # date): computed now, after the batch is stored, not when that tick is due (~0.1 ms
            # of croniter per schedule, paid before the next tick's fire: issue 10).
            for i, (d, next_date) in enumerate(writes.ahead):
                d.next_after(next_date)
                if i % 50 == 49:
                    await asyncio.sleep(0)  # let other work run between chunks
            if len(rows) < self.options.batch:
                break
        return created

    async def _run_schedule(self, unit: Unit, row: store.TriggerRow, cutoff: datetime, writes: _Writes) -> int:
        """Fire the due ticks of one locked trigger row and move its next date (the fires and
        moves are collected in ``writes`` and stored together by the caller)."""
        conn = unit.conn
        created = 0
        found = await self._definition_at(conn, row)
        if found is None:
            return 0
        flow, d = found
        now = self.clock()
        if row.backfill is not None:
            created += await self._run_backfill(unit, row, flow, d, now)
        if row.next_date is None or row.next_date > cutoff:
            return created
        ticks, next_date = self._due_ticks(d, row.next_date, now)
        # The neighbours of each tick (``trigger.previous``/``trigger.next``) are mostly known
        # here: the next of every tick, the previous of all but the first (computed; the row's
        # last fire date is not it after skipped ticks).
        for i, tick in enumerate(ticks):
            following = ticks[i + 1] if i + 1 < len(ticks) else next_date
            if await self._fire_tick(unit, flow, d, tick, now, writes=writes,
                                     neighbours=(ticks[i - 1] if i else None, following)):
                created += 1
        writes.moves.append({"ns": row.namespace, "flow": row.flow_id, "trig": row.trigger_id, "next": next_date,
                             "last": ticks[-1] if ticks else row.last_date})
        if ticks and next_date is not None:
            d.remember(ticks[-1], next_date)  # so next_date's trigger.previous is known
            writes.ahead.append((d, next_date))
        return created

    def _due_ticks(self, d: TriggerDef, first: datetime, now: datetime) -> tuple[list[datetime], datetime | None]:
        """Ticks to fire now from ``first`` on, after ``recoverMissedSchedules``, and the next date."""
        missed_before = now - timedelta(seconds=self.options.missed_after)
        ticks: list[datetime] = []
        current: datetime | None = first
        if first < missed_before and d.recover != "ALL":
            # Ticks before missed_before were missed: NONE skips them, LAST keeps the latest.
            last_missed = d.previous_before(missed_before)
            resume = d.next_after(missed_before - timedelta(microseconds=1))
            skipped_from = first
            if d.recover == "LAST" and last_missed is not None and last_missed >= first:
                ticks.append(last_missed)
            log.info("scheduler: %s skipped missed ticks from %s (recoverMissedSchedules %s)", d.id,
                     skipped_from.isoformat(), d.recover)
            current = resume
        while current is not None and current <= now and len(ticks) < self.options.max_ticks:
            ticks.append(current)
            current = d.next_after(current)
        return ticks, current

    def _variables(self, flow: Flow, d: TriggerDef, tick: datetime,
                   neighbours: tuple[datetime | None, datetime | None] | None = None) -> dict[str, Any]:
        """``trigger.date``/``next``/``previous`` of ``tick`` (Kestra's Schedule variables);
        ``neighbours``: (previous, next) when the caller knows them (a None previous is
        computed)."""
        if neighbours is None:
            prev, nxt = d.previous_before(tick), d.next_after(tick)
        else:
            prev, nxt = neighbours
            if prev is None:
                prev = d.previous_before(tick)
        variables = {"date": local_iso(tick, d.timezone)}
        if nxt is not None:
            variables["next"] = local_iso(nxt, d.timezone)
        if prev is not None:
            variables["previous"] = local_iso(prev, d.timezone)
        return variables

    def _context(self, flow: Flow, variables: dict[str, Any]) -> dict[str, Any]:
        return {
            "flow": {"id": flow.id, "namespace": flow.namespace, "revision": flow.revision},
            "trigger": variables,
            "vars": dict(flow.variables),
            "labels": dict(flow.labels),
            "globals": self._globals,
        }

    async def _fire_tick(
        self, unit: Unit, flow: Flow, d: TriggerDef, tick: datetime, now: datetime, backfill: bool = False,
        writes: _Writes | None = None, neighbours: tuple[datetime | None, datetime | None] | None = None,
    ) -> bool:
        """Claim ``tick`` and start its execution; False when skipped or claimed before.
        ``neighbours``: see :meth:`_variables`."""
        conn = unit.conn
        key = dict(scheduled_date=tick) if not backfill else dict(event_key=f"backfill:{tick.isoformat()}")
        if not backfill and d.late_maximum_delay is not None and (now - tick).total_seconds() > d.late_maximum_delay:
            await store.record_fire(conn, flow.namespace, flow.id, d.id, **key,
                                    skipped_reason=f"later than lateMaximumDelay ({d.late_maximum_delay:g} s)")
            return False
        variables = self._variables(flow, d, tick, neighbours)
        ctx = self._context(flow, variables)
        try:
            if not all_hold(list(d.conditions), ConditionContext(variables=ctx, now=tick)):
                return False
            inputs = render(dict(d.inputs), ctx, where=f"trigger '{d.id}' inputs")
        except (ExpressionError, ValueError) as exc:
            log.warning("scheduler: flow %s.%s trigger %s: %s", flow.namespace, flow.id, d.id, exc)
            await store.record_fire(conn, flow.namespace, flow.id, d.id, **key, skipped_reason=str(exc)[:2000])
            return False
        labels = {"system.backfill": "true"} if backfill else {}
        return await self._start(unit, flow, d, key, variables, inputs, labels, writes)

    async def _start(self, unit: Unit, flow: Flow, d: TriggerDef, key: dict[str, Any], variables: dict[str, Any],
                     inputs: Any, labels: dict[str, str], writes: _Writes | None = None) -> bool:
        """Claim the tick or event ``key`` in ``trigger_fires`` and start its execution, in the
        caller's transaction; False when it was claimed before or the inputs do not fit."""
        record = {"id": d.id, "type": d.type, "variables": variables}
        conn = unit.conn
        try:
            prepared = prepare(flow, record, dict(inputs or {}), labels)
        except InputValidationError as exc:
            log.warning("scheduler: flow %s.%s trigger %s: not started: %s", flow.namespace, flow.id, d.id, exc)
            await store.record_fire(conn, flow.namespace, flow.id, d.id, **key, skipped_reason=str(exc)[:2000])
            return False
        if writes is not None:
            writes.fires.append((flow.namespace, flow.id, d.id, key, prepared))
            return True
        fire_id = await store.record_fire(conn, flow.namespace, flow.id, d.id, **key, execution_id=prepared.id)
        if fire_id is None:
            return False  # another scheduler fired this tick or event already
        await insert(unit, prepared)
        return True

    async def _run_backfill(self, unit: Unit, row: store.TriggerRow, flow: Flow, d: TriggerDef, now: datetime) -> int:
        """Fire the next ticks of a backfill (each date once, labelled ``system.backfill``)."""
        backfill = dict(row.backfill or {})
        if backfill.get("paused"):
            return 0
        end = min(datetime.fromisoformat(backfill["end"]), now)
        current: datetime | None = datetime.fromisoformat(backfill["next"])
        created = 0
        count = 0
        if current is not None and d.next_after(current - timedelta(microseconds=1)) != current:
            current = d.next_after(current)
        while current is not None and current <= end and count < self.options.max_ticks:
            if await self._fire_tick(unit, flow, d, current, now, backfill=True):
                created += 1
            count += 1
            current = d.next_after(current)
        if current is None or current > end:
            await store.update_trigger(unit.conn, row.namespace, row.flow_id, row.trigger_id, backfill=None)
        else:
            backfill["next"] = current.isoformat()
            await store.update_trigger(unit.conn, row.namespace, row.flow_id, row.trigger_id, backfill=backfill)
        return created

    async def start_backfill(self, namespace: str, flow_id: str, trigger_id: str, start: datetime,
                             end: datetime | None = None) -> store.TriggerRow:
        """Start (or replace) a backfill of a schedule from ``start`` to ``end`` (default: now):
        each tick in between runs once, labelled ``system.backfill``.

        Raises:
            NotFoundError: no such schedule trigger.
            InvalidArgumentError: ``start`` is not before ``end``.
        """
        from controlplane.errors import InvalidArgumentError

        await self.sync_once(force=True)
        async with self._tx() as unit:
            row = await store.get_trigger(unit.conn, namespace, flow_id, trigger_id, lock=True)
            if row is None or row.kind != "schedule":
                raise NotFoundError(f"flow {namespace}.{flow_id} has no schedule trigger '{trigger_id}'")
            end = end or self.clock()
            if start >= end:
                raise InvalidArgumentError(
                    f"backfill of {namespace}.{flow_id}/{trigger_id}: start {start.isoformat()} is not before "
                    f"end {end.isoformat()}")
            await store.update_trigger(unit.conn, namespace, flow_id, trigger_id, backfill={
                "start": start.isoformat(), "end": end.isoformat(), "next": start.isoformat(), "labels": {},
                "paused": False})
            return await store.get_trigger(unit.conn, namespace, flow_id, trigger_id)

    async def change_backfill(self, namespace: str, flow_id: str, trigger_id: str, *,
                              paused: bool | None = None, delete: bool = False) -> store.TriggerRow:
        """Pause, resume or delete the backfill in progress.

        Raises:
            NotFoundError: no such trigger.
            FailedPreconditionError: no backfill in progress.
        """
        from controlplane.errors import FailedPreconditionError

        async with self._tx() as unit:
            row = await store.get_trigger(unit.conn, namespace, flow_id, trigger_id, lock=True)
            if row is None:
                raise NotFoundError(f"flow {namespace}.{flow_id} has no trigger '{trigger_id}'")
            if row.backfill is None:
                raise FailedPreconditionError(f"trigger {namespace}.{flow_id}/{trigger_id} has no backfill in progress")
            backfill = None if delete else {**row.backfill, "paused": bool(paused)}
            await store.update_trigger(unit.conn, namespace, flow_id, trigger_id, backfill=backfill)
            return await store.get_trigger(unit.conn, namespace, flow_id, trigger_id)

    # -- enable / disable --------------------------------------------------------------------

    async def set_enabled(self, namespace: str, flow_id: str, trigger_id: str, enabled: bool,
                          reason: str | None = None) -> store.TriggerRow:
        """Enable or disable a trigger (API, ``stopAfter``). Re-enabling a schedule resumes from
        now: ticks that passed while it was disabled are not fired.

        Raises:
            NotFoundError: unknown flow or trigger (message names both).
        """
        await self.sync_once(force=True)
        async with self._tx() as unit:
            conn = unit.conn
            row = await store.get_trigger(conn, namespace, flow_id, trigger_id, lock=True)
            if row is None:
                raise NotFoundError(f"flow {namespace}.{flow_id} has no trigger '{trigger_id}'")
            values: dict[str, Any] = {"disabled": not enabled, "disabled_reason": None if enabled else reason}
            if enabled and row.disabled and row.kind == "schedule":
                found = await self._definition_at(conn, row)
                if found is not None and not found[1].disabled and not found[0].disabled:
                    values["next_date"] = found[1].next_after(self.clock())
            await store.update_trigger(conn, namespace, flow_id, trigger_id, **values)
            return await store.get_trigger(conn, namespace, flow_id, trigger_id)

    async def toggle_in(self, conn: Any, namespace: str, flow_id: str, trigger_id: str, enabled: bool) -> None:
        """:meth:`set_enabled` inside the caller's transaction ``conn`` (the Toggle task runs in
        the executor's); a trigger not synced yet is looked up after syncing its flow.

        Raises:
            NotFoundError: unknown flow or trigger (message names both).
        """
        row = await store.get_trigger(conn, namespace, flow_id, trigger_id, lock=True)
        if row is None:
            raise NotFoundError(f"flow {namespace}.{flow_id} has no trigger '{trigger_id}'")
        values: dict[str, Any] = {"disabled": not enabled, "disabled_reason": None if enabled else "Toggle task"}
        if enabled and row.disabled and row.kind == "schedule":
            found = await self._definition_at(conn, row)
            if found is not None and not found[1].disabled and not found[0].disabled:
                values["next_date"] = found[1].next_after(self.clock())
        await store.update_trigger(conn, namespace, flow_id, trigger_id, **values)

    async def list_triggers(self, namespace: str = "", flow_id: str = "") -> list[store.TriggerRow]:
        """Trigger rows (after a sync, so a flow registered a moment ago is listed)."""
        await self.sync_once(force=True)
        async with self._tx() as unit:
            return await store.list_triggers(unit.conn, namespace, flow_id)

    # -- flow triggers -----------------------------------------------------------------------

    def _listeners(self) -> list[tuple[Flow, TriggerDef]]:
        return [(e.flow, d) for e in self._flows.values() if e.flow is not None and not e.flow.disabled
                for d in e.defs if d.kind == "flow" and not d.disabled]

    def _stoppers(self) -> dict[tuple[str, str, str], TriggerDef]:
        return {(e.flow.namespace, e.flow.id, d.id): d for e in self._flows.values() if e.flow is not None
                for d in e.defs if d.stop_after}

    async def flow_triggers_once(self, standby: bool = False) -> int:
        """Start Flow-triggered executions for upstream state changes not handled yet, and apply
        ``stopAfter``; returns executions created.

        An upstream event is one entry of an execution's state history; it is claimed as
        ``<execution id>:<history index>`` so it starts at most one execution per listener.
        """
        listeners = self._listeners()
        stoppers = self._stoppers()
        now = self.clock()
        self._passes += 1
        # A listener this replica had not synced yet when it last scanned: the shared watermark
        # (moved by any replica) may have passed its events, and `_seen` marked them handled
        # without it. Look back `deep_lookback` once and forget `_seen`; the unique claim per
        # (trigger, event) keeps anything from firing twice.
        keys = frozenset((f.namespace, f.id, d.id, f.revision) for f, d in listeners)
        new_listener = bool(keys - self._listener_keys)
        self._listener_keys = keys
        if new_listener:
            self._seen.clear()
        async with self._tx() as unit:
            cursor = await store.get_cursor(unit.conn, _FLOW_CURSOR)
            if cursor is None:
                await store.advance_cursor(unit.conn, _FLOW_CURSOR, now - timedelta(seconds=self.options.flow_skew))
                return 0
            # Usually read from the watermark on; every few passes look back ``flow_skew`` (and
            # now and then ``deep_lookback``) for changes committed after later ones. Not after a
            # full page: the scan must move on.
            if new_listener or (self._passes % self.options.deep_every == 0 and not self._full_page):
                since = cursor - timedelta(seconds=self.options.deep_lookback)
            elif self._passes % self.options.skew_every == 0 and not self._full_page:
                since = cursor - timedelta(seconds=self.options.flow_skew)
            else:
                since = cursor
            rows = await store.changed_executions(unit.conn, since, limit=self.options.scan_page)
        self._full_page = len(rows) >= self.options.scan_page
        if not rows:
            return 0
        ready_before = now - timedelta(seconds=self.options.standby_delay) if standby else None
        created = 0
        for row in rows:
            histories = row.histories or []
            start = self._seen.get(row.id, 0)
            done = start
            for index in range(start, len(histories)):
                entry = histories[index]
                at = datetime.fromisoformat(entry["date"]) if isinstance(entry.get("date"), str) else now
                if ready_before is not None and at > ready_before:
                    break
                state = entry.get("state")
                for flow, d in listeners:
                    if state in d.states and (flow.namespace, flow.id) != (row.namespace, row.flow_id):
                        try:
                            created += await self._fire_flow_event(flow, d, row, index, state, at)
                        except Exception:
                            log.exception("scheduler: flow trigger %s.%s/%s on execution %s failed",
                                          flow.namespace, flow.id, d.id, row.id)
                if state and State(state).is_terminal and row.trigger:
                    await self._apply_stop_after(stoppers, row, state)
                done = index + 1
            self._seen[row.id] = done
        if len(self._seen) > 100_000:
            self._seen.clear()
        async with self._tx() as unit:
            await store.advance_cursor(unit.conn, _FLOW_CURSOR, max(r.updated_at for r in rows))
        return created

    async def _apply_stop_after(self, stoppers: dict[tuple[str, str, str], TriggerDef], row: Any, state: str) -> None:
        trigger_id = (row.trigger or {}).get("id")
        d = stoppers.get((row.namespace, row.flow_id, str(trigger_id)))
        if d is None or state not in d.stop_after:
            return
        async with self._tx() as unit:
            current = await store.get_trigger(unit.conn, row.namespace, row.flow_id, d.id, lock=True)
            if current is None or current.disabled or current.created_at > row.updated_at:
                return
            await store.update_trigger(unit.conn, row.namespace, row.flow_id, d.id, disabled=True,
                                       disabled_reason=f"stopAfter: execution {row.id} ended {state}")
            log.info("scheduler: trigger %s.%s/%s disabled by stopAfter (execution %s %s)",
                     row.namespace, row.flow_id, d.id, row.id, state)

    async def _fire_flow_event(self, flow: Flow, d: TriggerDef, row: Any, index: int, state: str, at: datetime) -> int:
        async with self._tx() as unit:
            conn = unit.conn
            trow = await store.get_trigger(conn, flow.namespace, flow.id, d.id, lock=True)
            if trow is None or trow.disabled or trow.created_at > at:
                return 0
            upstream = await repo.get_execution(conn, row.id)
            if upstream is None:
                return 0
            variables = {
                "executionId": row.id, "namespace": row.namespace, "flowId": row.flow_id,
                "flowRevision": row.flow_revision, "state": state,
                "executionLabels": dict(row.labels or {}), "outputs": row.outputs or {},
            }
            ctx = await self._upstream_context(conn, upstream, variables)
            execution_info = {"id": row.id, "namespace": row.namespace, "flowId": row.flow_id, "state": state,
                              "labels": dict(row.labels or {}), "outputs": row.outputs or {}}
            # A deep copy: `_multiple` changes the nested window docs, and a shallow copy changed
            # `trow.state` with them, so the change was never seen below nor stored.
            state_doc = copy.deepcopy(trow.state or {})
            counted: list[str] = []
            cctx = ConditionContext(
                variables=ctx, execution=execution_info, now=at,
                multiple=lambda cond: self._multiple(cond, state_doc, ctx, execution_info, at, counted))
            conditions = list(d.conditions) + _preconditions(d.raw.get("preconditions"))
            try:
                ok = all_hold(conditions, cctx)
                inputs = render(dict(d.inputs), ctx, where=f"trigger '{d.id}' inputs") if ok else {}
            except (ExpressionError, ValueError) as exc:
                log.warning("scheduler: flow %s.%s trigger %s: %s", flow.namespace, flow.id, d.id, exc)
                await store.record_fire(conn, flow.namespace, flow.id, d.id, event_key=f"{row.id}:{index}",
                                        skipped_reason=str(exc)[:2000])
                return 0
            # Both replicas and the look-back passes read the same event; an event that counts in
            # a window is claimed (unique key, in this transaction, under the row lock) so it counts
            # once: counted again after the window was met and reset, it would fire a second time.
            if counted and await store.record_fire(
                conn, flow.namespace, flow.id, d.id, event_key=f"{row.id}:{index}:counted",
                skipped_reason=f"counted in MultipleCondition window ({', '.join(counted)})",
            ) is None:
                return 0
            if state_doc != (trow.state or {}):
                await store.update_trigger(conn, flow.namespace, flow.id, d.id, state=state_doc)
            if not ok:
                return 0
            return int(await self._start(unit, flow, d, {"event_key": f"{row.id}:{index}"}, variables, inputs, {}))

    async def _upstream_context(self, conn: Any, upstream: Any, variables: dict[str, Any]) -> dict[str, Any]:
        """Expression variables of the upstream execution (Kestra renders a Flow trigger's
        ``inputs`` and conditions in the upstream's context), plus ``trigger``."""
        try:
            from controlplane.engine.context import expression_context
            from controlplane.engine.view import ExecutionView

            upstream_flow = await self._load(conn, upstream.namespace, upstream.flow_id, upstream.flow_revision)
            ctx = expression_context(upstream_flow, upstream, ExecutionView(upstream_flow, upstream),
                                     globals_=self._globals)
        except Exception:
            log.exception("scheduler: cannot build the context of execution %s", upstream.id)
            ctx = {"execution": {"id": upstream.id}, "outputs": {}}
        ctx["trigger"] = variables
        return ctx

    def _multiple(self, cond: Mapping[str, Any], state_doc: dict[str, Any], ctx: dict[str, Any],
                  execution: dict[str, Any], at: datetime, counted: list[str]) -> bool:
        """MultipleCondition: every named condition matched by some upstream execution within the
        current window (``window``, default P1D, shifted by ``windowAdvance``); resets once met.

        ``state_doc[<condition id>]`` is ``{"window": <start, ISO>, "matched": [names], "after":
        <date of the event that last met it, ISO>}``, changed in place. The condition id is
        appended to ``counted`` when this event matches a member (the caller claims the event so it
        counts once). Events are not read in date order (two replicas, look-back passes), so an
        event of an older window, or not after the event that met the window last, does not count
        (the fire consumed it) and leaves the stored window alone.
        """
        cid = str(cond.get("id") or "multiple")
        window = parse_duration(str(cond.get("window") or "P1D"))
        advance = parse_duration(str(cond.get("windowAdvance") or "PT0S"))
        start_at = window_start(at, window, advance)
        start = start_at.isoformat()
        doc = state_doc.get(cid) if isinstance(state_doc.get(cid), dict) else None
        if doc is not None:
            stored_start, last_met = _stored_date(doc.get("window")), _stored_date(doc.get("after"))
            if stored_start is not None and stored_start > start_at:
                return False
            if doc.get("window") == start and last_met is not None and at <= last_met:
                return False
        if doc is None or doc.get("window") != start:
            doc = {"window": start, "matched": []}
        subs = cond.get("conditions") or {}
        items = subs.items() if isinstance(subs, Mapping) else enumerate(subs)
        names = []
        member_ctx = ConditionContext(variables=ctx, execution=execution, now=at)
        for name, sub in items:
            names.append(str(name))
            if _holds_quietly(sub, member_ctx):
                if cid not in counted:
                    counted.append(cid)
                if str(name) not in doc["matched"]:
                    doc["matched"] = [*doc["matched"], str(name)]
        met = all(n in doc["matched"] for n in names)
        state_doc[cid] = {"window": start, "matched": [], "after": at.isoformat()} if met else doc
        return met

    # -- webhooks ------------------------------------------------------------------------------

    async def fire_webhook(self, namespace: str, flow_id: str, key: str, variables: dict[str, Any]) -> tuple[str, Flow] | None:
        """Start the flow for a webhook call with the right key.

        Args:
            variables: ``{"body", "headers", "parameters"}`` (Kestra's ``trigger.*``).

        Returns:
            (execution id, flow), or None when the flow is unknown, deleted or disabled, no
            enabled Webhook trigger has this key, or its conditions do not hold: the caller
            answers all of these alike (404), so a wrong key reveals nothing.

        Raises:
            InputValidationError: the trigger's inputs do not fit the flow.
        """
        async with self._tx() as unit:
            conn = unit.conn
            try:
                flow = await self._latest_flow(conn, namespace, flow_id)
            except NotFoundError:
                return None
            if flow.disabled:
                return None
            match = None
            for d in definitions(flow):
                if d.kind == "webhook" and d.key is not None and not d.disabled and hmac.compare_digest(
                    d.key.encode(), key.encode()
                ):
                    match = d
            if match is None:
                return None
            row = await store.get_trigger(conn, namespace, flow_id, match.id)
            if row is not None and row.disabled:
                return None
            ctx = self._context(flow, variables)
            if not all_hold(list(match.conditions), ConditionContext(variables=ctx, now=self.clock())):
                return None
            inputs = render(dict(match.inputs), ctx, where=f"trigger '{match.id}' inputs")
            record = {"id": match.id, "type": match.type, "variables": variables}
            execution = await launch(unit, self._executor, flow, record, dict(inputs or {}), {})
            return execution.id, flow

    async def _latest_flow(self, conn: Any, namespace: str, flow_id: str) -> Flow:
        row = await repo.get_flow(conn, namespace, flow_id)
        if row is None or row.deleted:
            raise NotFoundError(f"flow {namespace}.{flow_id} not found")
        return await self._load(conn, namespace, flow_id, row.revision)


def _holds_quietly(cond: Mapping[str, Any], ctx: ConditionContext) -> bool:
    """A member of a MultipleCondition: an expression that cannot be rendered for this event
    (e.g. a label the execution does not have) means "not matched", not an error."""
    try:
        return holds(cond, ctx)
    except (ExpressionError, ValueError) as exc:
        log.debug("condition not matched: %s", exc)
        return False


def _stored_date(stored: Any) -> datetime | None:
    """A date stored as ISO text in a trigger's state; None when absent or unreadable."""
    try:
        return datetime.fromisoformat(str(stored)) if stored else None
    except ValueError:
        return None


def _preconditions(pre: Any) -> list[dict[str, Any]]:
    """Kestra's ``preconditions`` as conditions: each listed flow (namespace, flowId, states) and
    each ``where`` item (its filters ANDed) is one member; one member is checked on each event,
    several form a MultipleCondition that fires once every member matched within ``timeWindow``."""
    if not isinstance(pre, Mapping):
        return []
    base = "io.kestra.plugin.core.condition."
    members: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(pre.get("flows") or []):
        conds: list[dict[str, Any]] = []
        if item.get("flowId"):
            conds.append({"type": base + "ExecutionFlow", "namespace": item["namespace"], "flowId": item["flowId"]})
        else:
            conds.append({"type": base + "ExecutionNamespace", "namespace": item["namespace"], "comparison": "EQUALS"})
        if item.get("states"):
            conds.append({"type": base + "ExecutionStatus", "in": list(item["states"])})
        members[f"flow_{i}"] = _and(conds)
    for i, where in enumerate(pre.get("where") or []):
        filters = [c for c in (_filter(f) for f in where.get("filters") or []) if c]
        if filters:
            members[f"where_{where.get('id') or i}"] = _and(filters)
    if len(members) == 1:
        return list(members.values())
    if not members:
        return []
    window = pre.get("timeWindow") or {}
    return [{
        "type": base + "MultipleCondition", "id": str(pre.get("id") or "preconditions"),
        "window": window.get("window") or "P1D", "windowAdvance": window.get("windowAdvance") or "PT0S",
        "conditions": members,
    }]


def _and(conds: list[dict[str, Any]]) -> dict[str, Any]:
    """All of ``conds`` as one condition: Not(Or(Not a, Not b…))."""
    base = "io.kestra.plugin.core.condition."
    return {"type": base + "Not", "conditions": [
        {"type": base + "Or", "conditions": [{"type": base + "Not", "conditions": [c]} for c in conds]}]}


def _filter(f: Mapping[str, Any]) -> dict[str, Any]:
    """One ``where`` filter of preconditions as a condition (NAMESPACE equal/prefix/suffix,
    FLOW_ID and STATE equal/not equal, EXPRESSION true/false). Other combinations never match."""
    base = "io.kestra.plugin.core.condition."
    field_, op, value = f.get("field"), f.get("type"), f.get("value")
    if field_ == "EXPRESSION":
        expression = {"type": base + "Expression", "expression": str(value if value is not None else "false")}
        return expression if op != "IS_FALSE" else {"type": base + "Not", "conditions": [expression]}
    if field_ == "NAMESPACE" and op in ("EQUAL_TO", "STARTS_WITH", "ENDS_WITH"):
        comparison = {"EQUAL_TO": "EQUALS", "STARTS_WITH": "PREFIX", "ENDS_WITH": "SUFFIX"}[str(op)]
        return {"type": base + "ExecutionNamespace", "namespace": str(value), "comparison": comparison}
    target = {"FLOW_ID": "trigger.flowId", "STATE": "trigger.state", "NAMESPACE": "trigger.namespace"}.get(str(field_))
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    if target is not None and op in ("EQUAL_TO", "NOT_EQUAL_TO"):
        sign = "==" if op == "EQUAL_TO" else "!="
        return {"type": base + "Expression", "expression": "{{ " + f"{target} {sign} '{text}'" + " }}"}
    log.warning("preconditions filter %s %s is not supported: it never matches", field_, op)
    return {"type": base + "Expression", "expression": "false"}


async def run_forever(scheduler: Scheduler, is_leader: Callable[[], Any], interval: float,
                      renew_every: float = 1.0) -> None:
    """The scheduler loop of one replica: a pass, then sleep until the next due tick (at most
    ``interval`` seconds). Leadership (``await is_leader()``) is renewed by its own task every
    ``renew_every`` seconds, so a long pass does not lose it; the leader fires ticks on time, the
    others stand by (fire only ticks already ``standby_delay`` late)."""
    state = {"leader": False}

    async def renew() -> None:
        while True:
            try:
                leader = await is_leader()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler: leadership check failed")
                leader = False
            if leader != state["leader"]:
                log.info("scheduler: this replica %s", "now leads (fires ticks on time)" if leader
                         else "stands by (fires only late ticks)")
                state["leader"] = leader
            await asyncio.sleep(renew_every)

    renewer = asyncio.create_task(renew(), name="scheduler-leadership")
    try:
        while True:
            delay = interval
            leader = state["leader"]
            try:
                await scheduler.run_once(standby=not leader)
                wake = await scheduler.next_wakeup()
                if wake is not None:
                    if not leader:
                        wake += timedelta(seconds=scheduler.options.standby_delay)
                    delay = min(interval, max(0.02, (wake - scheduler.clock()).total_seconds()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed")
            await asyncio.sleep(delay)
    finally:
        renewer.cancel()
