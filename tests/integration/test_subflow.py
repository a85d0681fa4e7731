"""Subflow end to end through the gRPC API with a real worker: the child execution's inputs,
labels, trigger and parent link, outputs read by the parent, ``wait``, ``transmitFailed``,
``allowFailure``, a missing flow, killing the parent, and the registration-time checks."""

from __future__ import annotations

import json

import grpc
import pytest

from kestrel.v1 import execution_pb2, flow_pb2
from tests.integration.harness import wait_until, worker_process
from tests.integration.rpc import connect, state_name, wait_state


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    with worker_process(server.address, "--module", "tests.integration.tasks.slow", concurrency=8):
        wait_until(lambda: _deploys(s, _PROBE), timeout=30, what="the worker's custom task types")
        s.deploy(CHILD)
        s.deploy(FAILING)
        s.deploy(SLOW)
        yield s
    s.close()


_PROBE = """
id: probe
namespace: tests.subflow
tasks:
  - {id: nap, type: io.kestrel.tests.Sleep, seconds: 0}
"""

CHILD = """
id: child
namespace: tests.subflow
labels:
  childFlowLabel: childFoo
inputs:
  - id: name
    type: STRING
  - id: times
    type: INT
    defaults: 1
tasks:
  - id: hello
    type: io.kestra.plugin.core.debug.Return
    format: "hello {{ inputs.name }} x{{ inputs.times }} ({{ labels.system.correlationId }})"
outputs:
  - id: greeting
    type: STRING
    value: "{{ outputs.hello.value }}"
"""

FAILING = """
id: failing
namespace: tests.subflow
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
    errorMessage: child failed
"""

SLOW = """
id: slow
namespace: tests.subflow
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: 30
"""

WAITS_ON_SLOW = """
id: waits-on-slow
namespace: tests.subflow
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: slow
"""


def _deploys(stubs, source: str) -> bool:
    try:
        stubs.deploy(source)
    except grpc.RpcError:
        return False
    return True


def _state(msg) -> str:
    return state_name(msg.state.current)


def _run(execution, task_id: str):
    return next(tr for tr in execution.task_runs if tr.task_id == task_id)


def _children(stubs, namespace: str, flow_id: str) -> list[execution_pb2.Execution]:
    req = execution_pb2.ListExecutionsRequest(namespace=namespace, flow_id=flow_id, page_size=100)
    return list(stubs.executions.ListExecutions(req, timeout=10).executions)


def test_subflow_passes_inputs_and_labels_and_reads_the_child_outputs(stubs):
    stubs.deploy("""
id: parent
namespace: tests.subflow
labels:
  parentFlowLabel: parentFoo
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: child
    inputs:
      name: "{{ flow.id }}"
      times: 3
    inheritLabels: true
    labels:
      taskLabel: "{{ flow.id }}-label"
  - id: use
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.sub.outputs.greeting }}|{{ outputs.sub.state }}|{{ outputs.sub.executionId }}"
""")
    ex = stubs.start("tests.subflow", "parent", labels=[])
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS", final
    sub = _run(final, "sub")
    outputs = json.loads(sub.outputs_json)
    child_id = outputs["executionId"]
    assert outputs["state"] == "SUCCESS"
    assert outputs["outputs"] == {"greeting": f"hello parent x3 ({ex.id})"}
    assert json.loads(_run(final, "use").outputs_json) == {"value": f"hello parent x3 ({ex.id})|SUCCESS|{child_id}"}
    assert len(sub.attempts) == 1 and sub.attempts[0].worker_id == ""  # one child, no worker

    child = stubs.get(child_id)
    assert (child.namespace, child.flow_id, _state(child)) == ("tests.subflow", "child", "SUCCESS")
    assert json.loads(child.inputs_json) == {"name": "parent", "times": 3}
    labels = {label.key: label.value for label in child.labels}
    assert labels == {
        "system.correlationId": ex.id,
        "parentFlowLabel": "parentFoo",
        "taskLabel": "parent-label",
        "childFlowLabel": "childFoo",
    }
    assert (child.caller_execution_id, child.caller_task_run_id) == (ex.id, sub.id)
    trigger = json.loads(child.trigger_json)
    assert trigger["type"] == "io.kestra.plugin.core.flow.Subflow"
    assert trigger["variables"]["executionId"] == ex.id and trigger["variables"]["flowId"] == "parent"


