"""WorkingDirectory groups in Postgres: worker affinity of their child task runs.

A runnable child of a WorkingDirectory (in its ``tasks`` list) carries ``group_id`` = the
WorkingDirectory's task run id, on its task run and on its dispatch queue row. The group's state
lives on the WorkingDirectory task run's ``properties`` (a flowable's rendered decision inputs):

- ``workerId``: the worker the group is pinned to, set when the first child is claimed; the later
  children (and retries) are claimable by that worker only;
- ``taskTypes``: every child type plus the WorkingDirectory type itself; a worker claims the
  first child only when it registered all of them (so it can run the whole group, and it says it
  keeps directories: the WorkingDirectory type is its capability flag, see worker.proto);
- ``tasks``: ids of the main children in order (the last one uploads ``outputFiles``);
- ``restarts``: how many times the group started again from its first child after losing its
  worker (``controlplane.engine.groups``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import case, delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.model.state import TERMINAL
from controlplane.store import executor_ops as ops
from controlplane.store import repository as repo
from controlplane.store import tables as t
from controlplane.tokens import TaskTokenClaims

#: The WorkingDirectory type; a worker lists it among its task types to say it keeps directories.
WORKING_DIRECTORY_TYPE = "io.kestra.plugin.core.flow.WorkingDirectory"

_TERMINAL = [s.value for s in TERMINAL]


#: SQL condition on a ``task_queue`` row ``q`` in the claim (``repository._CLAIM_STATEMENTS``),
#: for a worker that keeps working directories (it lists :data:`WORKING_DIRECTORY_TYPE`): a row
#: outside any group, or a group row when the worker runs every type of the group (bound
#: parameter ``wd_task_types``: its task types, a sorted JSONB list) and the group is pinned to
#: it (``worker_id``) or to no one yet. A worker that does not keep directories claims only rows
#: outside groups (``q.group_id IS NULL``).
CLAIMABLE_SQL = """(q.group_id IS NULL OR EXISTS (
    SELECT 1 FROM task_runs AS g
    WHERE g.id = q.group_id
      AND (g.properties ->> 'workerId' IS NULL OR g.properties ->> 'workerId' = %(worker_id)s)
      AND (g.properties -> 'taskTypes') <@ %(wd_task_types)s))"""


@dataclass(frozen=True)
class Group:
    """What a worker needs to know about the WorkingDirectory of a claimed child.

    Attributes:
        id: The directory's key: the WorkingDirectory task run id, suffixed ``.r<n>`` after its
            n-th restart (so a worker that comes back never reuses a directory of an earlier run).
        input_files: Rendered ``inputFiles`` (path -> text or ``kestra:///`` URI).
        namespace_files: Rendered ``namespaceFiles`` ({enabled, include, exclude}) or None.
        output_files: ``outputFiles`` globs.
        last_task_id: Id of the group's last main child (it uploads ``outputFiles``).
    """

    id: str
    input_files: dict[str, Any] = field(default_factory=dict)
    namespace_files: dict[str, Any] | None = None
    output_files: list[str] = field(default_factory=list)
    last_task_id: str | None = None


async def pin_and_describe(conn: AsyncConnection, claimed: Sequence[repo.ClaimedTaskRun], worker_id: str) -> dict[str, Group]:
    """Pin the groups of just-claimed children to ``worker_id`` (when not pinned yet) and return
    each group's description, by group id (empty when no claimed task run is in a group)."""
    ids = sorted({c.group_id for c in claimed if c.group_id})
    if not ids:
        return {}
    props = t.task_runs.c.properties
    await conn.execute(
        update(t.task_runs)
        .where(t.task_runs.c.id.in_(ids), props["workerId"].astext.is_(None))
        .values(properties=props.op("||")(literal({"workerId": worker_id}, JSONB)))
    )
    rows = (await conn.execute(select(t.task_runs.c.id, props).where(t.task_runs.c.id.in_(ids)))).all()
    groups: dict[str, Group] = {}
    for row in rows:
        p = row.properties or {}
        tasks = p.get("tasks") or []
        groups[row.id] = Group(
            id=directory_key(row.id, int(p.get("restarts") or 0)),
            input_files=dict(p.get("inputFiles") or {}),
            namespace_files=p.get("namespaceFiles"),
            output_files=list(p.get("outputFiles") or []),
            last_task_id=tasks[-1] if tasks else None,
        )
    return groups


def directory_key(group_id: str, restarts: int) -> str:
    """The key of a group's directory on its worker (see :attr:`Group.id`)."""
    return group_id if not restarts else f"{group_id}.r{restarts}"


async def group_of(conn: AsyncConnection, task_run_id: str) -> str | None:
    """The WorkingDirectory task run id a task run belongs to, or None."""
    return (await conn.execute(select(t.task_runs.c.group_id).where(t.task_runs.c.id == task_run_id))).scalar()


async def record_outputs(conn: AsyncConnection, claims: TaskTokenClaims, outputs: dict[str, Any]) -> None:
    """Merge the WorkingDirectory outputs a worker sent with its group's last child into the
    WorkingDirectory task run's outputs; ignored unless the token still holds the child's lease.
    Locks the execution first (the executor's lock order: execution, then task runs)."""
    await repo.lock_execution(conn, claims.execution_id)
    child = t.task_runs.alias("child")
    group = (
        select(child.c.group_id)
        .where(child.c.id == claims.task_run_id, child.c.attempt == claims.attempt,
               child.c.lease_epoch == claims.lease_epoch, child.c.state == "RUNNING")
        .scalar_subquery()
    )
    await conn.execute(
        update(t.task_runs)
        .where(t.task_runs.c.id == group)
        # outputs may hold JSON null (not SQL NULL): merge into an object either way
        .values(outputs=case((func.jsonb_typeof(t.task_runs.c.outputs) == "object", t.task_runs.c.outputs),
                             else_=literal({}, JSONB)).op("||")(literal(outputs, JSONB)))
    )


async def ended(conn: AsyncConnection, worker_id: str, group_ids: Sequence[str]) -> list[str]:
    """Of the working directories a worker keeps, those it may delete: their WorkingDirectory
    ended, is unknown (deleted, restarted) or is no longer pinned to this worker."""
    if not group_ids:
        return []
    props = t.task_runs.c.properties
    rows = (
        await conn.execute(
            select(t.task_runs.c.id, props["restarts"].astext.label("restarts")).where(
                t.task_runs.c.id.in_({key.split(".r", 1)[0] for key in group_ids}),
                t.task_runs.c.state.not_in(_TERMINAL),
                props["workerId"].astext == worker_id,
            )
        )
    ).all()
    alive = {directory_key(r.id, int(r.restarts or 0)) for r in rows}
    return [key for key in group_ids if key not in alive]


@dataclass(frozen=True)
class Stranded:
    """A queued group child whose pinned worker is gone (stopped, or silent past the limit)."""

    execution_id: str
    group_id: str
    task_run_id: str
    worker_id: str


async def stranded(conn: AsyncConnection, dead_after_seconds: float, limit: int = 100) -> list[Stranded]:
    """Queued children pinned to a worker that is STOPPED, silent for ``dead_after_seconds``
    or unknown: nobody else may claim them, so the group must start again elsewhere."""
    g = t.task_runs.alias("wd_group")
    w = t.workers
    pinned = g.c.properties["workerId"].astext
    cutoff = repo.utcnow() - timedelta(seconds=dead_after_seconds)
    rows = (
        await conn.execute(
            select(g.c.execution_id, g.c.id.label("group_id"), t.task_queue.c.task_run_id, pinned.label("worker_id"))
            .select_from(
                t.task_queue.join(g, g.c.id == t.task_queue.c.group_id).outerjoin(w, w.c.id == pinned)
            )
            .where(
                pinned.is_not(None),
                or_(w.c.id.is_(None), w.c.state != "ACTIVE", w.c.last_heartbeat_at < cutoff),
                t.task_queue.c.available_at <= repo.utcnow(),
            )
            .limit(limit)
        )
    ).all()
    return [Stranded(r.execution_id, r.group_id, r.task_run_id, r.worker_id) for r in rows]


async def reset(conn: AsyncConnection, group_id: str) -> int:
    """Start a group again from scratch: delete its child task runs (attempts and queue rows go
    with them), unpin it and count the restart. Returns the number of restarts so far."""
    children = list(
        (await conn.execute(select(t.task_runs.c.id).where(t.task_runs.c.group_id == group_id))).scalars()
    )
    await ops.delete_task_runs(conn, children)
    props = (await conn.execute(select(t.task_runs.c.properties).where(t.task_runs.c.id == group_id))).scalar() or {}
    restarts = int(props.get("restarts") or 0) + 1
    props = {k: v for k, v in props.items() if k != "workerId"} | {"restarts": restarts}
    await conn.execute(update(t.task_runs).where(t.task_runs.c.id == group_id).values(properties=props))
    return restarts


async def restarts_of(conn: AsyncConnection, group_id: str) -> int:
    """How many times the group started again after losing its worker."""
    props = (await conn.execute(select(t.task_runs.c.properties).where(t.task_runs.c.id == group_id))).scalar() or {}
    return int(props.get("restarts") or 0)


async def dequeue(conn: AsyncConnection, task_run_id: str) -> None:
    """Remove a task run's dispatch queue row (claimable or parked)."""
    await conn.execute(delete(t.task_queue).where(t.task_queue.c.task_run_id == task_run_id))
