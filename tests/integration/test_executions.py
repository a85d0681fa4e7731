"""Flows and executions end to end through the gRPC API with a real worker process."""

from __future__ import annotations

import json

import grpc
import pytest

from kestrel.v1 import execution_pb2, flow_pb2
from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

HELLO = """
id: hello
namespace: tests.exec
description: greets
labels:
  team: data
inputs:
  - id: user
    type: STRING
    defaults: Kestrel
  - id: times
    type: INT
    defaults: 2
variables:
  greeting: Hello
tasks:
  - id: greet
    type: io.kestra.plugin.core.log.Log
    message: "{{ vars.greeting }}, {{ inputs.user }}! ({{ flow.id }}/{{ task.id }})"
  - id: ret
    type: io.kestra.core.tasks.debugs.Return
    format: "{{ inputs.times * 21 }}"
  - id: use-ret
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.ret.value }}-{{ outputs['ret'].value }}-{{ execution.id }}"
  - id: shell
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - echo 'line one'
      - echo '::{"outputs":{"rows":42}}::'
  - id: after-shell
    type: io.kestra.plugin.core.log.Log
    message: "rows={{ outputs.shell.vars.rows }}"
"""


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    with worker_process(server.address, concurrency=2):
        yield s
    s.close()


def _status(call, *args):
    with pytest.raises(grpc.RpcError) as err:
        call(*args, timeout=10)
    return err.value.code(), err.value.details()


def test_flow_runs_end_to_end_with_rendered_expressions_and_logs(stubs):
    flow = stubs.deploy(HELLO)
    assert (flow.namespace, flow.id, flow.revision) == ("tests.exec", "hello", 1)
    ex = stubs.start("tests.exec", "hello", inputs={"user": "Ada"})
    assert json.loads(ex.inputs_json) == {"user": "Ada", "times": 2}
    final = stubs.wait(ex.id)
    assert state_name(final.state.current) == "SUCCESS", final
    assert [state_name(h.state) for h in final.state.histories] == ["CREATED", "RUNNING", "SUCCESS"]
    runs = {tr.task_id: tr for tr in final.task_runs}
    assert list(runs) == ["greet", "ret", "use-ret", "shell", "after-shell"]
    assert json.loads(runs["ret"].outputs_json) == {"value": "42"}
    assert json.loads(runs["use-ret"].outputs_json) == {"value": f"42-42-{ex.id}"}
    assert json.loads(runs["shell"].outputs_json) == {"exitCode": 0, "vars": {"rows": 42}}
    for tr in final.task_runs:
        assert [state_name(h.state) for h in tr.state.histories] == ["CREATED", "RUNNING", "SUCCESS"]
        assert len(tr.attempts) == 1
    messages = [e.message for e in stubs.logs_stub_list(ex.id)]
    assert "Hello, Ada! (hello/greet)" in messages
    assert "line one" in messages
    assert "rows=42" in messages
    labels = {label.key: label.value for label in final.labels}
    assert labels["team"] == "data" and labels["system.correlationId"] == ex.id


def test_failing_task_fails_the_execution_and_stops_the_list(stubs):
    stubs.deploy("""
id: failing
namespace: tests.exec
tasks:
  - id: boom
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["echo about to fail", "exit 3"]
  - id: never
    type: io.kestra.plugin.core.log.Log
    message: unreachable
errors:
  - id: handler
    type: io.kestra.plugin.core.log.Log
    message: "handled"
""")
    final = stubs.wait(stubs.start("tests.exec", "failing").id)
    assert state_name(final.state.current) == "FAILED"
    assert [(tr.task_id, state_name(tr.state.current)) for tr in final.task_runs] == [
        ("boom", "FAILED"), ("handler", "SUCCESS")
    ]
    assert "exit code 3" in final.task_runs[0].error


def test_fail_task_and_allow_failure(stubs):
    stubs.deploy("""
id: allow
namespace: tests.exec
tasks:
  - id: fail
    type: io.kestra.plugin.core.execution.Fail
    allowFailure: true
    errorMessage: "expected"
  - id: next
    type: io.kestra.plugin.core.output.OutputValues
    values:
      k: v
""")
    final = stubs.wait(stubs.start("tests.exec", "allow").id)
    assert state_name(final.state.current) == "WARNING"
    states = [(tr.task_id, state_name(tr.state.current)) for tr in final.task_runs]
    assert states == [("fail", "WARNING"), ("next", "SUCCESS")]
    assert json.loads(final.task_runs[1].outputs_json) == {"values": {"k": "v"}}


