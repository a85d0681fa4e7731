"""WaitFor end to end through the gRPC API with a real worker: rounds until the exit condition,
maxIterations with and without failOnMaxReached, maxDuration, a failing child, kill."""

from __future__ import annotations

import json

import pytest

from kestrel.v1 import execution_pb2
from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name, wait_state


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    with worker_process(server.address, concurrency=4):
        yield s
    s.close()


def _state(msg) -> str:
    return state_name(msg.state.current)


def _flow(flow_id: str, condition: str, extra: str = "", children: str = "") -> str:
    return f"""
id: {flow_id}
namespace: tests.waitfor
tasks:
  - id: waitfor
    type: io.kestra.plugin.core.flow.WaitFor
    condition: "{condition}"
    {extra}
    tasks:
      - id: count
        type: io.kestra.plugin.core.output.OutputValues
        values:
          n: "{{{{ outputs.waitfor.iterationCount }}}}"
{children}
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ outputs.count.values.n }}}}/{{{{ outputs.waitfor.iterationCount }}}}"
"""


def test_rounds_run_until_the_exit_condition_is_true(stubs):
    stubs.deploy(_flow("until-three", "{{ (outputs.count.values.n ~ '') == '3' }}",
                       "checkFrequency:\n      interval: PT0.1S"))
    final = stubs.wait(stubs.start("tests.waitfor", "until-three").id)
    assert _state(final) == "SUCCESS"
    rounds = [tr for tr in final.task_runs if tr.task_id == "count"]
    assert [str(json.loads(tr.outputs_json)["values"]["n"]) for tr in rounds] == ["1", "2", "3"]
    assert all(tr.parent_task_run_id == final.task_runs[0].id for tr in rounds)
    after = next(tr for tr in final.task_runs if tr.task_id == "after")
    assert json.loads(after.outputs_json) == {"value": "3/3"}  # the latest round's outputs


@pytest.mark.parametrize(("fail", "expected"), [("true", "FAILED"), ("false", "SUCCESS")])
def test_max_iterations(stubs, fail, expected):
    flow_id = f"max-iterations-{fail}"
    stubs.deploy(_flow(flow_id, "{{ (outputs.count.values.n ~ '') == '10' }}",
                       f"failOnMaxReached: {fail}\n    checkFrequency:\n      maxIterations: 3\n      interval: PT0.1S"))
    final = stubs.wait(stubs.start("tests.waitfor", flow_id).id)
    assert _state(final) == expected
    assert len([tr for tr in final.task_runs if tr.task_id == "count"]) == 3


def test_max_duration_fails_with_fail_on_max_reached(stubs):
    stubs.deploy(_flow("max-duration", "{{ false }}",
                       "failOnMaxReached: true\n    checkFrequency:\n      maxDuration: PT1S\n      interval: PT0.3S"))
    final = stubs.wait(stubs.start("tests.waitfor", "max-duration").id)
    assert _state(final) == "FAILED"
    assert 2 <= len([tr for tr in final.task_runs if tr.task_id == "count"]) <= 6


def test_a_failing_child_fails_the_loop_at_once(stubs):
    stubs.deploy(_flow("failing-child", "{{ false }}", "checkFrequency:\n      interval: PT0.1S",
                       "      - id: boom\n        type: io.kestra.plugin.core.execution.Fail\n"))
    final = stubs.wait(stubs.start("tests.waitfor", "failing-child").id)
    assert _state(final) == "FAILED"
    assert [tr.task_id for tr in final.task_runs] == ["waitfor", "count", "boom"]


def test_killing_between_rounds(stubs):
    stubs.deploy(_flow("long-wait", "{{ false }}", "checkFrequency:\n      interval: PT1H"))
    ex = stubs.start("tests.waitfor", "long-wait")
    wait_state(stubs, ex.id, {"RUNNING"})
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
        tr.task_id == "count" and state_name(tr.state.current) == "SUCCESS" for tr in stubs.get(ex.id).task_runs
    ):
        time.sleep(0.1)
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
    final = stubs.wait(ex.id, timeout=20)
    assert _state(final) == "KILLED"
    assert state_name(final.task_runs[0].state.current) == "KILLED"
