"""Running a list of tasks one after another, with ``errors`` and ``finally`` branches.

Used by the flow itself and by Sequential (Kestra's ``FlowableUtils.resolveSequentialNexts`` and
``resolveState``): the next task starts when the previous one ends; a FAILED or KILLED task stops
the list; then the ``errors`` tasks run in order (a failing error task stops them), then the
``finally`` tasks run in order whatever happened. The state is computed from the main tasks
(KILLED > FAILED > WARNING > PAUSED > SUCCESS, SKIPPED counts as success); error tasks do not
change it; a failing ``finally`` task makes it FAILED.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.engine.plan import NewTaskRun, Step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task
from controlplane.model.state import final_state


def _run_in_order(
    view: ExecutionView, parent_id: str | None, branch: str, tasks: Sequence[Task]
) -> tuple[NewTaskRun | None, bool, list[State]]:
    """Advance one list: (task run to create or None, whether the list is finished, states).

    A FAILED or KILLED task finishes the list early.
    """
    states: list[State] = []
    for task in tasks:
        if task.disabled:
            continue
        tr = view.child(parent_id, branch, task.id)
        if tr is None:
            return NewTaskRun(task, parent_id, branch), False, states
        if not tr.state.is_terminal:
            return None, False, states
        states.append(tr.state)
        if tr.state.is_failed:
            return None, True, states
    return None, True, states


def sequence_step(
    view: ExecutionView,
    parent_id: str | None,
    tasks: Sequence[Task],
    errors: Sequence[Task] = (),
    finally_: Sequence[Task] = (),
    *,
    killed: bool = False,
) -> Step:
    """Decide the next step of a sequential list under ``parent_id`` (None = the flow).

    Args:
        view: The execution's task runs.
        parent_id: Task run id of the owning flowable, None for the flow's own lists.
        tasks / errors / finally_: The three lists of the owner.
        killed: The execution is being killed: nothing new starts, not even error handlers.

    Returns:
        A :class:`Step` with at most one task run to create, or ``done`` with the final state.
    """
    if killed:
        # Work already started ends on its own (workers are told to stop); nothing new starts.
        if any(not tr.state.is_terminal for tr in view.children(parent_id)):
            return Step()
        return Step(done=State.KILLED)
    new, finished, states = _run_in_order(view, parent_id, "tasks", tasks)
    if new is not None:
        return Step(create=[new])
    if not finished:
        return Step()
    main_state = final_state(states)
    if main_state in (State.FAILED, State.KILLED) and errors:
        new, finished, _ = _run_in_order(view, parent_id, "errors", errors)
        if new is not None:
            return Step(create=[new])
        if not finished:
            return Step()
    if finally_:
        new, finished, finally_states = _run_in_order_all(view, parent_id, finally_)
        if new is not None:
            return Step(create=[new])
        if not finished:
            return Step()
        if any(s.is_failed for s in finally_states) and main_state is not State.KILLED:
            main_state = State.FAILED
    return Step(done=main_state)


def _run_in_order_all(
    view: ExecutionView, parent_id: str | None, tasks: Sequence[Task]
) -> tuple[NewTaskRun | None, bool, list[State]]:
    """Like :func:`_run_in_order` for ``finally``: a failure does not stop the next task."""
    states: list[State] = []
    for task in tasks:
        if task.disabled:
            continue
        tr = view.child(parent_id, "finally", task.id)
        if tr is None:
            return NewTaskRun(task, parent_id, "finally"), False, states
        if not tr.state.is_terminal:
            return None, False, states
        states.append(tr.state)
    return None, True, states
