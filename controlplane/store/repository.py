"""Repository functions over an ``AsyncConnection`` (the caller owns the transaction).

Rows become :mod:`controlplane.model` objects here and nowhere else. Every worker-driven change
of a task run is a fenced UPDATE (``id``, ``attempt``, ``lease_epoch``, ``state='RUNNING'``) so a
late result from an old attempt changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import (
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane import secrets
from controlplane.model import Attempt, Execution, State, StateHistory, TaskRun
from controlplane.store import pipeline
from controlplane.store import tables as t

#: Longest error text or log line stored (characters); longer text is cut with a marker.
MAX_TEXT = 64 * 1024


def storable_text(text: str | None) -> str | None:
    """Text Postgres can hold and the API can return: secret values masked
    (:func:`controlplane.secrets.mask`), NUL -> U+FFFD, at most ``MAX_TEXT`` chars."""
    if text is None:
        return None
    text = secrets.mask(text).replace("\x00", "\ufffd")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… ({len(text) - MAX_TEXT} characters cut)"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def histories_to_json(histories: Iterable[StateHistory]) -> list[dict[str, str]]:
    """``[{state, date}]`` with ISO-8601 dates, as stored in ``histories`` columns."""
    return [{"state": h.state.value, "date": h.date.isoformat()} for h in histories]


def histories_from_json(raw: Iterable[dict[str, str]]) -> list[StateHistory]:
    """Inverse of :func:`histories_to_json`."""
    return [StateHistory(State(h["state"]), datetime.fromisoformat(h["date"])) for h in raw]


# ---------------------------------------------------------------------------------------------
# settings


async def get_or_create_setting(conn: AsyncConnection, key: str, value: str) -> str:
    """The stored value of ``key``; stores ``value`` first when the key is absent (race-safe)."""
    await conn.execute(pg_insert(t.settings).values(key=key, value=value).on_conflict_do_nothing())
    return (await conn.execute(select(t.settings.c.value).where(t.settings.c.key == key))).scalar_one()


# ---------------------------------------------------------------------------------------------
# flows


@dataclass(frozen=True)
class FlowRow:
    """One stored flow revision."""

    namespace: str
    flow_id: str
    revision: int
    source: str
    spec: dict[str, Any]
    deleted: bool
    created_at: datetime


def _flow_row(row: Any) -> FlowRow:
    return FlowRow(row.namespace, row.flow_id, row.revision, row.source, row.spec, row.deleted, row.created_at)


async def get_flow(conn: AsyncConnection, namespace: str, flow_id: str, revision: int = 0) -> FlowRow | None:
    """A flow revision (latest when ``revision`` is 0), deleted ones included; None when absent."""
    q = select(t.flows).where(t.flows.c.namespace == namespace, t.flows.c.flow_id == flow_id)
    q = q.where(t.flows.c.revision == revision) if revision else q.order_by(t.flows.c.revision.desc()).limit(1)
    row = (await conn.execute(q)).first()
    return _flow_row(row) if row else None


_FLOW_REVISION_SQL = "SELECT revision, deleted FROM flows WHERE namespace = %(namespace)s AND flow_id = %(flow_id)s"


async def flow_revision(conn: AsyncConnection, namespace: str, flow_id: str, revision: int = 0) -> tuple[int, bool] | None:
    """(revision, deleted) of a flow's latest revision (of ``revision`` when given), None when
    absent: what :func:`get_flow` says of it without the source (plain SQL: every start reads it)."""
    rows = await pipeline.fetch(
        conn, _FLOW_REVISION_SQL + (" AND revision = %(revision)s" if revision else " ORDER BY revision DESC LIMIT 1"),
        {"namespace": namespace, "flow_id": flow_id, "revision": revision})
    return (rows[0].revision, rows[0].deleted) if rows else None


async def lock_flow_key(conn: AsyncConnection, namespace: str, flow_id: str) -> None:
    """Serialise registrations of one flow until the transaction ends (Postgres advisory lock);
    the primary key still refuses a duplicate revision should the lock ever be bypassed."""
    await conn.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"kestrel.flow:{namespace}/{flow_id}", 0)))
    )


async def insert_flow_revision(
    conn: AsyncConnection, namespace: str, flow_id: str, revision: int, source: str, spec: dict[str, Any]
) -> FlowRow:
    """Insert revision ``revision``; the primary key refuses a concurrent insert of the same one."""
    row = (
        await conn.execute(
            insert(t.flows)
            .values(namespace=namespace, flow_id=flow_id, revision=revision, source=source, spec=spec)
            .returning(t.flows)
        )
    ).one()
    return _flow_row(row)


async def list_flows(
    conn: AsyncConnection, namespace_prefix: str = "", include_deleted: bool = False,
    limit: int = 1000, after: tuple[str, str] | None = None,
) -> list[FlowRow]:
    """Latest revision of each flow, ordered by (namespace, id), under a dotted namespace prefix."""
    latest = (
        select(t.flows.c.namespace, t.flows.c.flow_id, func.max(t.flows.c.revision).label("rev"))
        .group_by(t.flows.c.namespace, t.flows.c.flow_id)
        .subquery()
    )
    q = select(t.flows).join(
        latest,
        and_(
            t.flows.c.namespace == latest.c.namespace,
            t.flows.c.flow_id == latest.c.flow_id,
            t.flows.c.revision == latest.c.rev,
        ),
    )
    if namespace_prefix:
        q = q.where(or_(t.flows.c.namespace == namespace_prefix, t.flows.c.namespace.startswith(namespace_prefix + ".", autoescape=True)))
    if not include_deleted:
        q = q.where(t.flows.c.deleted.is_(False))
    if after:
        q = q.where(
            or_(t.flows.c.namespace > after[0], and_(t.flows.c.namespace == after[0], t.flows.c.flow_id > after[1]))
        )
    q = q.order_by(t.flows.c.namespace, t.flows.c.flow_id).limit(limit)
    return [_flow_row(r) for r in (await conn.execute(q)).all()]


async def list_flow_revisions(conn: AsyncConnection, namespace: str, flow_id: str) -> list[FlowRow]:
    """Every revision of one flow, oldest first."""
    q = (
        select(t.flows)
        .where(t.flows.c.namespace == namespace, t.flows.c.flow_id == flow_id)
        .order_by(t.flows.c.revision)
    )
    return [_flow_row(r) for r in (await conn.execute(q)).all()]


async def mark_flow_deleted(conn: AsyncConnection, namespace: str, flow_id: str) -> int:
    """Soft-delete every revision of a flow; returns the number of rows changed."""
    res = await conn.execute(
        update(t.flows)
        .where(t.flows.c.namespace == namespace, t.flows.c.flow_id == flow_id)
        .values(deleted=True)
        .returning(t.flows.c.revision)
    )
    return len(res.all())


# ---------------------------------------------------------------------------------------------
# executions


def _execution(row: Any) -> Execution:
    return Execution(
        id=row.id,
        namespace=row.namespace,
        flow_id=row.flow_id,
        flow_revision=row.flow_revision,
        state=State(row.state),
        histories=histories_from_json(row.histories),
        inputs=row.inputs,
        outputs=row.outputs,
        labels=row.labels,
        parent_id=row.parent_id,
        original_id=row.original_id,
        trigger=row.trigger,
        error=row.error,
        kill_requested=row.kill_requested,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        attempt_number=row.attempt_number,
        original_created_at=row.original_created_at,
        caller_execution_id=row.caller_execution_id,
        caller_task_run_id=row.caller_task_run_id,
        concurrency_slot=row.concurrency_slot,
    )


async def insert_execution(conn: AsyncConnection, execution: Execution, request_id: str | None) -> bool:
    """Insert an execution; False (and nothing stored) when ``request_id`` was used already.
    Without a ``request_id`` nothing can conflict: the insert is deferred to the transaction's
    next round trip (:func:`pipeline.defer`) and True returned."""
    params = {
        "id": execution.id,
        "namespace": execution.namespace,
        "flow_id": execution.flow_id,
        "flow_revision": execution.flow_revision,
        "state": execution.state.value,
        "histories": Jsonb(histories_to_json(execution.histories)),
        "inputs": Jsonb(execution.inputs),
        "outputs": Jsonb(execution.outputs),
        "labels": Jsonb(execution.labels),
        "parent_id": execution.parent_id,
        "original_id": execution.original_id,
        "trigger": Jsonb(execution.trigger),
        "request_id": request_id,
        "created_at": execution.created_at,
        "attempt_number": execution.attempt_number,
        "original_created_at": execution.original_created_at,
        "caller_execution_id": execution.caller_execution_id,
        "caller_task_run_id": execution.caller_task_run_id,
    }
    if request_id is None:
        await pipeline.defer(conn, _INSERT_EXECUTION_SQL, params)
        return True
    return bool(await pipeline.fetch(conn, _INSERT_EXECUTION_SQL, params))


_INSERT_EXECUTION_SQL = """
INSERT INTO executions (id, namespace, flow_id, flow_revision, state, histories, inputs, outputs, labels, parent_id,
                        original_id, trigger, request_id, created_at, attempt_number, original_created_at,
                        caller_execution_id, caller_task_run_id)