def test_legacy_outputs_map_is_rendered_in_the_child_context(stubs):
    stubs.deploy("""
id: legacy-child
namespace: tests.subflow
tasks:
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: from child
""")
    stubs.deploy("""
id: legacy-parent
namespace: tests.subflow
tasks:
  - id: launch
    type: io.kestra.core.tasks.flows.Flow
    namespace: tests.subflow
    flowId: legacy-child
    outputs:
      extracted: "{{ outputs.ret.value }} > {{ flow.id }}"
""")
    final = stubs.wait(stubs.start("tests.subflow", "legacy-parent").id)
    assert _state(final) == "SUCCESS"
    assert json.loads(_run(final, "launch").outputs_json)["outputs"] == {"extracted": "from child > legacy-child"}


@pytest.mark.parametrize(
    ("extra", "parent_state", "task_state"),
    [
        ("", "FAILED", "FAILED"),
        ("transmitFailed: false", "SUCCESS", "SUCCESS"),
        ("allowFailure: true", "WARNING", "WARNING"),
    ],
)
def test_a_failed_child_and_transmit_failed(stubs, extra, parent_state, task_state):
    flow_id = "fails-" + (extra.split(":")[0].lower() or "default")
    stubs.deploy(f"""
id: {flow_id}
namespace: tests.subflow
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: failing
    {extra}
""")
    final = stubs.wait(stubs.start("tests.subflow", flow_id).id)
    assert _state(final) == parent_state
    sub = _run(final, "sub")
    assert _state(sub) == task_state
    assert json.loads(sub.outputs_json)["state"] == "FAILED"
    assert _state(stubs.get(json.loads(sub.outputs_json)["executionId"])) == "FAILED"


def test_wait_false_continues_at_once(stubs):
    stubs.deploy("""
id: fire-and-forget
namespace: tests.subflow
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: slow
    wait: false
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: "started {{ outputs.sub.executionId }}"
""")
    final = stubs.wait(stubs.start("tests.subflow", "fire-and-forget").id, timeout=20)
    assert _state(final) == "SUCCESS"
    child_id = json.loads(_run(final, "sub").outputs_json)["executionId"]
    assert _state(stubs.get(child_id)) in ("CREATED", "RUNNING")  # still sleeping
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=child_id), timeout=10)


def test_a_missing_flow_fails_the_task_run_with_a_clear_error(stubs):
    stubs.deploy("""
id: missing
namespace: tests.subflow
inputs:
  - id: target
    type: STRING
    defaults: does-not-exist
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: "{{ inputs.target }}"
""")
    final = stubs.wait(stubs.start("tests.subflow", "missing").id)
    assert _state(final) == "FAILED"
    assert "Unable to find flow tests.subflow.does-not-exist" in _run(final, "sub").error


def test_bad_child_inputs_fail_the_task_run(stubs):
    stubs.deploy("""
id: bad-inputs
namespace: tests.subflow
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: child
    inputs:
      times: not-a-number
""")
    final = stubs.wait(stubs.start("tests.subflow", "bad-inputs").id)
    assert _state(final) == "FAILED"
    error = _run(final, "sub").error
    assert "cannot start subflow tests.subflow.child" in error and "name" in error and "times" in error


