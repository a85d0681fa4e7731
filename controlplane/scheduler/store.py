"""SQL of the scheduler: trigger rows, fired ticks/events and scan cursors (tables in
``controlplane/store/tables.py``, migration 0005)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.store import pipeline
from controlplane.store import tables as t


@dataclass
class TriggerRow:
    """One row of ``triggers``."""

    namespace: str
    flow_id: str
    trigger_id: str
    kind: str
    type: str
    flow_revision: int
    signature: str
    next_date: datetime | None
    last_date: datetime | None
    disabled: bool
    disabled_reason: str | None
    backfill: dict[str, Any] | None
    state: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


def _row(r: Any) -> TriggerRow:
    return TriggerRow(**{c: getattr(r, c) for c in TriggerRow.__dataclass_fields__})


async def list_triggers(conn: AsyncConnection, namespace: str = "", flow_id: str = "") -> list[TriggerRow]:
    """Trigger rows, optionally of one namespace (and its children) or one flow."""
    q = select(t.triggers)
    if namespace:
        q = q.where(or_(t.triggers.c.namespace == namespace,
                        t.triggers.c.namespace.startswith(namespace + ".", autoescape=True)))
    if flow_id:
        q = q.where(t.triggers.c.flow_id == flow_id)
    q = q.order_by(t.triggers.c.namespace, t.triggers.c.flow_id, t.triggers.c.trigger_id)
    return [_row(r) for r in (await conn.execute(q)).all()]


async def get_trigger(
    conn: AsyncConnection, namespace: str, flow_id: str, trigger_id: str, *, lock: bool = False, skip_locked: bool = False
) -> TriggerRow | None:
    """One trigger row; ``lock`` takes ``FOR UPDATE`` (``skip_locked``: None when another holds it)."""
    q = select(t.triggers).where(
        t.triggers.c.namespace == namespace, t.triggers.c.flow_id == flow_id, t.triggers.c.trigger_id == trigger_id
    )
    if lock:
        q = q.with_for_update(skip_locked=skip_locked)
    r = (await conn.execute(q)).first()
    return _row(r) if r else None


async def upsert_trigger(conn: AsyncConnection, **values: Any) -> None:
    """Insert a trigger row or update its definition fields (keeps the enabled flag)."""
    stmt = pg_insert(t.triggers).values(**values)
    keep = {"namespace", "flow_id", "trigger_id", "disabled", "disabled_reason", "created_at", "state"}
    stmt = stmt.on_conflict_do_update(
        index_elements=["namespace", "flow_id", "trigger_id"],
        set_={k: stmt.excluded[k] for k in values if k not in keep} | {"updated_at": func.now()},
    )
    await conn.execute(stmt)


async def update_trigger(conn: AsyncConnection, namespace: str, flow_id: str, trigger_id: str, **values: Any) -> int:
    """Change fields of one trigger row; returns the rows changed (0 or 1)."""
    res = await conn.execute(
        update(t.triggers)
        .where(t.triggers.c.namespace == namespace, t.triggers.c.flow_id == flow_id, t.triggers.c.trigger_id == trigger_id)
        .values(**values, updated_at=func.now())
    )
    return res.rowcount or 0


async def delete_triggers(conn: AsyncConnection, namespace: str, flow_id: str, keep: list[str]) -> None:
    """Delete a flow's trigger rows except those whose id is in ``keep``."""
    q = delete(t.triggers).where(t.triggers.c.namespace == namespace, t.triggers.c.flow_id == flow_id)
    if keep:
        q = q.where(t.triggers.c.trigger_id.not_in(keep))
    await conn.execute(q)


async def lock_due_schedules(conn: AsyncConnection, before: datetime, limit: int) -> list[TriggerRow]:
    """Lock (``FOR UPDATE SKIP LOCKED``) and return enabled schedules whose next date is at or
    before ``before`` or that have a backfill in progress; rows another scheduler holds are skipped."""
    rows = await pipeline.fetch(conn, _LOCK_DUE_SQL, {"before": before, "limit": limit})
    return [_row(r) for r in rows]