VALUES (%(id)s, %(namespace)s, %(flow_id)s, %(flow_revision)s, %(state)s, %(histories)s, %(inputs)s, %(outputs)s,
        %(labels)s, %(parent_id)s, %(original_id)s, %(trigger)s, %(request_id)s, %(created_at)s, %(attempt_number)s,
        %(original_created_at)s, %(caller_execution_id)s, %(caller_task_run_id)s)
ON CONFLICT ON CONSTRAINT uq_executions_request_id DO NOTHING
RETURNING id"""


async def find_execution_by_request_id(
    conn: AsyncConnection, namespace: str, flow_id: str, request_id: str
) -> str | None:
    """Id of the execution an earlier start with ``request_id`` created, if any."""
    q = select(t.executions.c.id).where(
        t.executions.c.namespace == namespace,
        t.executions.c.flow_id == flow_id,
        t.executions.c.request_id == request_id,
    )
    return (await conn.execute(q)).scalar_one_or_none()


async def lock_execution(conn: AsyncConnection, execution_id: str, *, nowait: bool = False) -> Execution | None:
    """Read and row-lock an execution (``FOR UPDATE``) for the rest of the transaction."""
    sql = _LOCK_EXECUTION_NOWAIT_SQL if nowait else _LOCK_EXECUTION_SQL
    rows = await pipeline.fetch(conn, sql, {"id": execution_id})
    return _execution(rows[0]) if rows else None


# The executor's hot path runs as plain SQL on psycopg (store/pipeline.py: reads with `fetch`,
# writes `defer`red to the next round trip): building and compiling the same statements with
# SQLAlchemy constructs cost more CPU than the round trip itself (bench/, issue 10).
_LOCK_EXECUTION_SQL = "SELECT * FROM executions WHERE id = %(id)s FOR UPDATE"
_LOCK_EXECUTION_NOWAIT_SQL = _LOCK_EXECUTION_SQL + " NOWAIT"


_GET_EXECUTION_SQL = "SELECT * FROM executions WHERE id = %(id)s"
#: With every task run of the execution and its attempts as one JSON array (creation order): an
#: execution and all it holds come back in one statement.
_GET_EXECUTION_WITH_TASK_RUNS_SQL = """
SELECT executions.*, (
    SELECT coalesce(jsonb_agg(to_jsonb(tr) || jsonb_build_object('attempts', (
        SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.attempt), '[]'::jsonb)
        FROM task_run_attempts AS a WHERE a.task_run_id = tr.id)) ORDER BY tr.seq), '[]'::jsonb)
    FROM task_runs AS tr WHERE tr.execution_id = executions.id) AS task_runs_json
FROM executions WHERE id = %(id)s"""

_TASK_RUN_DATES = ("created_at", "started_at", "ended_at", "next_attempt_at", "lease_expires_at", "ready_at")


class _JsonRow:
    """Attribute access over a row sent as a JSON object (``to_jsonb(row)``)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


def _task_run_from_json(values: dict[str, Any]) -> TaskRun:
    for key in _TASK_RUN_DATES:
        if values.get(key):
            values[key] = datetime.fromisoformat(values[key])
    tr = _task_run(_JsonRow(values))
    tr.attempts = [_attempt_from_json(a) for a in values["attempts"]]
    return tr


async def get_execution(conn: AsyncConnection, execution_id: str, with_task_runs: bool = True) -> Execution | None:
    """An execution with its task runs and attempts (creation order), read in one statement;
    None when unknown."""
    sql = _GET_EXECUTION_WITH_TASK_RUNS_SQL if with_task_runs else _GET_EXECUTION_SQL
    rows = await pipeline.fetch(conn, sql, {"id": execution_id})
    if not rows:
        return None
    row = rows[0]
    execution = _execution(row)
    if with_task_runs:
        execution.task_runs = [_task_run_from_json(values) for values in row.task_runs_json]
    return execution


async def save_execution_state(conn: AsyncConnection, execution: Execution) -> None:
    """Write an execution's mutable fields back (state, histories, outputs, labels, error,
    kill request, dates)."""
    await pipeline.defer(conn, _SAVE_EXECUTION_SQL, {
        "id": execution.id,
        "state": execution.state.value,
        "histories": Jsonb(histories_to_json(execution.histories)),
        "outputs": Jsonb(execution.outputs),
        "labels": Jsonb(execution.labels),
        "error": storable_text(execution.error),
        "kill_requested": execution.kill_requested,
        "started_at": execution.started_at,
        "ended_at": execution.ended_at,
        "updated_at": utcnow(),
    })


_SAVE_EXECUTION_SQL = """
UPDATE executions SET state = %(state)s, histories = %(histories)s, outputs = %(outputs)s, labels = %(labels)s,
    error = %(error)s, kill_requested = %(kill_requested)s, started_at = %(started_at)s, ended_at = %(ended_at)s,
    updated_at = %(updated_at)s
WHERE id = %(id)s"""