def test_undefined_expression_fails_the_task_run_with_a_clear_error(stubs):
    source = """
id: undefined-var
namespace: tests.exec
tasks:
  - id: bad
    type: io.kestra.plugin.core.log.Log
    message: "{{ outputs.nothing.value }}"
"""
    # Refused at registration (our static check) with the task, property and line ...
    code, details = _status(stubs.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=source))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "line 7: tasks[0].message: task 'bad' property 'message' reads outputs of 'nothing'" in details
    # ... and, deployed leniently as Kestra would accept it, it fails at run time.
    stubs.deploy(source, lenient_expressions=True)
    final = stubs.wait(stubs.start("tests.exec", "undefined-var").id)
    assert state_name(final.state.current) == "FAILED"
    assert "task 'bad'" in final.task_runs[0].error and "nothing" in final.task_runs[0].error


@pytest.mark.parametrize(
    ("source", "needle", "line"),
    [
        ("id: x\nnamespace: tests.bad\ntasks:\n  - id: a\n    type: [unclosed\n", "", 0),
        ("id: x\nnamespace: tests.bad\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Lgo\n    message: hi\n",
         "unknown task type", 4),
        ("id: x\nnamespace: tests.bad\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n"
         "  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n", "duplicate", 7),
        ("id: x\nnamespace: tests.bad\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n"
         "    message: '{{ inputs.who }}'\n", "reads input 'who', which the flow does not declare", 6),
        ("id: x\nnamespace: tests.bad\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n"
         "    message: '{{ 1 + }}'\n", "invalid expression", 6),
    ],
    ids=["invalid-yaml", "unknown-type", "duplicate-id", "unknown-input", "expression-syntax"],
)
def test_bad_flows_are_refused_with_field_and_line_and_nothing_is_stored(stubs, source, needle, line):
    before = stubs.flows.ListFlows(flow_pb2.ListFlowsRequest(namespace="tests.bad")).flows
    code, details = _status(stubs.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=source))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in details
    validation = stubs.flows.ValidateFlow(flow_pb2.ValidateFlowRequest(source=source))
    assert not validation.valid and validation.errors
    if line:
        assert line in [e.line for e in validation.errors], validation.errors
    assert stubs.flows.ListFlows(flow_pb2.ListFlowsRequest(namespace="tests.bad")).flows == before


def test_bad_inputs_and_unknown_flows_create_nothing(stubs):
    stubs.deploy("""
id: typed
namespace: tests.inputs
inputs:
  - id: name
    type: STRING
  - id: count
    type: INT
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.name }} {{ inputs.count }}"
""")

    def count():
        req = execution_pb2.ListExecutionsRequest(namespace="tests.inputs")
        return len(stubs.executions.ListExecutions(req).executions)

    def start(inputs, flow_id="typed"):
        req = execution_pb2.StartExecutionRequest(namespace="tests.inputs", flow_id=flow_id, inputs_json=json.dumps(inputs))
        return _status(stubs.executions.StartExecution, req)

    code, details = start({"count": "3"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "name" in details and "tests.inputs.typed" in details
    code, details = start({"name": "x", "count": "three"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "count" in details and "three" in details
    code, details = start({"name": "x"}, flow_id="nope")
    assert code == grpc.StatusCode.NOT_FOUND and "tests.inputs.nope" in details
    assert count() == 0
    ok = stubs.start("tests.inputs", "typed", inputs={"name": "x", "count": "3"})
    assert json.loads(ok.inputs_json) == {"name": "x", "count": 3}
    assert count() == 1


def test_request_id_makes_start_idempotent(stubs):
    stubs.deploy(HELLO)
    req = execution_pb2.StartExecutionRequest(namespace="tests.exec", flow_id="hello", request_id="req-1")
    first = stubs.executions.StartExecution(req)
    second = stubs.executions.StartExecution(req)
    assert first.created and not second.created
    assert first.execution.id == second.execution.id


def test_revisions_and_expected_revision(stubs):
    src = "id: revs\nnamespace: tests.exec\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: v1\n"
    r1 = stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=src))
    same = stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=src))
    assert r1.created_revision and not same.created_revision and same.flow.revision == 1
    r2 = stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=src.replace("v1", "v2"), expected_revision=1))
    assert r2.flow.revision == 2
    code, _ = _status(stubs.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=src.replace("v1", "v3"), expected_revision=1))
    assert code == grpc.StatusCode.ABORTED
    revs = stubs.flows.ListFlowRevisions(flow_pb2.ListFlowRevisionsRequest(namespace="tests.exec", id="revs")).flows
    assert [f.revision for f in revs] == [1, 2]


