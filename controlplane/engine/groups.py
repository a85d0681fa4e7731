"""What the executor does when a WorkingDirectory group loses its worker.

The children of a WorkingDirectory share a directory that exists only on the worker the group is
pinned to (``controlplane.store.working_directories``). When that worker is lost, the directory
is gone, so running the next child (or the lost one again) elsewhere would silently run without
the files the earlier children wrote. Instead, as Kestra re-submits the whole WorkingDirectory to
another worker, the group starts again from its first child: its child task runs are deleted
(the WorkingDirectory's log keeps a WARN line saying why), the pin is dropped and the executor
creates the first child again, for any worker that can run the group.

A worker is lost when a child's lease expires (worker killed or cut off), when it shuts down
while running a child (WORKER_SHUTDOWN), or when a child waits on the queue for a worker that is
STOPPED or silent past ``worker_dead_after_seconds`` (found by the reaper, see
:func:`recover_stranded`). After ``max_restarts`` restarts the lost child fails with a message
naming the WorkingDirectory, the worker and the count, and the WorkingDirectory fails (its
``errors`` run) instead of looping forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlplane.engine.flowables import working_directory as wd_rules
from controlplane.model import State, TaskRun, change_state
from controlplane.store import repository as repo
from controlplane.store import working_directories as store

if TYPE_CHECKING:
    from controlplane.engine.executor import Executor
    from controlplane.engine.unit import Unit


def whole_groups(failed: list[TaskRun], by_id: dict[str, TaskRun]) -> list[TaskRun]:
    """For an execution restart: each failed child of a WorkingDirectory is replaced by its
    WorkingDirectory (which then starts again from scratch, in a fresh directory: the old one is
    gone), once; other task runs are kept, in order."""
    out: dict[str, TaskRun] = {}
    for tr in failed:
        parent = by_id.get(tr.parent_id) if tr.parent_id is not None else None
        target = parent if wd_rules.is_group_child(parent, tr.branch) else tr
        assert target is not None
        out.setdefault(target.id, target)
    return list(out.values())


async def restart(executor: Executor, unit: Unit, execution_id: str, group_id: str, why: str,
                  max_restarts: int) -> str | None:
    """Start the group again from its first child (caller holds the execution lock).

    Args:
        why: What happened, e.g. ``worker w1 lost (LEASE_EXPIRED) while running task 'second'``.
        max_restarts: Most restarts of one group.

    Returns:
        None when the group was restarted (and the execution advanced); otherwise the error to
        fail the lost child with (the group was not touched).
    """
    conn = unit.conn
    done = await store.restarts_of(conn, group_id)
    wd = await repo.lock_task_run(conn, group_id)
    name = wd.task_id if wd is not None else group_id
    if done >= max_restarts:
        return (f"WorkingDirectory '{name}': {why}; its working directory was on that worker, and the "
                f"WorkingDirectory already started again {done} time(s) (the limit), so it fails")
    count = await store.reset(conn, group_id)
    await repo.append_logs(conn, [{
        "execution_id": execution_id, "task_run_id": group_id, "task_id": name, "attempt": 0, "level": "WARN",
        "message": (f"{why}; its working directory was on that worker, so the WorkingDirectory starts again "
                    f"from its first task on another worker (restart {count} of at most {max_restarts})"),
        "timestamp": repo.utcnow()}])
    unit.executions.add(execution_id)
    await executor.advance_safely(unit, execution_id)
    return None


async def recover_stranded(executor: Executor, unit: Unit, stranded: store.Stranded, max_restarts: int) -> None:
    """A child waits on the queue for a pinned worker that is gone: restart its group, or, past
    ``max_restarts``, fail the child (and so the WorkingDirectory) with the reason."""
    conn = unit.conn
    execution = await repo.lock_execution(conn, stranded.execution_id)
    if execution is None or execution.state.is_terminal:
        return
    tr = await repo.lock_task_run(conn, stranded.task_run_id)
    if tr is None or tr.state.is_terminal:
        return
    why = f"worker {stranded.worker_id} is gone (stopped or silent) while task '{tr.task_id}' waited for it"
    error = await restart(executor, unit, execution.id, stranded.group_id, why, max_restarts)
    if error is None:
        return
    now = repo.utcnow()
    await store.dequeue(conn, tr.id)
    tr.error = error
    tr.ended_at = now
    change_state(tr, State.FAILED, now, f"task run {tr.id} ({tr.task_id})")
    await repo.save_task_run_state(conn, tr)
    await repo.append_logs(conn, [{
        "execution_id": tr.execution_id, "task_run_id": tr.id, "task_id": tr.task_id, "attempt": tr.attempt,
        "level": "ERROR", "message": error, "timestamp": now}])
    unit.executions.add(execution.id)
    await executor.advance_safely(unit, execution.id)