async def list_executions(
    conn: AsyncConnection,
    namespace_prefix: str = "",
    flow_id: str = "",
    states: Sequence[State] = (),
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
) -> list[Execution]:
    """Executions newest first (keyset paging on (created_at, id)), without task runs."""
    q = select(t.executions)
    if namespace_prefix:
        q = q.where(
            or_(t.executions.c.namespace == namespace_prefix, t.executions.c.namespace.startswith(namespace_prefix + ".", autoescape=True))
        )
    if flow_id:
        q = q.where(t.executions.c.flow_id == flow_id)
    if states:
        q = q.where(t.executions.c.state.in_([s.value for s in states]))
    if before:
        q = q.where(
            or_(
                t.executions.c.created_at < before[0],
                and_(t.executions.c.created_at == before[0], t.executions.c.id < before[1]),
            )
        )
    q = q.order_by(t.executions.c.created_at.desc(), t.executions.c.id.desc()).limit(limit)
    return [_execution(r) for r in (await conn.execute(q)).all()]


# ---------------------------------------------------------------------------------------------
# task runs


def _task_run(row: Any) -> TaskRun:
    return TaskRun(
        id=row.id,
        execution_id=row.execution_id,
        task_id=row.task_id,
        task_type=row.task_type,
        state=State(row.state),
        histories=histories_from_json(row.histories),
        parent_id=row.parent_id,
        value=row.value,
        branch=row.branch,
        seq=row.seq,
        attempt=row.attempt,
        lease_epoch=row.lease_epoch,
        worker_id=row.worker_id,
        outputs=row.outputs,
        properties=row.properties,
        error=row.error,
        redeliveries=row.redeliveries,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        next_attempt_at=row.next_attempt_at,
        iteration=row.iteration,
    )


def _attempt_from_json(a: dict[str, Any]) -> Attempt:
    return Attempt(
        number=a["attempt"],
        state=State(a["state"]),
        histories=histories_from_json(a["histories"]),
        worker_id=a["worker_id"],
        started_at=datetime.fromisoformat(a["started_at"]) if a["started_at"] else None,
        ended_at=datetime.fromisoformat(a["ended_at"]) if a["ended_at"] else None,
        reason=a["reason"],
        error=a["error"],
        log_file=a.get("log_file"),
        log_bytes=a.get("log_bytes") or 0,
    )


async def load_task_runs(conn: AsyncConnection, execution_id: str) -> list[TaskRun]:
    """Task runs of an execution in creation order, each with its attempts (one statement: the
    attempts of each task run come as a JSON array beside it)."""
    return _task_runs(await pipeline.fetch(conn, _LOAD_TASK_RUNS_SQL, {"execution_id": execution_id}))


async def lock_execution_with_task_runs(conn: AsyncConnection, execution_id: str) -> tuple[Execution | None, list[TaskRun]]:
    """:func:`lock_execution` then :func:`load_task_runs`, in one round trip (pipelined: the
    read of the task runs starts once the lock is held, so it sees them as they are then);
    ``(None, [])`` for an unknown execution."""
    params = {"id": execution_id, "execution_id": execution_id}
    locked, runs = await pipeline.fetch_many(conn, [(_LOCK_EXECUTION_SQL, params), (_LOAD_TASK_RUNS_SQL, params)])
    if not locked:
        return None, []
    return _execution(locked[0]), _task_runs(runs)


def _task_runs(rows: Iterable[Any]) -> list[TaskRun]:
    runs = []
    for r in rows:
        tr = _task_run(r)
        tr.attempts = [_attempt_from_json(a) for a in r.attempts_json]
        runs.append(tr)
    return runs


_LOAD_TASK_RUNS_SQL = """
SELECT tr.*, (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.attempt), '[]'::jsonb)
              FROM task_run_attempts AS a WHERE a.task_run_id = tr.id) AS attempts_json
FROM task_runs AS tr WHERE tr.execution_id = %(execution_id)s ORDER BY tr.seq"""


async def insert_task_run(
    conn: AsyncConnection,
    tr: TaskRun,
    *,
    properties: dict[str, Any] | None = None,
    timeout_seconds: float | None = None,
    worker_group: str = "",
    group_id: str | None = None,
) -> None:
    """Insert a task run (its identity is unique per execution/parent/task/value); ``group_id``
    is the WorkingDirectory task run it runs in, if any."""
    await conn.execute(
        insert(t.task_runs).values(**_new_task_run_values(tr, properties, timeout_seconds, worker_group),
                                   group_id=group_id)
    )


def _new_task_run_values(
    tr: TaskRun, properties: dict[str, Any] | None, timeout_seconds: float | None, worker_group: str
) -> dict[str, Any]:
    """The ``task_runs`` columns of a task run being inserted (ready from its creation)."""
    return dict(
        id=tr.id,
        worker_group=worker_group,
        execution_id=tr.execution_id,
        seq=tr.seq,
        task_id=tr.task_id,
        task_type=tr.task_type,
        parent_id=tr.parent_id,
        value=tr.value,
        branch=tr.branch,
        state=tr.state.value,
        histories=histories_to_json(tr.histories),
        properties=properties,
        timeout_seconds=timeout_seconds,
        outputs=tr.outputs,
        error=storable_text(tr.error),
        created_at=tr.created_at,
        started_at=tr.started_at,
        ended_at=tr.ended_at,
        ready_at=tr.created_at,
        iteration=tr.iteration,
    )


async def save_task_run_state(conn: AsyncConnection, tr: TaskRun, *, clear_lease: bool = False) -> None:
    """Write a task run's state, histories, outputs, error and dates (executor-side changes);
    with ``clear_lease`` also forget its worker and lease (as :func:`clear_lease`), in the same
    statement."""
    await pipeline.defer(conn, _SAVE_TASK_RUN_CLEAR_LEASE_SQL if clear_lease else _SAVE_TASK_RUN_SQL,
                         _state_params(tr))


_SAVE_TASK_RUN_SQL = """
UPDATE task_runs SET state = %(state)s, histories = %(histories)s, outputs = %(outputs)s, error = %(error)s,
    started_at = %(started_at)s, ended_at = %(ended_at)s
WHERE id = %(id)s"""
_SAVE_TASK_RUN_CLEAR_LEASE_SQL = _SAVE_TASK_RUN_SQL.replace(
    "ended_at = %(ended_at)s", "ended_at = %(ended_at)s, worker_id = NULL, lease_expires_at = NULL")


def _state_params(tr: TaskRun) -> dict[str, Any]:
    """The ``task_runs`` columns the executor changes (state, histories, outputs, error, dates)
    as parameters of plain SQL (JSON wrapped for psycopg), with the task run's ``id``."""
    return {
        "id": tr.id,
        "state": tr.state.value,
        "histories": Jsonb(histories_to_json(tr.histories)),
        "outputs": Jsonb(tr.outputs),
        "error": storable_text(tr.error),
        "started_at": tr.started_at,
        "ended_at": tr.ended_at,
    }


async def finish_attempt_and_save(
    conn: AsyncConnection, tr: TaskRun, attempt: int, attempt_state: State, now: datetime | None = None
) -> None:
    """:func:`finish_attempt` (no reason, no error) and :func:`save_task_run_state` with
    ``clear_lease``, in one statement (a worker's successful result); ``now``: the attempt's end
    date (default: the current time)."""
    now = now or utcnow()
    await pipeline.defer(conn, _FINISH_ATTEMPT_AND_SAVE_SQL, {
        **_state_params(tr), "attempt": attempt, "attempt_state": attempt_state.value, "now": now,
        "entry": Jsonb([{"state": attempt_state.value, "date": now.isoformat()}]),
    })


