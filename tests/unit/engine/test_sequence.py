"""The sequential decision logic (flow root and Sequential), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Execution, Flow, State, Task, TaskRun

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _flow(tasks, errors=(), finally_=()) -> Flow:
    return Flow(id="f", namespace="ns", tasks=tuple(tasks), errors=tuple(errors), finally_=tuple(finally_))


def _t(task_id: str, **kw) -> Task:
    return Task(id=task_id, type="io.kestra.plugin.core.log.Log", **kw)


def _view(flow: Flow, runs: list[tuple[str, str, State]]) -> ExecutionView:
    ex = Execution(id="e", namespace="ns", flow_id="f", flow_revision=1, state=State.RUNNING)
    ex.task_runs = [
        TaskRun(id=f"tr{i}", execution_id="e", task_id=task_id, task_type="x", state=state, branch=branch, seq=i)
        for i, (task_id, branch, state) in enumerate(runs, 1)
    ]
    return ExecutionView(flow, ex)


def _step(flow, runs, killed=False):
    return sequence_step(_view(flow, runs), None, flow.tasks, flow.errors, flow.finally_, killed=killed)


def test_creates_tasks_one_at_a_time_in_order():
    flow = _flow([_t("a"), _t("b")])
    assert [n.task.id for n in _step(flow, []).create] == ["a"]
    assert _step(flow, [("a", "tasks", State.RUNNING)]).create == []
    assert _step(flow, [("a", "tasks", State.RUNNING)]).done is None
    assert [n.task.id for n in _step(flow, [("a", "tasks", State.SUCCESS)]).create] == ["b"]
    assert _step(flow, [("a", "tasks", State.SUCCESS), ("b", "tasks", State.WARNING)]).done is State.WARNING


def test_disabled_tasks_are_skipped_and_all_disabled_is_success():
    flow = _flow([_t("a", disabled=True), _t("b")])
    assert [n.task.id for n in _step(flow, []).create] == ["b"]
    assert _step(_flow([_t("a", disabled=True)]), []).done is State.SUCCESS


def test_failure_stops_the_list_runs_errors_and_stays_failed():
    flow = _flow([_t("a"), _t("b")], errors=[_t("e1"), _t("e2")])
    step = _step(flow, [("a", "tasks", State.FAILED)])
    assert [(n.task.id, n.branch) for n in step.create] == [("e1", "errors")]
    step = _step(flow, [("a", "tasks", State.FAILED), ("e1", "errors", State.SUCCESS)])
    assert [n.task.id for n in step.create] == ["e2"]
    done = _step(flow, [("a", "tasks", State.FAILED), ("e1", "errors", State.SUCCESS), ("e2", "errors", State.SUCCESS)])
    assert done.done is State.FAILED and done.create == []


def test_failing_error_task_stops_the_error_branch():
    flow = _flow([_t("a")], errors=[_t("e1"), _t("e2")])
    assert _step(flow, [("a", "tasks", State.FAILED), ("e1", "errors", State.FAILED)]).done is State.FAILED


def test_finally_runs_whatever_happens_and_its_failure_fails():
    flow = _flow([_t("a")], finally_=[_t("f1"), _t("f2")])
    assert [n.branch for n in _step(flow, [("a", "tasks", State.SUCCESS)]).create] == ["finally"]
    runs = [("a", "tasks", State.SUCCESS), ("f1", "finally", State.FAILED)]
    assert [n.task.id for n in _step(flow, runs).create] == ["f2"]
    assert _step(flow, [*runs, ("f2", "finally", State.SUCCESS)]).done is State.FAILED


def test_kill_starts_nothing_and_waits_for_running_work():
    flow = _flow([_t("a"), _t("b")], errors=[_t("e")])
    assert _step(flow, [("a", "tasks", State.RUNNING)], killed=True).done is None
    step = _step(flow, [("a", "tasks", State.KILLED)], killed=True)
    assert step.create == [] and step.done is State.KILLED