# Plain SQL: it starts every scheduler pass, so its cost makes every fire of the tick later
# (built with SQLAlchemy constructs, ~9 ms for 200 due schedules on the benchmark machine).
_LOCK_DUE_SQL = f"""
SELECT {", ".join(TriggerRow.__dataclass_fields__)} FROM triggers
WHERE kind = 'schedule' AND NOT disabled AND (next_date <= %(before)s OR backfill IS NOT NULL)
ORDER BY next_date NULLS LAST LIMIT %(limit)s
FOR UPDATE SKIP LOCKED"""


async def earliest_next_date(conn: AsyncConnection) -> datetime | None:
    """The soonest next date of an enabled schedule."""
    q = select(func.min(t.triggers.c.next_date)).where(
        t.triggers.c.kind == "schedule", t.triggers.c.disabled.is_(False)
    )
    return (await conn.execute(q)).scalar_one_or_none()


async def record_fire(
    conn: AsyncConnection,
    namespace: str,
    flow_id: str,
    trigger_id: str,
    *,
    scheduled_date: datetime | None = None,
    event_key: str | None = None,
    skipped_reason: str | None = None,
    execution_id: str | None = None,
) -> int | None:
    """Claim a tick (``scheduled_date``) or event (``event_key``); the fire row id, or None when
    it was claimed before (the unique keys: a tick or event fires once)."""
    stmt = (
        pg_insert(t.trigger_fires)
        .values(namespace=namespace, flow_id=flow_id, trigger_id=trigger_id, scheduled_date=scheduled_date,
                event_key=event_key, skipped_reason=skipped_reason, execution_id=execution_id)
        .on_conflict_do_nothing()
        .returning(t.trigger_fires.c.id)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def list_fires(conn: AsyncConnection, namespace: str, flow_id: str, trigger_id: str = "") -> list[Any]:
    """Fire rows of a flow (oldest first), for tests and the API."""
    q = select(t.trigger_fires).where(t.trigger_fires.c.namespace == namespace, t.trigger_fires.c.flow_id == flow_id)
    if trigger_id:
        q = q.where(t.trigger_fires.c.trigger_id == trigger_id)
    return list((await conn.execute(q.order_by(t.trigger_fires.c.id))).all())


async def get_cursor(conn: AsyncConnection, name: str) -> datetime | None:
    """A scan watermark."""
    q = select(t.scheduler_cursors.c.position).where(t.scheduler_cursors.c.name == name)
    return (await conn.execute(q)).scalar_one_or_none()


async def advance_cursor(conn: AsyncConnection, name: str, position: datetime) -> None:
    """Move a watermark forward (never back)."""
    stmt = pg_insert(t.scheduler_cursors).values(name=name, position=position)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"position": func.greatest(t.scheduler_cursors.c.position, stmt.excluded.position)}
    )
    await conn.execute(stmt)


async def changed_executions(conn: AsyncConnection, since: datetime, limit: int) -> list[Any]:
    """Executions updated after ``since``, oldest change first (the Flow-trigger scan)."""
    e = t.executions
    q = (
        select(e.c.id, e.c.namespace, e.c.flow_id, e.c.flow_revision, e.c.state, e.c.histories, e.c.labels,
               e.c.outputs, e.c.trigger, e.c.updated_at)
        .where(e.c.updated_at > since)
        .order_by(e.c.updated_at, e.c.id)
        .limit(limit)
    )
    return list((await conn.execute(q)).all())


async def latest_flow_revisions(conn: AsyncConnection) -> list[tuple[str, str, int, bool]]:
    """(namespace, flow id, latest revision, deleted) of every flow."""
    f = t.flows
    latest = (
        select(f.c.namespace, f.c.flow_id, func.max(f.c.revision).label("revision"))
        .group_by(f.c.namespace, f.c.flow_id)
        .subquery()
    )
    q = select(f.c.namespace, f.c.flow_id, f.c.revision, f.c.deleted).join(
        latest,
        and_(f.c.namespace == latest.c.namespace, f.c.flow_id == latest.c.flow_id, f.c.revision == latest.c.revision),
    )
    return [tuple(r) for r in (await conn.execute(q)).all()]


_CHUNK = 500