_FINISH_ATTEMPT_AND_SAVE_SQL = """
WITH finished_attempt AS (
    UPDATE task_run_attempts
    SET state = %(attempt_state)s, histories = histories || %(entry)s, reason = NULL, error = NULL, ended_at = %(now)s
    WHERE task_run_id = %(id)s AND attempt = %(attempt)s
    RETURNING attempt
)
UPDATE task_runs SET state = %(state)s, histories = %(histories)s, outputs = %(outputs)s, error = %(error)s,
    started_at = %(started_at)s, ended_at = %(ended_at)s, worker_id = NULL, lease_expires_at = NULL
WHERE id = %(id)s"""



async def insert_and_enqueue_task_run(
    conn: AsyncConnection,
    tr: TaskRun,
    *,
    properties: dict[str, Any] | None = None,
    timeout_seconds: float | None = None,
    worker_group: str = "",
) -> None:
    """:func:`insert_task_run` then :func:`enqueue_task_run` (available now), in one statement."""
    values = _new_task_run_values(tr, properties, timeout_seconds, worker_group)
    for name in ("histories", "properties", "outputs"):
        values[name] = Jsonb(values[name])
    values["now"] = utcnow()
    await pipeline.defer(conn, _INSERT_AND_ENQUEUE_SQL, values)


_INSERT_AND_ENQUEUE_SQL = """
WITH inserted_task_run AS (
    INSERT INTO task_runs (id, worker_group, execution_id, seq, task_id, task_type, parent_id, value, branch, state,
                           histories, properties, timeout_seconds, outputs, error, created_at, started_at, ended_at,
                           ready_at, iteration)
    VALUES (%(id)s, %(worker_group)s, %(execution_id)s, %(seq)s, %(task_id)s, %(task_type)s, %(parent_id)s, %(value)s,
            %(branch)s, %(state)s, %(histories)s, %(properties)s, %(timeout_seconds)s, %(outputs)s, %(error)s,
            %(created_at)s, %(started_at)s, %(ended_at)s, %(ready_at)s, %(iteration)s)
    RETURNING id, task_type, worker_group
)
INSERT INTO task_queue (task_run_id, task_type, worker_group, available_at)
SELECT id, task_type, worker_group, %(now)s FROM inserted_task_run"""


async def enqueue_task_run(
    conn: AsyncConnection, task_run_id: str, task_type: str, worker_group: str = "", available_at: datetime | None = None,
    group_id: str | None = None,
) -> None:
    """Put a task run on the dispatch queue (at most once: the queue row is unique per task run);
    ``group_id``: its WorkingDirectory (only the group's pinned worker may claim it)."""
    await conn.execute(
        pg_insert(t.task_queue)
        .values(task_run_id=task_run_id, task_type=task_type, worker_group=worker_group,
                available_at=available_at or utcnow(), group_id=group_id)
        .on_conflict_do_nothing(index_elements=["task_run_id"])
    )


@dataclass(frozen=True)
class ClaimedTaskRun:
    """A task run just claimed by a worker, with what its assignment needs."""

    task_run_id: str
    execution_id: str
    task_id: str
    task_type: str
    value: str | None
    attempt: int
    lease_epoch: int
    lease_expires_at: datetime
    properties: dict[str, Any]
    timeout_seconds: float | None
    ready_at: datetime | None
    namespace: str
    flow_id: str
    flow_revision: int
    group_id: str | None = None


async def claim_task_runs(
    conn: AsyncConnection, worker_id: str, task_types: Sequence[str], worker_group: str, limit: int, lease_seconds: float,
    *, commit: bool = False,
) -> list[ClaimedTaskRun]:
    """Claim up to ``limit`` queued task runs of ``task_types`` for ``worker_id``.

    One statement (one round trip, plain SQL: :func:`_claim_statement`) does the whole claim: it picks the queue rows
    (``FOR UPDATE SKIP LOCKED``, so concurrent pollers never block each other or take the same
    row), deletes them, marks their task runs RUNNING with a new attempt, lease epoch and lease
    expiry (``lease_seconds`` from now), inserts the RUNNING attempt rows and returns each task
    run with its execution's namespace, flow id and revision, in queue order. A row of a
    WorkingDirectory group is claimed only as :data:`working_directories.CLAIMABLE_SQL` allows.

    ``commit``: the claim ends the transaction, its ``COMMIT`` sent in the same round trip
    (:func:`pipeline.fetch`).
    """
    from controlplane.store import working_directories

    now = utcnow()
    keeps_directories = working_directories.WORKING_DIRECTORY_TYPE in task_types
    params: dict[str, Any] = {
        "task_types": list(task_types), "worker_group": worker_group, "now": now, "limit": limit,
        "worker_id": worker_id, "expires": now + timedelta(seconds=lease_seconds),
        "running_entry": Jsonb([{"state": State.RUNNING.value, "date": now.isoformat()}]),
    }
    if keeps_directories:
        params["wd_task_types"] = Jsonb(sorted(set(task_types)))
    rows = await pipeline.fetch(conn, _claim_statement(keeps_directories), params, commit=commit)
    return [
        ClaimedTaskRun(
            task_run_id=r.id,
            execution_id=r.execution_id,
            task_id=r.task_id,
            task_type=r.task_type,
            value=r.value,
            attempt=r.attempt,
            lease_epoch=r.lease_epoch,
            lease_expires_at=r.lease_expires_at,
            properties=r.properties or {},
            timeout_seconds=r.timeout_seconds,
            ready_at=r.ready_at,
            namespace=r.namespace,
            flow_id=r.flow_id,
            flow_revision=r.flow_revision,
            group_id=r.group_id,
        )
        for r in rows
    ]


_CLAIM_SQL = """
WITH picked AS (
    SELECT q.id FROM task_queue AS q
    WHERE q.task_type = ANY(%(task_types)s) AND q.worker_group = %(worker_group)s AND q.available_at <= %(now)s
      AND {claimable}
    ORDER BY q.id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM task_queue WHERE id IN (SELECT id FROM picked) RETURNING task_run_id
), claimed AS (
    UPDATE task_runs SET
        attempt = attempt + 1, lease_epoch = lease_epoch + 1, worker_id = %(worker_id)s,
        lease_expires_at = %(expires)s, started_at = coalesce(started_at, %(now)s),
        histories = CASE WHEN state = 'RUNNING' THEN histories ELSE histories || %(running_entry)s END,
        state = 'RUNNING'
    WHERE id IN (SELECT task_run_id FROM deleted)
    RETURNING id, seq, execution_id, task_id, task_type, value, attempt, lease_epoch, lease_expires_at,
              properties, timeout_seconds, ready_at, group_id
), attempts AS (
    INSERT INTO task_run_attempts (task_run_id, attempt, state, histories, worker_id, started_at)
    SELECT id, attempt, 'RUNNING', %(running_entry)s, %(worker_id)s, %(now)s FROM claimed
)
SELECT c.*, e.namespace, e.flow_id, e.flow_revision
FROM claimed AS c JOIN executions AS e ON e.id = c.execution_id
ORDER BY c.seq
"""
@functools.cache
def _claim_statement(keeps_directories: bool) -> str:
    """The claim of :func:`claim_task_runs` as plain SQL, by whether the worker keeps working
    directories (:data:`working_directories.CLAIMABLE_SQL`). Building the same statement with
    SQLAlchemy constructs cost ~1 ms of CPU per poll (CTE column proxies, an alias of
    ``task_runs``, cache-key generation) against ~0.1 ms to send this text."""
    from controlplane.store import working_directories  # it imports this module

    return _CLAIM_SQL.format(claimable=working_directories.CLAIMABLE_SQL if keeps_directories
                             else "q.group_id IS NULL")


