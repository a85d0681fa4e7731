"""Pause end to end through the gRPC API with a real worker: manual resume (ResumeExecution with
``onResume`` inputs), automatic resume after ``delay``/``pauseDuration`` with each ``behavior``,
``timeout``, kill while paused, and the registration-time checks."""

from __future__ import annotations

import json
from datetime import timedelta

import grpc
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


def _history(msg) -> list[str]:
    return [state_name(h.state) for h in msg.state.histories]


def _run(execution, task_id: str):
    return next(tr for tr in execution.task_runs if tr.task_id == task_id)


def _resume(stubs, execution_id: str, inputs: dict | None = None):
    req = execution_pb2.ResumeExecutionRequest(id=execution_id, inputs_json=json.dumps(inputs or {}))
    return stubs.executions.ResumeExecution(req, timeout=10).execution


def _error(call, request):
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value.code(), err.value.details()


APPROVAL = """
id: approval
namespace: tests.pause
tasks:
  - id: before
    type: io.kestra.plugin.core.log.Log
    message: before
  - id: wait
    type: io.kestra.core.tasks.flows.Pause
    onResume:
      - id: approved
        type: BOOLEAN
      - id: reason
        type: STRING
        defaults: no reason
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.wait.onResume.approved }}/{{ outputs.wait.onResume.reason }}"
"""


