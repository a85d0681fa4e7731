"""Repository functions for the executor operations: flow concurrency slots, subflow links,
restart/replay copies, pause timers, labels and kill push (the caller owns the transaction).

Kept apart from ``repository.py`` so the executor-operations work has one obvious home; rows
become :mod:`controlplane.model` objects through ``repository``'s converters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.engine.view import ChildExecution
from controlplane.model import Attempt, State, TaskRun
from controlplane.store import repository as repo
from controlplane.store import tables as t

_TERMINAL = [s.value for s in (State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.CANCELLED,
                               State.RETRIED, State.SKIPPED)]

# ---------------------------------------------------------------------------------------------
# concurrency limits


async def lock_flow_slots(conn: AsyncConnection, namespace: str, flow_id: str) -> int:
    """Row-lock the flow's slot counter (created at 0 when absent); returns slots in use.

    Every start and every end of an execution of a limited flow takes this lock first (after
    the execution's own row), so concurrent starts are counted exactly.
    """
    await conn.execute(
        pg_insert(t.flow_concurrency).values(namespace=namespace, flow_id=flow_id, running=0)
        .on_conflict_do_nothing()
    )
    q = (
        select(t.flow_concurrency.c.running)
        .where(t.flow_concurrency.c.namespace == namespace, t.flow_concurrency.c.flow_id == flow_id)
        .with_for_update()
    )
    return int((await conn.execute(q)).scalar_one())


async def add_flow_slots(conn: AsyncConnection, namespace: str, flow_id: str, delta: int) -> None:
    """Change the flow's slots in use by ``delta`` (lock it first with :func:`lock_flow_slots`)."""
    await conn.execute(
        update(t.flow_concurrency)
        .where(t.flow_concurrency.c.namespace == namespace, t.flow_concurrency.c.flow_id == flow_id)
        .values(running=t.flow_concurrency.c.running + delta)
    )


async def set_slot(conn: AsyncConnection, execution_id: str, held: bool) -> None:
    """Record whether the execution holds one of its flow's slots."""
    await conn.execute(update(t.executions).where(t.executions.c.id == execution_id).values(concurrency_slot=held))


async def oldest_queued(conn: AsyncConnection, namespace: str, flow_id: str) -> str | None:
    """The oldest QUEUED execution of the flow without a slot (row-locked), or None."""
    q = (
        select(t.executions.c.id)
        .where(
            t.executions.c.namespace == namespace,
            t.executions.c.flow_id == flow_id,
            t.executions.c.state == State.QUEUED.value,
            t.executions.c.concurrency_slot.is_(False),
        )
        .order_by(t.executions.c.created_at, t.executions.c.id)
        .limit(1)
        .with_for_update()
    )
    return (await conn.execute(q)).scalar_one_or_none()


# ---------------------------------------------------------------------------------------------
# subflows


async def child_executions(conn: AsyncConnection, task_run_ids: list[str]) -> dict[str, ChildExecution]:
    """Subflow task run id -> the execution it started (state and outputs as committed)."""
    if not task_run_ids:
        return {}
    q = select(t.executions.c.id, t.executions.c.state, t.executions.c.outputs,
               t.executions.c.caller_task_run_id).where(t.executions.c.caller_task_run_id.in_(task_run_ids)) \
        .order_by(t.executions.c.created_at)  # a retried child's newest execution wins
    return {r.caller_task_run_id: ChildExecution(r.id, State(r.state), r.outputs) for r in (await conn.execute(q)).all()}


async def caller_depth(conn: AsyncConnection, execution_id: str, limit: int) -> int:
    """How many Subflow callers are above ``execution_id`` (0 for a top execution), counting
    at most ``limit`` (one primary-key read per level)."""
    depth, current = 0, execution_id
    while depth < limit:
        caller = (await conn.execute(
            select(t.executions.c.caller_execution_id).where(t.executions.c.id == current)
        )).scalar_one_or_none()
        if caller is None:
            return depth
        depth, current = depth + 1, caller
    return depth


async def running_children(conn: AsyncConnection, execution_id: str) -> list[str]:
    """Ids of the unfinished executions a given execution started through Subflow tasks."""
    q = select(t.executions.c.id).where(
        t.executions.c.caller_execution_id == execution_id, t.executions.c.state.not_in(_TERMINAL)
    ).order_by(t.executions.c.created_at)
    return list((await conn.execute(q)).scalars().all())


async def kill_requested(conn: AsyncConnection, execution_id: str) -> bool:
    """Whether ``execution_id`` was asked to be killed (False when it does not exist)."""
    q = select(t.executions.c.kill_requested).where(t.executions.c.id == execution_id)
    return bool((await conn.execute(q)).scalar_one_or_none())


async def start_attempt(conn: AsyncConnection, task_run_id: str, now: Any) -> Attempt:
    """Record a new RUNNING attempt of a task run run by the control plane (a Subflow's child
    execution); returns it as recorded."""
    number = (
        await conn.execute(
            update(t.task_runs).where(t.task_runs.c.id == task_run_id)
            .values(attempt=t.task_runs.c.attempt + 1).returning(t.task_runs.c.attempt)
        )
    ).scalar_one()
    histories = [{"state": State.RUNNING.value, "date": now.isoformat()}]
    await conn.execute(insert(t.task_run_attempts).values(
        task_run_id=task_run_id, attempt=number, state=State.RUNNING.value, histories=histories, started_at=now,
    ))
    return Attempt(number=int(number), state=State.RUNNING, histories=repo.histories_from_json(histories),
                   started_at=now)


# ---------------------------------------------------------------------------------------------
# task runs: properties, removal, copies


async def save_properties(conn: AsyncConnection, task_run_id: str, properties: dict[str, Any] | None) -> None:
    """Replace a task run's stored (rendered) properties."""
    await conn.execute(update(t.task_runs).where(t.task_runs.c.id == task_run_id).values(properties=properties))


async def delete_task_runs(conn: AsyncConnection, task_run_ids: list[str]) -> None:
    """Remove task runs (their attempts and queue rows go with them: ON DELETE CASCADE)."""
    if task_run_ids:
        await conn.execute(delete(t.task_runs).where(t.task_runs.c.id.in_(task_run_ids)))


async def reset_for_restart(conn: AsyncConnection, tr: TaskRun) -> None:
    """Write a restarted task run: its state and history, no end date, error, outputs or timer."""
    await conn.execute(
        update(t.task_runs)
        .where(t.task_runs.c.id == tr.id)
        .values(state=tr.state.value, histories=repo.histories_to_json(tr.histories), ended_at=None, error=None,
                outputs=tr.outputs, next_attempt_at=None, worker_id=None, lease_expires_at=None,
                cancel_requested=False, redeliveries=0)
    )


async def copy_task_run(
    conn: AsyncConnection, source_id: str, new: TaskRun, *, with_attempts: bool
) -> None:
    """Insert ``new`` (a replay's copy of task run ``source_id``) with the source's properties,
    timeout and worker group, and (``with_attempts``) its attempts."""
    src = (await conn.execute(select(t.task_runs).where(t.task_runs.c.id == source_id))).one()
    await conn.execute(
        insert(t.task_runs).values(
            id=new.id, execution_id=new.execution_id, seq=new.seq, task_id=new.task_id, task_type=new.task_type,
            worker_group=src.worker_group, parent_id=new.parent_id, value=new.value, branch=new.branch,
            state=new.state.value, histories=repo.histories_to_json(new.histories), attempt=new.attempt,
            properties=src.properties, timeout_seconds=src.timeout_seconds, outputs=new.outputs,
            error=repo.storable_text(new.error), created_at=new.created_at, started_at=new.started_at,
            ended_at=new.ended_at, ready_at=new.created_at, iteration=new.iteration,
        )
    )
    if with_attempts:
        rows = (await conn.execute(select(t.task_run_attempts).where(t.task_run_attempts.c.task_run_id == source_id))).all()
        if rows:
            await conn.execute(insert(t.task_run_attempts), [
                {"task_run_id": new.id, "attempt": a.attempt, "state": a.state, "histories": a.histories,
                 "worker_id": a.worker_id, "reason": a.reason, "error": a.error, "started_at": a.started_at,
                 "ended_at": a.ended_at}
                for a in rows
            ])


# ---------------------------------------------------------------------------------------------
# labels and kill push


async def save_labels(conn: AsyncConnection, execution_id: str, labels: dict[str, str]) -> None:
    """Replace an execution's labels."""
    await conn.execute(
        update(t.executions).where(t.executions.c.id == execution_id).values(labels=labels, updated_at=repo.utcnow())
    )


async def has_running_on_workers(conn: AsyncConnection, execution_id: str) -> bool:
    """Whether a task run of the execution is still held by a worker (RUNNING with a worker)."""
    q = select(t.task_runs.c.id).where(
        t.task_runs.c.execution_id == execution_id,
        t.task_runs.c.state == State.RUNNING.value,
        t.task_runs.c.worker_id.is_not(None),
    ).limit(1)
    return (await conn.execute(q)).first() is not None


async def cancelled_task_runs_of_worker(conn: AsyncConnection, worker_id: str) -> list[str]:
    """Ids of the RUNNING task runs a worker holds whose execution asked them to stop."""
    q = select(t.task_runs.c.id).where(
        t.task_runs.c.worker_id == worker_id,
        t.task_runs.c.state == State.RUNNING.value,
        t.task_runs.c.cancel_requested.is_(True),
    )
    return list((await conn.execute(q)).scalars().all())