def _fence(task_run_id: str, attempt: int, lease_epoch: int) -> Any:
    return and_(
        t.task_runs.c.id == task_run_id,
        t.task_runs.c.attempt == attempt,
        t.task_runs.c.lease_epoch == lease_epoch,
        t.task_runs.c.state == State.RUNNING.value,
    )


async def extend_lease(
    conn: AsyncConnection, task_run_id: str, attempt: int, lease_epoch: int, lease_seconds: float
) -> tuple[datetime, bool] | None:
    """Fenced heartbeat: (new lease expiry, cancel requested), or None when the token is stale."""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    row = (
        await conn.execute(
            update(t.task_runs)
            .where(_fence(task_run_id, attempt, lease_epoch))
            .values(lease_expires_at=expires)
            .returning(t.task_runs.c.cancel_requested)
        )
    ).first()
    return (expires, bool(row.cancel_requested)) if row else None


async def lock_running_task_run(
    conn: AsyncConnection, task_run_id: str, attempt: int, lease_epoch: int
) -> TaskRun | None:
    """Fenced read-and-lock of a RUNNING task run for a worker's result; None when stale."""
    row = (await conn.execute(select(t.task_runs).where(_fence(task_run_id, attempt, lease_epoch)).with_for_update())).first()
    return _task_run(row) if row else None


_KEY_SHARE_EXECUTION_SQL = "SELECT 1 FROM executions WHERE id = %(execution_id)s FOR KEY SHARE"
_ADD_ATTEMPT_LOG_BYTES_SQL = """
UPDATE task_run_attempts SET log_bytes = log_bytes + %(count)s WHERE task_run_id = %(task_run_id)s AND attempt = %(attempt)s"""


async def add_attempt_log_bytes(
    conn: AsyncConnection, execution_id: str, task_run_id: str, attempt: int, count: int
) -> int | None:
    """Add ``count`` bytes to an attempt's stored log volume; returns the new total, or None
    when the attempt has no row (nothing is counted).

    The execution's row is share-locked first (``FOR KEY SHARE``, the lock the log rows'
    foreign key takes anyway), in the same round trip: a worker's result locks the execution
    and then updates the attempt, so taking them in the other order deadlocked with it."""
    _, rows = await pipeline.fetch_many(conn, [
        (_KEY_SHARE_EXECUTION_SQL, {"execution_id": execution_id}),
        (_ADD_ATTEMPT_LOG_BYTES_SQL + " RETURNING log_bytes",
         {"count": count, "task_run_id": task_run_id, "attempt": attempt}),
    ])
    return rows[0].log_bytes if rows else None


async def get_task_run_row(conn: AsyncConnection, task_run_id: str) -> Any:
    """The raw task run row (or None), for idempotency checks."""
    return (await conn.execute(select(t.task_runs).where(t.task_runs.c.id == task_run_id))).first()


async def attempt_outcome(conn: AsyncConnection, task_run_id: str, attempt: int) -> tuple[State, str | None] | None:
    """(state, reason) of one attempt, or None when it does not exist."""
    row = (
        await conn.execute(
            select(t.task_run_attempts.c.state, t.task_run_attempts.c.reason).where(
                t.task_run_attempts.c.task_run_id == task_run_id, t.task_run_attempts.c.attempt == attempt
            )
        )
    ).first()
    return (State(row.state), row.reason) if row else None


async def finish_attempt(
    conn: AsyncConnection, task_run_id: str, attempt: int, state: State, *, reason: str | None = None,
    error: str | None = None,
) -> None:
    """Close an attempt with ``state`` (appends to its history)."""
    await conn.execute(_close_attempt(task_run_id, attempt, state, reason, error))


def _close_attempt(task_run_id: str, attempt: int, state: State, reason: str | None, error: str | None):
    """The UPDATE closing one attempt with ``state`` (its history gets the entry, dated now)."""
    now = utcnow()
    entry = [{"state": state.value, "date": now.isoformat()}]
    return (
        update(t.task_run_attempts)
        .where(t.task_run_attempts.c.task_run_id == task_run_id, t.task_run_attempts.c.attempt == attempt)
        .values(
            state=state.value,
            histories=t.task_run_attempts.c.histories.op("||")(literal(entry, type_=JSONB)),
            reason=reason,
            error=storable_text(error),
            ended_at=now,
        )
    )


async def requeue_for_redelivery(conn: AsyncConnection, task_run_id: str, lease_epoch: int) -> None:
    """Drop the current lease (bumping the epoch so the old token is fenced out) and put the
    task run back on the dispatch queue; it stays RUNNING and its next claim is a new attempt."""
    now = utcnow()
    row = (
        await conn.execute(
            update(t.task_runs)
            .where(t.task_runs.c.id == task_run_id, t.task_runs.c.lease_epoch == lease_epoch)
            .values(lease_epoch=lease_epoch + 1, worker_id=None, lease_expires_at=None,
                    redeliveries=t.task_runs.c.redeliveries + 1, ready_at=now)
            .returning(t.task_runs.c.task_type, t.task_runs.c.worker_group, t.task_runs.c.group_id)
        )
    ).one()
    await enqueue_task_run(conn, task_run_id, row.task_type, row.worker_group, now, row.group_id)


async def clear_lease(conn: AsyncConnection, task_run_id: str) -> None:
    """Forget the worker and lease of a task run that has ended."""
    await conn.execute(
        update(t.task_runs).where(t.task_runs.c.id == task_run_id).values(worker_id=None, lease_expires_at=None)
    )


