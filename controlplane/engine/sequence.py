"""Running a flowable's child lists: the main tasks, then ``errors``, then ``finally``.

Every flowable (and the flow itself) follows the same outline, Kestra's
``FlowableUtils.resolveSequentialNexts`` / ``resolveParallelNexts`` / ``resolveState`` with
``Execution.findTaskDependingFlowState``:

1. The main tasks start as the flowable's own strategy allows (one after another, all at once,
   per loop value, by DAG dependencies…); a strategy describes where it stands as a
   :class:`Progress`.
2. Once a main child ends FAILED or KILLED (and will not be retried), nothing new starts in the
   main tasks and the ``errors`` tasks run in order (a failing error task stops them). Like
   Kestra, they start at once, even while other main children (Parallel siblings) still run.
3. When every main child is terminal (and the errors are done), the ``finally`` tasks run in
   order whatever happened; a failing ``finally`` task does not stop the next one.
4. The state comes from the main children: KILLED > FAILED > WARNING > PAUSED > SUCCESS,
   SKIPPED counting as success (Kestra's ``guessFinalState``); error tasks do not change it; a
   failing ``finally`` task makes it FAILED. Disabled tasks never run; all disabled -> SUCCESS.

Unlike Kestra, a flowable only ends once every child it created is terminal (Kestra can end a
Parallel whose error branch finished while a sibling still runs, leaving an orphan).

When the execution is being killed nothing new starts (not even error handlers) and the
flowable ends KILLED once its children are terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from controlplane.engine.plan import NewTaskRun, Step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task, TaskRun
from controlplane.model.state import final_state


@dataclass
class Progress:
    """Where a flowable's main child tasks stand.

    Attributes:
        runs: Main child task runs created so far (their states make the flowable's state).
        ready: Task runs the strategy would start now; ignored once a main child failed.
        exhausted: Every main task run the strategy will ever create exists.
    """

    runs: list[TaskRun] = field(default_factory=list)
    ready: list[NewTaskRun] = field(default_factory=list)
    exhausted: bool = True

    @property
    def failed(self) -> bool:
        """A main child ended FAILED or KILLED: the main tasks stop and ``errors`` run."""
        return any(tr.state.is_failed for tr in self.runs)

    @property
    def finished(self) -> bool:
        """Nothing runs and nothing more will start in the main tasks."""
        return (self.exhausted or self.failed) and all(tr.state.is_terminal for tr in self.runs)


def sequential_progress(
    view: ExecutionView,
    parent_id: str | None,
    branch: str,
    tasks: Sequence[Task],
    value: str | None = None,
    iteration: int = 0,
) -> Progress:
    """One list run in order: the next task starts when the previous one ended without failing.

    Args:
        view: The execution's task runs.
        parent_id: Task run id of the owning flowable, None for the flow's own lists.
        branch: Child-list key the tasks belong to (``tasks``, ``then``, ``cases.A``…).
        tasks: The list, in order; disabled tasks are skipped.
        value: Loop value the task runs carry (one group of a loop), None outside loops.
        iteration: WaitFor round the task runs belong to, 0 elsewhere.
    """
    runs: list[TaskRun] = []
    for task in tasks:
        if task.disabled:
            continue
        tr = view.child(parent_id, branch, task.id, value, iteration)
        if tr is None:
            return Progress(runs, [NewTaskRun(task, parent_id, branch, value, iteration)], exhausted=False)
        runs.append(tr)
        if not tr.state.is_terminal or tr.state.is_failed:
            return Progress(runs, [], exhausted=False)
    return Progress(runs, [], exhausted=True)


def concurrent_progress(
    view: ExecutionView,
    parent_id: str,
    items: Sequence[tuple[Task, str | None]],
    concurrent: int = 0,
    *,
    branch: str = "tasks",
) -> Progress:
    """Items started together, at most ``concurrent`` running at once (0 = no limit).

    Args:
        items: ``(task, loop value)`` pairs in start order; disabled tasks are skipped.
        concurrent: Maximum number of non-terminal children; 0 for unlimited.
    """
    runs: list[TaskRun] = []
    missing: list[NewTaskRun] = []
    for task, value in items:
        if task.disabled:
            continue
        tr = view.child(parent_id, branch, task.id, value)
        if tr is None:
            missing.append(NewTaskRun(task, parent_id, branch, value))
        else:
            runs.append(tr)
    running = sum(1 for tr in runs if not tr.state.is_terminal)
    ready = missing if concurrent <= 0 else missing[: max(concurrent - running, 0)]
    return Progress(runs, ready, exhausted=not missing)


def killed_step(view: ExecutionView, parent_id: str | None) -> Step:
    """The execution is being killed: start nothing, end KILLED once the children are terminal."""
    if any(not tr.state.is_terminal for tr in view.children(parent_id)):
        return Step()
    return Step(done=State.KILLED)


def group_step(
    view: ExecutionView,
    parent_id: str | None,
    progress: Progress,
    errors: Sequence[Task] = (),
    finally_: Sequence[Task] = (),
    *,
    killed: bool = False,
) -> Step:
    """Decide the next step of a flowable from its main tasks' :class:`Progress`.

    Args:
        view: The execution's task runs.
        parent_id: Task run id of the flowable, None for the flow.
        progress: Where the main tasks stand (from the flowable's strategy).
        errors / finally_: The flowable's handlers.
        killed: The execution is being killed.

    Returns:
        The task runs to create now, or ``done`` with the final state, or an empty step (wait).
    """
    if killed:
        return killed_step(view, parent_id)
    failed = progress.failed
    if not failed and progress.ready:
        return Step(create=list(progress.ready))
    if failed and errors:
        new, finished, _ = _run_in_order(view, parent_id, "errors", errors, stop_on_failure=True)
        if new is not None:
            return Step(create=[new])
        if not finished:
            return Step()
    if not progress.finished:
        return Step()
    state = final_state([tr.state for tr in progress.runs])
    if finally_:
        new, finished, finally_states = _run_in_order(view, parent_id, "finally", finally_, stop_on_failure=False)
        if new is not None:
            return Step(create=[new])
        if not finished:
            return Step()
        if any(s.is_failed for s in finally_states) and state is not State.KILLED:
            state = State.FAILED
    return Step(done=state)


def sequence_step(
    view: ExecutionView,
    parent_id: str | None,
    tasks: Sequence[Task],
    errors: Sequence[Task] = (),
    finally_: Sequence[Task] = (),
    *,
    killed: bool = False,
    branch: str = "tasks",
) -> Step:
    """Decide the next step of a sequential list under ``parent_id`` (None = the flow).

    Args:
        view: The execution's task runs.
        parent_id: Task run id of the owning flowable, None for the flow's own lists.
        tasks / errors / finally_: The three lists of the owner.
        killed: The execution is being killed: nothing new starts, not even error handlers.
        branch: Child-list key of ``tasks`` (``then``/``else`` for If, ``cases.<k>`` for Switch).

    Returns:
        A :class:`Step` with at most one task run to create, or ``done`` with the final state.
    """
    progress = sequential_progress(view, parent_id, branch, tasks)
    return group_step(view, parent_id, progress, errors, finally_, killed=killed)


def _run_in_order(
    view: ExecutionView, parent_id: str | None, branch: str, tasks: Sequence[Task], *, stop_on_failure: bool
) -> tuple[NewTaskRun | None, bool, list[State]]:
    """Advance a handler list: (task run to create or None, whether it is finished, states).

    With ``stop_on_failure`` (``errors``) a FAILED or KILLED task finishes the list early;
    ``finally`` tasks all run.
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
        if stop_on_failure and tr.state.is_failed:
            return None, True, states
    return None, True, states
