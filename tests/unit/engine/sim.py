"""An in-memory stand-in for the executor and a worker, to test the pure decision logic.

:class:`Sim` applies flowable ``prepare``/``step`` decisions the way ``Executor.advance`` and
``Executor._create_task_run`` do (same functions, same order, no database), and plays a worker
for the few runnable types the tests use: ``Return`` outputs ``{"value": <format>}``, ``Fail``
fails, anything else succeeds.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

from controlplane.engine.context import expression_context
from controlplane.engine.flowables import FLOWABLES
from controlplane.engine.plan import FlowableError, NewTaskRun, apply_allow_failure
from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.errors import ExpressionError
from controlplane.expressions import render
from controlplane.flows import parse_flow
from controlplane.model import Execution, Flow, State, TaskRun, change_state

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CORE = "io.kestra.plugin.core."


def flow_of(yaml: str) -> Flow:
    """Parse a flow written as an indented YAML string."""
    return parse_flow(textwrap.dedent(yaml).lstrip("\n"))


class Sim:
    """One execution of ``flow``, advanced by hand.

    Attributes:
        view: The execution's task runs, as the decision logic sees them.
        done: The execution's final state once the flow's own list is done, else None.
        errors: Task run id -> error of task runs that failed to start.
    """

    def __init__(self, flow: Flow | str, inputs: dict[str, Any] | None = None) -> None:
        self.flow = flow_of(flow) if isinstance(flow, str) else flow
        self.execution = Execution(
            id="ex", namespace=self.flow.namespace, flow_id=self.flow.id, flow_revision=1,
            state=State.RUNNING, inputs=dict(inputs or {}), created_at=NOW,
        )
        self.view = ExecutionView(self.flow, self.execution)
        self.tasks = {t.id: t for t in self.flow.walk()}
        self.killed = False
        self.done: State | None = None
        self.errors: dict[str, str] = {}

    # -- executor side ---------------------------------------------------------------------

    def advance(self) -> list[TaskRun]:
        """One ``Executor.advance``: decide until nothing changes; returns the task runs created."""
        created: list[TaskRun] = []
        while True:
            changed = False
            for tr in self.view.all:
                flowable = FLOWABLES.get(tr.task_type)
                if flowable is None or tr.state.is_terminal:
                    continue
                task = self.tasks[tr.task_id]
                step = flowable.step(self.view, task, tr, self.killed)
                for new in step.create:
                    created.append(self._create(new))
                    changed = True
                if step.pause:
                    change_state(tr, State.PAUSED, NOW)
                    changed = True
                if step.done is not None:
                    change_state(tr, apply_allow_failure(task, step.done), NOW)
                    changed = True
            root = sequence_step(self.view, None, self.flow.tasks, self.flow.errors, self.flow.finally_,
                                 killed=self.killed)
            for new in root.create:
                created.append(self._create(new))
                changed = True
            if not changed:
                self.done = root.done
                return created

    def _create(self, new: NewTaskRun) -> TaskRun:
        task = new.task
        tr = TaskRun(
            id=f"tr{len(self.view.all) + 1}", execution_id="ex", task_id=task.id, task_type=task.type,
            state=State.CREATED, parent_id=new.parent_id, value=new.value, branch=new.branch,
            seq=len(self.view.all) + 1, created_at=NOW,
        )
        ctx = expression_context(self.flow, self.execution, self.view, task, tr)
        flowable = FLOWABLES.get(task.type)
        try:
            if flowable is None:
                tr.properties = render(task.properties, ctx, where=f"task '{task.id}'")
            elif flowable.prepare is not None:
                prepared = flowable.prepare(task, lambda value, prop: render(value, ctx, where=prop))
                tr.properties, tr.outputs = prepared.properties, prepared.outputs
        except (ExpressionError, FlowableError) as exc:
            self.errors[tr.id] = str(exc)
            change_state(tr, apply_allow_failure(task, State.FAILED), NOW)
        if tr.state is State.CREATED and flowable is not None:
            change_state(tr, State.RUNNING, NOW)
        self.view.add(tr)
        return tr

    def kill(self) -> None:
        """``Executor.kill``: queued task runs end KILLED, running ones keep running until told."""
        self.killed = True
        for tr in self.queued():
            change_state(tr, State.KILLED, NOW)

    def resume(self, task_id: str, by_timer: bool = False) -> TaskRun:
        """Resume a PAUSED Pause task run (``Executor.resume``, or its timer with ``by_timer``)."""
        tr = self.run_of(task_id)
        change_state(tr, State.RUNNING, NOW)
        if by_timer:
            tr.properties = {**(tr.properties or {}), "resumedByTimer": True}
        return tr

    # -- worker side -----------------------------------------------------------------------

    def queued(self) -> list[TaskRun]:
        """Runnable task runs waiting for a worker, creation order."""
        return [tr for tr in self.view.all if tr.state is State.CREATED]

    def pick(self, task_id: str, value: str | None = None) -> TaskRun:
        """A worker takes the queued task run of ``task_id`` (RUNNING)."""
        tr = self.run_of(task_id, value)
        change_state(tr, State.RUNNING, NOW)
        return tr

    def finish(self, task_id: str, value: str | None = None, state: State | None = None) -> TaskRun:
        """A worker ends the unfinished task run of ``task_id`` (loop ``value``) as the fake
        task types would: ``state``, else Fail -> FAILED and anything else SUCCESS."""
        tr = next((tr for tr in self.runs(task_id) if tr.value == value and not tr.state.is_terminal), None)
        if tr is None:
            raise KeyError(f"no unfinished task run of {task_id} ({value})")
        return self.finish_run(tr, state)

    def finish_run(self, tr: TaskRun, state: State | None = None) -> TaskRun:
        """A worker ends ``tr`` (see :meth:`finish`)."""
        task_id = tr.task_id
        if tr.state is State.CREATED:
            change_state(tr, State.RUNNING, NOW)
        task = self.tasks[task_id]
        if state is None:
            state = State.FAILED if task.type == CORE + "execution.Fail" else State.SUCCESS
        if task.type == CORE + "debug.Return" and state is State.SUCCESS:
            tr.outputs = {"value": (tr.properties or {}).get("format")}
            self.view.invalidate()
        change_state(tr, apply_allow_failure(task, state), NOW)
        return tr

    def drive(self, rounds: int = 1000) -> State:
        """Advance, then let the worker finish every queued task run, until the flow is done."""
        for _ in range(rounds):
            self.advance()
            if self.done is not None:
                return self.done
            queued = self.queued()
            assert queued, "stuck: nothing queued and the flow is not done"
            for tr in queued:
                self.finish_run(tr)
        raise AssertionError("the flow did not end")

    # -- reading ---------------------------------------------------------------------------

    def run_of(self, task_id: str, value: str | None = None) -> TaskRun:
        """The (first) task run of ``task_id`` with loop ``value``."""
        for tr in self.view.all:
            if tr.task_id == task_id and tr.value == value:
                return tr
        raise KeyError((task_id, value))

    def runs(self, task_id: str | None = None) -> list[TaskRun]:
        """Task runs (of one task), creation order."""
        return [tr for tr in self.view.all if task_id is None or tr.task_id == task_id]

    def ids(self, runs: list[TaskRun] | None = None) -> list[str]:
        """``task_id`` or ``task_id[value]`` of each task run."""
        return [tr.task_id if tr.value is None else f"{tr.task_id}[{tr.value}]"
                for tr in (self.view.all if runs is None else runs)]

    def state_of(self, task_id: str, value: str | None = None) -> State:
        """The state of the task run of ``task_id`` with loop ``value``."""
        return self.run_of(task_id, value).state