def test_pause_waits_for_a_manual_resume_with_validated_on_resume_inputs(stubs):
    stubs.deploy(APPROVAL)
    ex = stubs.start("tests.pause", "approval")
    paused = wait_state(stubs, ex.id, {"PAUSED"})
    assert [(tr.task_id, _state(tr)) for tr in paused.task_runs] == [("before", "SUCCESS"), ("wait", "PAUSED")]
    code, details = _error(stubs.executions.ResumeExecution,
                           execution_pb2.ResumeExecutionRequest(id=ex.id, inputs_json="{}"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "tests.pause.approval" in details and "'wait'" in details and "approved" in details
    code, details = _error(stubs.executions.ResumeExecution, execution_pb2.ResumeExecutionRequest(
        id=ex.id, inputs_json=json.dumps({"approved": "yes-ish"})))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "approved" in details
    code, details = _error(stubs.executions.ResumeExecution, execution_pb2.ResumeExecutionRequest(
        id=ex.id, inputs_json=json.dumps({"approved": True, "nope": 1})))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in details
    assert _state(stubs.get(ex.id)) == "PAUSED"  # refused resumes change nothing

    resumed = _resume(stubs, ex.id, {"approved": "true"})
    assert _state(resumed) in ("RUNNING", "SUCCESS")
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS"
    assert _history(final) == ["CREATED", "RUNNING", "PAUSED", "RUNNING", "SUCCESS"]
    wait = _run(final, "wait")
    assert _history(wait) == ["CREATED", "RUNNING", "PAUSED", "RUNNING", "SUCCESS"]
    assert json.loads(wait.outputs_json) == {"onResume": {"approved": True, "reason": "no reason"}}
    assert json.loads(_run(final, "after").outputs_json) == {"value": "true/no reason"}

    code, details = _error(stubs.executions.ResumeExecution, execution_pb2.ResumeExecutionRequest(id=ex.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "PAUSED" in details


def test_pause_with_children_runs_them_after_the_resume(stubs):
    stubs.deploy("""
id: with-children
namespace: tests.pause
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    tasks:
      - id: sub
        type: io.kestra.plugin.core.log.Log
        message: after the resume
  - id: last
    type: io.kestra.plugin.core.debug.Return
    format: "{{ task.id }}"
""")
    ex = stubs.start("tests.pause", "with-children")
    paused = wait_state(stubs, ex.id, {"PAUSED"})
    assert len(paused.task_runs) == 1
    _resume(stubs, ex.id)
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS"
    assert [tr.task_id for tr in final.task_runs] == ["pause", "sub", "last"]
    assert _run(final, "sub").parent_task_run_id == _run(final, "pause").id


def test_delay_resumes_by_itself_after_the_duration(stubs):
    stubs.deploy("""
id: delayed
namespace: tests.pause
inputs:
  - id: wait
    type: DURATION
    defaults: PT1S
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    delay: "{{ inputs.wait }}"
  - id: last
    type: io.kestra.plugin.core.log.Log
    message: done
""")
    ex = stubs.start("tests.pause", "delayed")
    assert _state(wait_state(stubs, ex.id, {"PAUSED"})) == "PAUSED"
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS"
    pause = _run(final, "pause")
    assert _history(pause) == ["CREATED", "RUNNING", "PAUSED", "RUNNING", "SUCCESS"]
    paused_at, resumed_at = pause.state.histories[2].date.ToDatetime(), pause.state.histories[3].date.ToDatetime()
    assert timedelta(seconds=1) <= resumed_at - paused_at < timedelta(seconds=10)


@pytest.mark.parametrize(
    ("behavior", "pause_state", "final_state", "task_runs"),
    [
        ("RESUME", "SUCCESS", "SUCCESS", 2),
        ("WARN", "WARNING", "WARNING", 2),
        ("FAIL", "FAILED", "FAILED", 1),
        ("CANCEL", "CANCELLED", "CANCELLED", 1),
    ],
)
def test_pause_duration_behaviors(stubs, behavior, pause_state, final_state, task_runs):
    flow_id = f"behavior-{behavior.lower()}"
    stubs.deploy(f"""
id: {flow_id}
namespace: tests.pause
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    pauseDuration: PT0.5S
    behavior: {behavior}
  - id: last
    type: io.kestra.plugin.core.log.Log
    message: after
""")
    final = stubs.wait(stubs.start("tests.pause", flow_id).id)
    assert _state(final) == final_state
    assert _state(_run(final, "pause")) == pause_state
    assert len(final.task_runs) == task_runs


def test_a_manual_resume_before_the_duration_succeeds_whatever_the_behavior(stubs):
    stubs.deploy("""
id: warn-manual
namespace: tests.pause
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    pauseDuration: PT1H
    behavior: WARN
""")
    ex = stubs.start("tests.pause", "warn-manual")
    wait_state(stubs, ex.id, {"PAUSED"})
    _resume(stubs, ex.id)
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS" and _state(_run(final, "pause")) == "SUCCESS"


def test_timeout_without_resume_fails_the_pause(stubs):
    stubs.deploy("""
id: timed-out
namespace: tests.pause
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    timeout: PT0.5S
    tasks:
      - id: never
        type: io.kestra.plugin.core.log.Log
        message: never
  - id: last
    type: io.kestra.plugin.core.log.Log
    message: never
errors:
  - id: handler
    type: io.kestra.plugin.core.log.Log
    message: "pause timed out"
""")
    final = stubs.wait(stubs.start("tests.pause", "timed-out").id)
    assert _state(final) == "FAILED"
    assert [tr.task_id for tr in final.task_runs] == ["pause", "handler"]
    assert _history(_run(final, "pause")) == ["CREATED", "RUNNING", "PAUSED", "RUNNING", "FAILED"]
    assert "timed out" in _run(final, "pause").error


def test_killing_a_paused_execution(stubs):
    stubs.deploy(APPROVAL)
    ex = stubs.start("tests.pause", "approval")
    wait_state(stubs, ex.id, {"PAUSED"})
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
    final = stubs.wait(ex.id)
    assert _state(final) == "KILLED"
    assert _state(_run(final, "wait")) == "KILLED"
    assert [tr.task_id for tr in final.task_runs] == ["before", "wait"]


def test_parallel_pauses_each_resume_after_their_delay(stubs):
    stubs.deploy("""
id: each-pause
namespace: tests.pause
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.EachParallel
    value: ["a", "b", "c"]
    tasks:
      - id: pause
        type: io.kestra.plugin.core.flow.Pause
        delay: PT0.5S
        tasks:
          - id: log
            type: io.kestra.plugin.core.log.Log
            message: hello
""")
    final = stubs.wait(stubs.start("tests.pause", "each-pause").id)
    assert _state(final) == "SUCCESS" and len(final.task_runs) == 7, final


@pytest.mark.parametrize(
    ("props", "needle"),
    [
        ("delay: 5 minutes", "property 'delay'"),
        ("pauseDuration: -PT1S", "property 'pauseDuration'"),
        ("behavior: SOMETIMES", "one of RESUME, WARN, FAIL, CANCEL"),
        ("onResume: [{id: x, type: NUMBERS}]", "onResume input 'x': invalid type"),
    ],
)
def test_bad_pause_properties_are_refused_at_registration(stubs, props, needle):
    source = f"""
id: bad-pause
namespace: tests.pause
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    {props}
"""
    with pytest.raises(grpc.RpcError) as err:
        stubs.deploy(source)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task 'pause'" in err.value.details() and needle in err.value.details()


def test_the_resume_task_resumes_another_paused_execution(stubs):
    stubs.deploy(APPROVAL)
    stubs.deploy("""
id: resumer
namespace: tests.pause
inputs:
  - id: target
    type: STRING
tasks:
  - id: resume
    type: io.kestra.plugin.core.execution.Resume
    executionId: "{{ inputs.target }}"
    inputs:
      approved: true
      reason: by a flow
""")
    paused = stubs.start("tests.pause", "approval")
    wait_state(stubs, paused.id, {"PAUSED"})
    resumer = stubs.wait(stubs.start("tests.pause", "resumer", inputs={"target": paused.id}).id)
    assert _state(resumer) == "SUCCESS" and len(resumer.task_runs) == 1
    final = stubs.wait(paused.id)
    assert _state(final) == "SUCCESS"
    assert json.loads(_run(final, "after").outputs_json) == {"value": "true/by a flow"}
    # Resuming an execution that is not paused fails the task run with the reason.
    again = stubs.wait(stubs.start("tests.pause", "resumer", inputs={"target": paused.id}).id)
    assert _state(again) == "FAILED"
    assert "cannot resume execution" in _run(again, "resume").error and "PAUSED" in _run(again, "resume").error