async def expired_leases(conn: AsyncConnection, limit: int = 100) -> list[tuple[str, int, int, str]]:
    """RUNNING task runs whose lease has expired: (id, attempt, lease_epoch, execution_id), locked
    with SKIP LOCKED so replicas share the work."""
    q = (
        select(t.task_runs.c.id, t.task_runs.c.attempt, t.task_runs.c.lease_epoch, t.task_runs.c.execution_id)
        .where(t.task_runs.c.state == State.RUNNING.value, t.task_runs.c.lease_expires_at < utcnow())
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [tuple(r) for r in (await conn.execute(q)).all()]


async def running_task_runs_of_worker(conn: AsyncConnection, worker_id: str) -> list[tuple[str, int, int, str]]:
    """(id, attempt, lease_epoch, execution_id) of task runs a worker holds."""
    q = select(t.task_runs.c.id, t.task_runs.c.attempt, t.task_runs.c.lease_epoch, t.task_runs.c.execution_id).where(
        t.task_runs.c.worker_id == worker_id, t.task_runs.c.state == State.RUNNING.value
    )
    return [tuple(r) for r in (await conn.execute(q)).all()]


async def dequeue_execution_task_runs(conn: AsyncConnection, execution_id: str) -> list[str]:
    """Remove an execution's task runs from the dispatch queue; returns their ids."""
    ids = select(t.task_runs.c.id).where(t.task_runs.c.execution_id == execution_id).scalar_subquery()
    res = await conn.execute(delete(t.task_queue).where(t.task_queue.c.task_run_id.in_(ids)).returning(t.task_queue.c.task_run_id))
    return list(res.scalars().all())


async def request_cancel(conn: AsyncConnection, execution_id: str) -> None:
    """Flag the execution's RUNNING task runs so heartbeats answer ``cancel_requested``."""
    await conn.execute(
        update(t.task_runs)
        .where(t.task_runs.c.execution_id == execution_id, t.task_runs.c.state == State.RUNNING.value)
        .values(cancel_requested=True)
    )


# ---------------------------------------------------------------------------------------------
# retries and timeouts (durable timers on task runs)

#: ``available_at`` of a parked dispatch-queue row: a task run waiting for the executor to start
#: its next attempt (a retry date, or a first attempt whose properties failed to render). No
#: worker can claim it, but killing the execution dequeues it like any other queued task run.
PARKED = datetime(9999, 1, 1, tzinfo=UTC)


def _attempt(a: Any) -> Attempt:
    return Attempt(
        number=a.attempt,
        state=State(a.state),
        histories=histories_from_json(a.histories),
        worker_id=a.worker_id,
        started_at=a.started_at,
        ended_at=a.ended_at,
        reason=a.reason,
        error=a.error,
        log_file=a.log_file,
        log_bytes=a.log_bytes,
    )


async def load_attempts(conn: AsyncConnection, task_run_id: str) -> list[Attempt]:
    """The attempts of one task run, oldest first."""
    q = (
        select(t.task_run_attempts)
        .where(t.task_run_attempts.c.task_run_id == task_run_id)
        .order_by(t.task_run_attempts.c.attempt)
    )
    return [_attempt(a) for a in (await conn.execute(q)).all()]


async def lock_task_run(conn: AsyncConnection, task_run_id: str) -> TaskRun | None:
    """Read and row-lock a task run with its attempts (lock the execution first)."""
    row = (await conn.execute(select(t.task_runs).where(t.task_runs.c.id == task_run_id).with_for_update())).first()
    if row is None:
        return None
    tr = _task_run(row)
    tr.attempts = await load_attempts(conn, task_run_id)
    return tr


async def park_for_next_attempt(conn: AsyncConnection, task_run_id: str, due: datetime) -> None:
    """Schedule the executor to start the task run's next attempt at ``due``: sets
    ``next_attempt_at`` and puts a parked row (:data:`PARKED`) on the dispatch queue."""
    row = (
        await conn.execute(
            update(t.task_runs)
            .where(t.task_runs.c.id == task_run_id)
            .values(next_attempt_at=due, worker_id=None, lease_expires_at=None, cancel_requested=False)
            .returning(t.task_runs.c.task_type, t.task_runs.c.worker_group, t.task_runs.c.group_id)
        )
    ).one()
    await enqueue_task_run(conn, task_run_id, row.task_type, row.worker_group, PARKED, row.group_id)


async def release_for_dispatch(
    conn: AsyncConnection, task_run_id: str, properties: dict[str, Any] | None, timeout_seconds: float | None = None,
) -> None:
    """The next attempt starts now: store its freshly rendered ``properties`` and attempt
    ``timeout_seconds`` (None: no timeout), clear the timer and make the parked queue row
    claimable (re-inserting it if it is gone)."""
    now = utcnow()
    row = (
        await conn.execute(
            update(t.task_runs)
            .where(t.task_runs.c.id == task_run_id)
            .values(properties=properties, next_attempt_at=None, ready_at=now, timeout_seconds=timeout_seconds)
            .returning(t.task_runs.c.task_type, t.task_runs.c.worker_group, t.task_runs.c.group_id)
        )
    ).one()
    moved = await conn.execute(
        update(t.task_queue).where(t.task_queue.c.task_run_id == task_run_id).values(available_at=now)
        .returning(t.task_queue.c.id)
    )
    if moved.first() is None:
        await enqueue_task_run(conn, task_run_id, row.task_type, row.worker_group, now, row.group_id)


async def set_next_attempt_at(conn: AsyncConnection, task_run_id: str, due: datetime | None) -> None:
    """Set (or clear, with None) a task run's ``next_attempt_at`` timer."""
    await conn.execute(update(t.task_runs).where(t.task_runs.c.id == task_run_id).values(next_attempt_at=due))


async def dequeue_task_run(conn: AsyncConnection, task_run_id: str) -> bool:
    """Take a task run off the dispatch queue (not a parked row); False when it was not queued
    (claimed, or parked for a retry, meanwhile)."""
    res = await conn.execute(
        delete(t.task_queue)
        .where(t.task_queue.c.task_run_id == task_run_id, t.task_queue.c.available_at != PARKED)
        .returning(t.task_queue.c.id)
    )
    return res.first() is not None


async def unpark(conn: AsyncConnection, task_run_id: str) -> None:
    """Remove a task run's parked queue row (its pending attempt will not start)."""
    await conn.execute(
        delete(t.task_queue).where(t.task_queue.c.task_run_id == task_run_id, t.task_queue.c.available_at == PARKED)
    )


async def record_unstarted_attempt(conn: AsyncConnection, task_run_id: str, error: str) -> Attempt:
    """Record an attempt that failed on the control plane before any worker ran it (its
    properties failed to render): a new attempt number, RUNNING then FAILED at once."""
    now = utcnow()
    number = (
        await conn.execute(
            update(t.task_runs)
            .where(t.task_runs.c.id == task_run_id)
            .values(attempt=t.task_runs.c.attempt + 1, started_at=func.coalesce(t.task_runs.c.started_at, now))
            .returning(t.task_runs.c.attempt)
        )
    ).scalar_one()
    histories = [{"state": State.RUNNING.value, "date": now.isoformat()},
                 {"state": State.FAILED.value, "date": now.isoformat()}]
    await conn.execute(
        insert(t.task_run_attempts).values(
            task_run_id=task_run_id, attempt=number, state=State.FAILED.value, histories=histories,
            reason="TASK_ERROR", error=storable_text(error), started_at=now, ended_at=now,
        )
    )
    return Attempt(number=number, state=State.FAILED, histories=histories_from_json(histories),
                   started_at=now, ended_at=now, reason="TASK_ERROR", error=storable_text(error))


async def due_next_attempts(conn: AsyncConnection, limit: int = 100) -> list[tuple[str, str]]:
    """``(execution_id, task_run_id)`` of task runs whose ``next_attempt_at`` has come, oldest first."""
    q = (
        select(t.task_runs.c.execution_id, t.task_runs.c.id)
        .where(t.task_runs.c.next_attempt_at.is_not(None), t.task_runs.c.next_attempt_at <= utcnow())
        .order_by(t.task_runs.c.next_attempt_at)
        .limit(limit)
    )
    return [(r.execution_id, r.id) for r in (await conn.execute(q)).all()]


async def has_pending_retry(conn: AsyncConnection, execution_id: str) -> bool:
    """Whether a task run of the execution waits for its retry date (RETRYING with a timer)."""
    q = select(t.task_runs.c.id).where(
        t.task_runs.c.execution_id == execution_id,
        t.task_runs.c.next_attempt_at.is_not(None),
        t.task_runs.c.state == State.RETRYING.value,
    ).limit(1)
    return (await conn.execute(q)).first() is not None


async def postpone_next_attempt(conn: AsyncConnection, task_run_id: str, seconds: float) -> None:
    """Push a task run's ``next_attempt_at`` back (the executor failed to start the attempt)."""
    await conn.execute(
        update(t.task_runs)
        .where(t.task_runs.c.id == task_run_id, t.task_runs.c.next_attempt_at.is_not(None))
        .values(next_attempt_at=utcnow() + timedelta(seconds=seconds))
    )


@dataclass(frozen=True)
class TimedOutAttempt:
    """A RUNNING attempt older than its task's ``timeout`` plus the grace period."""

    task_run_id: str
    attempt: int
    lease_epoch: int
    execution_id: str
    worker_id: str
    timeout_seconds: float


async def timed_out_attempts(conn: AsyncConnection, grace_seconds: float, limit: int = 100) -> list[TimedOutAttempt]:
    """Attempts held by a worker that have run longer than ``timeout_seconds + grace_seconds``
    (the worker should have stopped them and reported TIMEOUT; it did not). ``SKIP LOCKED``."""
    a = t.task_run_attempts
    deadline = a.c.started_at + func.make_interval(0, 0, 0, 0, 0, 0, t.task_runs.c.timeout_seconds + grace_seconds)
    q = (
        select(t.task_runs.c.id, t.task_runs.c.attempt, t.task_runs.c.lease_epoch, t.task_runs.c.execution_id,
               t.task_runs.c.worker_id, t.task_runs.c.timeout_seconds)
        .join(a, and_(a.c.task_run_id == t.task_runs.c.id, a.c.attempt == t.task_runs.c.attempt))
        .where(
            t.task_runs.c.state == State.RUNNING.value,
            t.task_runs.c.timeout_seconds.is_not(None),
            t.task_runs.c.worker_id.is_not(None),
            a.c.state == State.RUNNING.value,
            deadline < utcnow(),
        )
        .limit(limit)
        .with_for_update(of=t.task_runs, skip_locked=True)
    )
    return [TimedOutAttempt(r.id, r.attempt, r.lease_epoch, r.execution_id, r.worker_id, r.timeout_seconds)
            for r in (await conn.execute(q)).all()]


# ---------------------------------------------------------------------------------------------
# executor queue: executions that need the executor's attention


async def mark_execution_dirty(conn: AsyncConnection, execution_id: str, available_at: datetime | None = None) -> None:
    """Ask the executor to advance ``execution_id`` (at ``available_at``, default now)."""
    await pipeline.defer(conn, _MARK_DIRTY_SQL, {"id": execution_id, "at": available_at or utcnow()})


_MARK_DIRTY_SQL = """
INSERT INTO executor_queue (execution_id, available_at) VALUES (%(id)s, %(at)s)
ON CONFLICT (execution_id) DO UPDATE SET available_at = least(executor_queue.available_at, excluded.available_at)"""


async def clear_execution_dirty(conn: AsyncConnection, execution_id: str) -> None:
    """The executor is done with ``execution_id`` for now."""
    await pipeline.defer(conn, "DELETE FROM executor_queue WHERE execution_id = %(id)s", {"id": execution_id})


async def due_dirty_executions(conn: AsyncConnection, limit: int = 50) -> list[str]:
    """Executions due for the executor (``SKIP LOCKED``: replicas share them)."""
    q = (
        select(t.executor_queue.c.execution_id)
        .where(t.executor_queue.c.available_at <= utcnow())
        .order_by(t.executor_queue.c.available_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(q)).scalars().all())


async def postpone_dirty(conn: AsyncConnection, execution_id: str, seconds: float) -> int:
    """Push a failing execution's executor retry back; returns its failure count."""
    res = await conn.execute(
        update(t.executor_queue)
        .where(t.executor_queue.c.execution_id == execution_id)
        .values(available_at=utcnow() + timedelta(seconds=seconds), failures=t.executor_queue.c.failures + 1)
        .returning(t.executor_queue.c.failures)
    )
    return res.scalar_one_or_none() or 0


# ---------------------------------------------------------------------------------------------
# workers


async def upsert_worker(
    conn: AsyncConnection, worker_id: str, hostname: str, sdk: str, task_types: Sequence[str],
    worker_group: str, labels: dict[str, str], concurrency: int,
) -> None:
    """Register or re-register a worker as ACTIVE."""
    now = utcnow()
    values = dict(hostname=hostname, sdk=sdk, task_types=list(task_types), worker_group=worker_group,
                  labels=labels, concurrency=concurrency, state="ACTIVE", last_heartbeat_at=now)
    stmt = pg_insert(t.workers).values(id=worker_id, registered_at=now, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=values))