def test_an_execution_starts_at_the_latest_or_a_given_revision(stubs):
    src = "id: start-revs\nnamespace: tests.exec\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: v1\n"
    stubs.deploy(src)
    stubs.deploy(src.replace("v1", "v2"))
    latest = stubs.start("tests.exec", "start-revs")
    first = stubs.start("tests.exec", "start-revs", revision=1)
    assert (latest.flow_revision, first.flow_revision) == (2, 1)
    code, details = _status(stubs.executions.StartExecution, execution_pb2.StartExecutionRequest(
        namespace="tests.exec", flow_id="start-revs", revision=3))
    assert code == grpc.StatusCode.NOT_FOUND and "tests.exec.start-revs not found at revision 3" in details


def test_parsed_but_not_applied_properties_are_warned_about(stubs):
    src = """
id: warned
namespace: tests.exec
sla:
  - id: max
    type: MAX_DURATION
    duration: PT1H
tasks:
  - id: a
    type: io.kestra.plugin.core.log.Log
    message: hi
    logToFile: true
triggers:
  - id: poll
    type: io.kestra.plugin.core.http.Trigger
    uri: https://example.com
"""
    resp = stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=src))
    messages = [w.message for w in resp.warnings]
    assert any("trigger 'poll'" in m and "do not fire yet" in m for m in messages)
    # sla (behavior defaults to FAIL, as Kestra) and logToFile are applied: no warning for them
    assert not any("sla" in m or "logToFile" in m for m in messages)


def test_task_log_level_drops_lower_lines(stubs):
    stubs.deploy("""
id: log-levels
namespace: tests.exec
tasks:
  - id: quiet
    type: io.kestra.plugin.core.log.Log
    logLevel: WARN
    message: ["info line", "warn line"]
    level: INFO
  - id: loud
    type: io.kestra.plugin.core.log.Log
    logLevel: INFO
    level: WARN
    message: "kept warning"
  - id: all
    type: io.kestra.plugin.core.log.Log
    level: TRACE
    message: "kept trace"
""")
    final = stubs.wait(stubs.start("tests.exec", "log-levels").id)
    assert state_name(final.state.current) == "SUCCESS"
    messages = {(e.task_id, e.message) for e in stubs.logs_stub_list(final.id)}
    assert ("quiet", "info line") not in messages and ("quiet", "warn line") not in messages
    assert ("loud", "kept warning") in messages and ("all", "kept trace") in messages


def test_flow_outputs_are_typed_and_a_wrong_type_fails_the_execution(stubs):
    stubs.deploy("""
id: typed-outputs
namespace: tests.exec
tasks:
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "7"
outputs:
  - id: as_text
    type: STRING
    value: "{{ outputs.ret }}"
  - id: as_int
    type: INT
    value: "{{ outputs.ret.value }}"
""")
    final = stubs.wait(stubs.start("tests.exec", "typed-outputs").id)
    assert state_name(final.state.current) == "SUCCESS"
    assert json.loads(final.outputs_json) == {"as_text": '{"value":"7"}', "as_int": 7}
    stubs.deploy("""
id: bad-output
namespace: tests.exec
tasks:
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "not a number"
outputs:
  - id: count
    type: INT
    value: "{{ outputs.ret.value }}"
""")
    final = stubs.wait(stubs.start("tests.exec", "bad-output").id)
    assert state_name(final.state.current) == "FAILED"
    assert "flow output 'count' of type INT" in final.error and final.outputs_json == ""


def test_a_property_rendering_to_nan_fails_the_task_run_with_a_message(stubs):
    stubs.deploy("""
id: nan-prop
namespace: tests.exec
tasks:
  - id: nan
    type: io.kestra.plugin.core.debug.Return
    format: "{{ 0.0 / 0 }}"
""")
    final = stubs.wait(stubs.start("tests.exec", "nan-prop").id, timeout=60)
    assert state_name(final.state.current) == "FAILED"
    assert "NaN or Infinity" in final.task_runs[0].error


def test_a_property_rendering_a_nul_character_is_kept_as_replacement_character(stubs):
    stubs.deploy("""
id: nul-prop
namespace: tests.exec
tasks:
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "x{{ '%00' | urldecode }}y"
""")
    final = stubs.wait(stubs.start("tests.exec", "nul-prop").id, timeout=60)
    assert state_name(final.state.current) == "SUCCESS"
    assert json.loads(final.task_runs[0].outputs_json) == {"value": "x\ufffdy"}