def test_killing_the_parent_kills_the_child(stubs):
    stubs.deploy(WAITS_ON_SLOW)
    ex = stubs.start("tests.subflow", "waits-on-slow")
    running = wait_until(lambda: _child_running(stubs, ex.id), timeout=20, what="the child running its task")
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
    final = stubs.wait(ex.id, timeout=20)
    assert _state(final) == "KILLED"
    child = stubs.wait(running, timeout=20)
    assert _state(child) == "KILLED"
    assert [state_name(tr.state.current) for tr in child.task_runs] == ["KILLED"]


def _child_running(stubs, parent_id: str) -> str | None:
    parent = stubs.get(parent_id)
    if not parent.task_runs or not parent.task_runs[0].outputs_json:
        return None
    child_id = json.loads(parent.task_runs[0].outputs_json)["executionId"]
    child = wait_state(stubs, child_id, {"RUNNING", "CREATED"})
    runs = child.task_runs
    return child_id if runs and state_name(runs[0].state.current) == "RUNNING" and runs[0].attempts else None


@pytest.mark.parametrize(
    ("props", "needle"),
    [
        ("namespace: tests.subflow", "property 'flowId' is required"),
        ("flowId: child", "property 'namespace' is required"),
        ("namespace: tests.subflow\n    flowId: child\n    revision: 0", "'revision' must be an integer >= 1"),
        ("namespace: tests.subflow\n    flowId: child\n    wait: maybe", "'wait' must be true or false"),
    ],
)
def test_bad_subflow_properties_are_refused_at_registration(stubs, props, needle):
    source = f"""
id: bad-subflow
namespace: tests.subflow
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    {props}
"""
    with pytest.raises(grpc.RpcError) as err:
        stubs.deploy(source)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task 'sub'" in err.value.details() and needle in err.value.details()


def test_a_retry_policy_retries_a_failed_child_as_new_executions(stubs):
    source = """
id: retried
namespace: tests.subflow
retry:
  type: constant
  interval: PT0.2S
  maxAttempt: 3
tasks:
  - id: sub
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: failing
"""
    resp = stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=source), timeout=10)
    assert not [w.message for w in resp.warnings if "retry" in w.path]  # applied: no "not applied" warning
    final = stubs.wait(stubs.start("tests.subflow", "retried").id)
    assert _state(final) == "FAILED" and len(final.task_runs) == 1
    sub = final.task_runs[0]
    assert [state_name(a.state.current) for a in sub.attempts] == ["FAILED", "FAILED", "FAILED"]
    children = [e for e in _children(stubs, "tests.subflow", "failing") if e.caller_task_run_id == sub.id]
    assert len(children) == 3 and all(_state(c) == "FAILED" for c in children)


def test_a_flow_calling_itself_stops_at_the_depth_limit(stubs):
    stubs.deploy("""
id: recursive
namespace: tests.subflow
tasks:
  - id: again
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow
    flowId: "{{ flow.id }}"
""")
    top = stubs.wait(stubs.start("tests.subflow", "recursive").id, timeout=120)
    assert _state(top) == "FAILED"
    chain = _children(stubs, "tests.subflow", "recursive")
    assert len(chain) == 51  # the top execution and 50 nested ones
    deepest = [e for e in chain if not json.loads(stubs.get(e.id).task_runs[0].outputs_json or "{}")]
    assert len(deepest) == 1
    assert "nest deeper than 50" in stubs.get(deepest[0].id).task_runs[0].error


def test_the_start_answer_lists_the_attempt_of_a_subflow_started_with_the_execution(stubs):
    """StartExecution answers with the execution as its first advance left it, the attempt of a
    Subflow that advance started (no worker makes it) included, as GetExecution lists it."""
    stubs.deploy(WAITS_ON_SLOW)
    ex = stubs.start("tests.subflow", "waits-on-slow")
    try:
        for execution in (ex, stubs.get(ex.id)):
            assert [state_name(a.state.current) for a in _run(execution, "sub").attempts] == ["RUNNING"], execution
    finally:
        stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