async def live_worker_identity(conn: AsyncConnection, worker_id: str, within_seconds: float) -> tuple[str, str] | None:
    """``(hostname, sdk)`` of an ACTIVE worker that heartbeated in the last ``within_seconds``,
    else None."""
    cutoff = utcnow() - timedelta(seconds=within_seconds)
    row = (
        await conn.execute(
            select(t.workers.c.hostname, t.workers.c.sdk).where(
                t.workers.c.id == worker_id, t.workers.c.state == "ACTIVE", t.workers.c.last_heartbeat_at >= cutoff
            )
        )
    ).first()
    return (row.hostname, row.sdk) if row else None


@dataclass(frozen=True)
class WorkerRow:
    """A registered worker."""

    id: str
    task_types: list[str]
    worker_group: str
    state: str
    last_heartbeat_at: datetime


async def get_worker(conn: AsyncConnection, worker_id: str) -> WorkerRow | None:
    """A worker by id, or None."""
    r = (await conn.execute(select(t.workers).where(t.workers.c.id == worker_id))).first()
    return WorkerRow(r.id, list(r.task_types), r.worker_group, r.state, r.last_heartbeat_at) if r else None


async def touch_active_worker(conn: AsyncConnection, worker_id: str) -> WorkerRow | None:
    """Record a heartbeat of an ACTIVE worker and return it, in one statement; None when the
    worker is unknown or not ACTIVE (it must register again)."""
    r = (
        await conn.execute(
            update(t.workers)
            .where(t.workers.c.id == worker_id, t.workers.c.state == "ACTIVE")
            .values(last_heartbeat_at=utcnow())
            .returning(t.workers.c.id, t.workers.c.task_types, t.workers.c.worker_group, t.workers.c.state,
                       t.workers.c.last_heartbeat_at)
        )
    ).first()
    return WorkerRow(r.id, list(r.task_types), r.worker_group, r.state, r.last_heartbeat_at) if r else None