async def fire_many(conn: AsyncConnection, fires: list[tuple[str, str, str, dict[str, Any], Any]]) -> set[str]:
    """Claim many ticks at once and store the executions of the claimed ones (three statements
    whatever the count), in the caller's transaction.

    Args:
        fires: (namespace, flow id, trigger id, ``{"scheduled_date": d}`` or ``{"event_key": k}``,
            prepared :class:`controlplane.model.Execution`).

    Returns:
        Ids of the executions stored (a tick claimed before is skipped: the unique keys).
    """
    if not fires:
        return set()
    if len(fires) > _CHUNK:  # stay far below Postgres' 65535 bind parameters per statement
        claimed_all: set[str] = set()
        for i in range(0, len(fires), _CHUNK):
            claimed_all |= await fire_many(conn, fires[i:i + _CHUNK])
        return claimed_all
    from controlplane.store.repository import histories_to_json

    rows = await pipeline.fetch(conn, _FIRE_MANY_SQL, {
        "ns": [ns for ns, *_ in fires],
        "flow": [f[1] for f in fires],
        "trig": [f[2] for f in fires],
        "date": [f[3].get("scheduled_date") for f in fires],
        "event": [f[3].get("event_key") for f in fires],
        "id": [e.id for *_, e in fires],
        "rev": [e.flow_revision for *_, e in fires],
        "state": [e.state.value for *_, e in fires],
        "histories": [Jsonb(histories_to_json(e.histories)) for *_, e in fires],
        "inputs": [Jsonb(e.inputs) for *_, e in fires],
        "labels": [Jsonb(e.labels) for *_, e in fires],
        "trigger": [Jsonb(e.trigger) for *_, e in fires],
        "created": [e.created_at for *_, e in fires],
    })
    return {r.execution_id for r in rows}


# One statement for a batch (plain SQL over arrays: a multi-row INSERT built with SQLAlchemy
# constructs cost ~0.1 ms of CPU per row to compile, issue 10): claim the ticks, then store the
# executions of the ticks claimed, then put those on the executor queue.
_FIRE_MANY_SQL = """
WITH fired AS (
    INSERT INTO trigger_fires (namespace, flow_id, trigger_id, scheduled_date, event_key, execution_id)
    SELECT * FROM unnest(%(ns)s::text[], %(flow)s::text[], %(trig)s::text[], %(date)s::timestamptz[],
                         %(event)s::text[], %(id)s::text[])
    ON CONFLICT DO NOTHING
    RETURNING execution_id
), stored AS (
    INSERT INTO executions (id, namespace, flow_id, flow_revision, state, histories, inputs, outputs, labels,
                            trigger, created_at)
    SELECT u.id, u.ns, u.flow, u.rev, u.state, u.histories, u.inputs, 'null'::jsonb, u.labels, u.trigger, u.created
    FROM unnest(%(id)s::text[], %(ns)s::text[], %(flow)s::text[], %(rev)s::int[], %(state)s::text[],
                %(histories)s::jsonb[], %(inputs)s::jsonb[], %(labels)s::jsonb[], %(trigger)s::jsonb[],
                %(created)s::timestamptz[]) AS u(id, ns, flow, rev, state, histories, inputs, labels, trigger, created)
    WHERE u.id IN (SELECT execution_id FROM fired)
    RETURNING id, created_at
), queued AS (
    INSERT INTO executor_queue (execution_id, available_at) SELECT id, created_at FROM stored
    ON CONFLICT DO NOTHING
)
SELECT execution_id FROM fired"""


async def move_many(conn: AsyncConnection, moves: list[dict[str, Any]]) -> None:
    """Set ``next_date``/``last_date`` of many trigger rows (keys ``ns``, ``flow``, ``trig``,
    ``next``, ``last``) in one pipelined statement."""
    if not moves:
        return
    await pipeline.defer(conn, _MOVE_MANY_SQL, {
        "ns": [m["ns"] for m in moves], "flow": [m["flow"] for m in moves], "trig": [m["trig"] for m in moves],
        "next": [m["next"] for m in moves], "last": [m["last"] for m in moves],
    })


_MOVE_MANY_SQL = """
UPDATE triggers AS t SET next_date = u.next, last_date = u.last, updated_at = now()
FROM unnest(%(ns)s::text[], %(flow)s::text[], %(trig)s::text[], %(next)s::timestamptz[], %(last)s::timestamptz[])
     AS u(ns, flow, trig, next, last)
WHERE t.namespace = u.ns AND t.flow_id = u.flow AND t.trigger_id = u.trig"""
