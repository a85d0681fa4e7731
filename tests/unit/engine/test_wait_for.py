"""WaitFor: checkFrequency defaults and checks, the exit condition, the maximums."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane.engine.flowables import wait_for
from controlplane.engine.plan import FlowableError
from controlplane.model import State, TaskRun
from tests.unit.engine.sim import NOW, flow_of


def _task(extra: str = ""):
    return flow_of(f"""
        id: w
        namespace: tests
        tasks:
          - id: wait
            type: io.kestra.plugin.core.flow.WaitFor
            condition: "{{{{ true }}}}"
            {extra}
            tasks:
              - {{id: a, type: io.kestra.plugin.core.log.Log, message: a}}
    """).tasks[0]


def test_defaults():
    prepared = wait_for.prepare(_task(), lambda value, _prop: value)
    assert prepared.properties == {"maxIterations": 100, "maxDurationSeconds": 3600.0, "intervalSeconds": 1.0,
                                   "failOnMaxReached": False}
    assert prepared.outputs == {"iterationCount": 1}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("checkFrequency: {maxIterations: 0}", "maxIterations' must be an integer >= 1"),
        ("checkFrequency: {interval: soon}", "checkFrequency.interval"),
        ("checkFrequency: 5", "'checkFrequency' must be a map"),
    ],
)
def test_bad_check_frequency(extra, needle):
    with pytest.raises(FlowableError, match=needle):
        wait_for.prepare(_task(extra), lambda value, _prop: value)


def _run(round_: int, **props) -> TaskRun:
    base = {"maxIterations": 3, "maxDurationSeconds": 60.0, "intervalSeconds": 0.5, "failOnMaxReached": True}
    return TaskRun(id="w", execution_id="ex", task_id="wait", task_type=wait_for.TYPE, state=State.RUNNING,
                   outputs={"iterationCount": round_}, properties={**base, **props}, created_at=NOW)


def test_a_true_condition_exits_successfully():
    assert wait_for.after_round(_run(1), "true", NOW).result == "SUCCESS"


def test_a_false_condition_schedules_the_next_round_after_the_interval():
    decision = wait_for.after_round(_run(1), False, NOW)
    assert decision.result is None and decision.next_round_at == NOW + timedelta(seconds=0.5)


@pytest.mark.parametrize(("fail", "expected"), [(True, "FAILED"), (False, "SUCCESS")])
def test_max_iterations_and_max_duration(fail, expected):
    assert wait_for.after_round(_run(3, failOnMaxReached=fail), "0", NOW).result == expected
    late = NOW + timedelta(seconds=61)
    decision = wait_for.after_round(_run(1, failOnMaxReached=fail), "", late)
    assert decision.result == expected and decision.reason == "Max duration reached"