async def touch_worker(conn: AsyncConnection, worker_id: str) -> bool:
    """Record a worker heartbeat; False when the worker is unknown or not ACTIVE."""
    res = await conn.execute(
        update(t.workers)
        .where(t.workers.c.id == worker_id, t.workers.c.state == "ACTIVE")
        .values(last_heartbeat_at=utcnow())
        .returning(t.workers.c.id)
    )
    return res.first() is not None


async def set_worker_state(conn: AsyncConnection, worker_id: str, state: str) -> None:
    """Mark a worker ACTIVE, STOPPED or DEAD."""
    await conn.execute(update(t.workers).where(t.workers.c.id == worker_id).values(state=state))


async def mark_dead_workers(conn: AsyncConnection, silent_seconds: float) -> list[str]:
    """Mark DEAD every ACTIVE worker whose last heartbeat is older than ``silent_seconds``;
    returns their ids. A dead worker that polls again is told to register (FAILED_PRECONDITION)
    and comes back ACTIVE; its expired leases are reaped as any others."""
    cutoff = utcnow() - timedelta(seconds=silent_seconds)
    res = await conn.execute(
        update(t.workers)
        .where(t.workers.c.state == "ACTIVE", t.workers.c.last_heartbeat_at < cutoff)
        .values(state="DEAD")
        .returning(t.workers.c.id)
    )
    return list(res.scalars())


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as listed by the API: registration, state and load."""

    id: str
    hostname: str
    sdk: str
    task_types: list[str]
    worker_group: str
    labels: dict[str, str]
    concurrency: int
    state: str
    registered_at: datetime
    last_heartbeat_at: datetime
    running_task_runs: int


async def list_workers(conn: AsyncConnection, state: str = "") -> list[WorkerInfo]:
    """Every registered worker (or those in ``state``), ACTIVE first then by id, with the number of
    attempts RUNNING on each."""
    running = (
        select(t.task_run_attempts.c.worker_id, func.count().label("n"))
        .where(t.task_run_attempts.c.state == "RUNNING")
        .group_by(t.task_run_attempts.c.worker_id)
        .subquery()
    )
    query = (
        select(t.workers, func.coalesce(running.c.n, 0).label("running"))
        .select_from(t.workers.outerjoin(running, running.c.worker_id == t.workers.c.id))
        .order_by((t.workers.c.state != "ACTIVE"), t.workers.c.id)
    )
    if state:
        query = query.where(t.workers.c.state == state)
    rows = (await conn.execute(query)).all()
    return [
        WorkerInfo(r.id, r.hostname, r.sdk, list(r.task_types), r.worker_group, dict(r.labels), r.concurrency,
                   r.state, r.registered_at, r.last_heartbeat_at, int(r.running))
        for r in rows
    ]


@dataclass(frozen=True)
class UnservedTaskRun:
    """A queued task run no ACTIVE worker can take (no worker of its type in its group)."""

    task_run_id: str
    execution_id: str
    task_id: str
    attempt: int
    task_type: str
    worker_group: str


async def unserved_queued_task_runs(conn: AsyncConnection, waiting_seconds: float, limit: int = 100) -> list[UnservedTaskRun]:
    """Task runs queued for longer than ``waiting_seconds`` whose task type has no ACTIVE worker
    in their worker group (oldest first)."""
    q, w = t.task_queue, t.workers
    served = (
        select(w.c.id)
        .where(w.c.state == "ACTIVE", w.c.worker_group == q.c.worker_group, w.c.task_types.has_key(q.c.task_type))
        .exists()
    )
    rows = (
        await conn.execute(
            select(q.c.task_run_id, t.task_runs.c.execution_id, t.task_runs.c.task_id, t.task_runs.c.attempt,
                   q.c.task_type, q.c.worker_group)
            .join(t.task_runs, t.task_runs.c.id == q.c.task_run_id)
            .where(q.c.available_at < utcnow() - timedelta(seconds=waiting_seconds), ~served)
            .order_by(q.c.id)
            .limit(limit)
        )
    ).all()
    return [UnservedTaskRun(*row) for row in rows]


async def known_task_types(conn: AsyncConnection) -> set[str]:
    """Every task type any worker ever registered (custom types become valid in flows)."""
    rows = (await conn.execute(select(func.jsonb_array_elements_text(t.workers.c.task_types)).distinct())).scalars()
    return set(rows)


# ---------------------------------------------------------------------------------------------
# logs


_INSERT_ATTEMPT_LOGS_SQL = """
INSERT INTO logs (execution_id, task_run_id, task_id, attempt, level, message, "timestamp")
SELECT %(execution_id)s, %(task_run_id)s, %(task_id)s, %(attempt)s, l.level, l.message, l.ts
FROM unnest(%(levels)s::text[], %(messages)s::text[], %(timestamps)s::timestamptz[]) WITH ORDINALITY AS l(level, message, ts, n)
ORDER BY l.n"""


async def defer_attempt_logs(
    conn: AsyncConnection, execution_id: str, task_run_id: str, task_id: str, attempt: int,
    lines: Sequence[tuple[str, str, datetime]], log_bytes: int,
) -> None:
    """Queue (:func:`pipeline.defer`: no round trip of their own) the insert of one attempt's log
    lines, ``(level, message, timestamp)`` in order, and the addition of ``log_bytes`` (UTF-8
    bytes; 0: none) to its stored log volume. For a transaction that holds the execution's lock
    (a worker's result), where the execution cannot be deleted meanwhile; :func:`append_logs`
    otherwise."""
    if lines:
        await pipeline.defer(conn, _INSERT_ATTEMPT_LOGS_SQL, {
            "execution_id": execution_id, "task_run_id": task_run_id, "task_id": task_id, "attempt": attempt,
            "levels": [level for level, _, _ in lines],
            "messages": [storable_text(message) for _, message, _ in lines],
            "timestamps": [timestamp for _, _, timestamp in lines],
        })
    if log_bytes:
        await pipeline.defer(conn, _ADD_ATTEMPT_LOG_BYTES_SQL,
                             {"count": log_bytes, "task_run_id": task_run_id, "attempt": attempt})


async def append_logs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert log rows (keys: execution_id, task_run_id, task_id, attempt, level, message, timestamp)."""
    if rows:
        await conn.execute(insert(t.logs), [{**row, "message": storable_text(row["message"])} for row in rows])


async def list_logs(
    conn: AsyncConnection, execution_id: str, task_run_id: str = "", levels: Sequence[str] = (),
    after_seq: int = 0, limit: int = 1000,
) -> list[Any]:
    """Log rows of an execution in order (``seq`` > ``after_seq``)."""
    q = select(t.logs).where(t.logs.c.execution_id == execution_id, t.logs.c.seq > after_seq)
    if task_run_id:
        q = q.where(t.logs.c.task_run_id == task_run_id)
    if levels:
        q = q.where(t.logs.c.level.in_(list(levels)))
    return list((await conn.execute(q.order_by(t.logs.c.seq).limit(limit))).all())
