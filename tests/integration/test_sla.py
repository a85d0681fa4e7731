"""Flow ``sla`` (Kestra's SLATestCase): MAX_DURATION on a durable timer and EXECUTION_ASSERTION on
every change, with FAIL / CANCEL / NONE + labels, through the gRPC API with a real worker."""

from __future__ import annotations

import time

import grpc
import pytest

from kestrel.v1 import common_pb2, execution_pb2, flow_pb2
from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

ASSERTION = """
id: sla-assert
namespace: tests.sla
inputs:
  - id: string
    type: SELECT
    values: [PASS, CANCEL, LABEL]
    defaults: PASS
sla:
  - id: cancel
    type: EXECUTION_ASSERTION
    behavior: CANCEL
    assert: "{{ inputs.string != 'CANCEL' }}"
  - id: label
    type: EXECUTION_ASSERTION
    behavior: NONE
    assert: "{{ inputs.string != 'LABEL' }}"
    labels:
      sla: violated
tasks:
  - id: return
    type: io.kestra.plugin.core.debug.Return
    format: "true"
"""

MAX_DURATION = """
id: sla-duration
namespace: tests.sla
sla:
  - id: maxDuration
    type: MAX_DURATION
    behavior: FAIL
    duration: PT1S
    labels:
      - key: late
        value: "yes"
tasks:
  - id: sleep
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT30S
  - id: never
    type: io.kestra.plugin.core.log.Log
    message: not reached
"""


@pytest.fixture(scope="module")
def stubs(server):
    client = connect(server.address)
    client.deploy(ASSERTION)
    client.deploy(MAX_DURATION)
    with worker_process(server.address):
        yield client
    client.close()


def test_assertion_that_holds_changes_nothing(stubs):
    final = stubs.wait(stubs.start("tests.sla", "sla-assert").id)
    assert state_name(final.state.current) == "SUCCESS"
    assert "sla" not in {label.key: label.value for label in final.labels}


def test_violated_assertion_with_cancel_ends_cancelled(stubs):
    final = stubs.wait(stubs.start("tests.sla", "sla-assert", {"string": "CANCEL"}).id)
    assert state_name(final.state.current) == "CANCELLED"
    assert "SLA 'cancel' violated" in final.error
    assert any("SLA 'cancel' violated" in e.message and common_pb2.LogLevel.Name(e.level).endswith("WARN") for e in stubs.logs_stub_list(final.id))


def test_violated_assertion_with_none_only_adds_labels(stubs):
    final = stubs.wait(stubs.start("tests.sla", "sla-assert", {"string": "LABEL"}).id)
    assert state_name(final.state.current) == "SUCCESS"
    assert {label.key: label.value for label in final.labels}["sla"] == "violated"


def test_max_duration_fails_the_running_execution_and_stops_its_task(stubs):
    final = stubs.wait(stubs.start("tests.sla", "sla-duration").id, timeout=60)
    assert state_name(final.state.current) == "FAILED"
    assert "still running after 1 s" in final.error
    assert {label.key: label.value for label in final.labels}["late"] == "yes"
    runs = {tr.task_id: tr for tr in final.task_runs}
    assert "never" not in runs  # nothing starts after the violation
    # the Sleep on the worker was asked to stop: its task run ends KILLED, before its 30 s are up
    deadline = time.monotonic() + 25
    sleep_state = ""
    while time.monotonic() < deadline:
        sleep_state = state_name(next(tr for tr in stubs.get(final.id).task_runs if tr.task_id == "sleep").state.current)
        if sleep_state not in ("RUNNING", "CREATED"):
            break
        time.sleep(0.2)
    assert sleep_state == "KILLED"


@pytest.mark.parametrize(
    ("sla", "field", "message"),
    [
        ("- id: a\n    type: MAX_TIME\n    behavior: FAIL", "sla[0].type", "'type' must be one of"),
        ("- id: a\n    type: MAX_DURATION\n    behavior: FAIL", "sla[0].duration", "needs 'duration'"),
        ("- id: a\n    type: MAX_DURATION\n    behavior: FAIL\n    duration: 5m", "sla[0].duration",
         "invalid 'duration'"),
        ("- id: a\n    type: EXECUTION_ASSERTION\n    behavior: FAIL", "sla[0].assert", "needs 'assert'"),
        ("- id: a\n    type: MAX_DURATION\n    behavior: STOP\n    duration: PT1S", "sla[0].behavior",
         "'behavior' must be one of"),
    ],
)
def test_bad_sla_is_refused_at_registration_naming_the_field(stubs, sla, field, message):
    source = f"id: bad-sla\nnamespace: tests.sla\nsla:\n  {sla}\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: x\n"
    with pytest.raises(grpc.RpcError) as err:
        stubs.deploy(source)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details() and message in err.value.details()
    assert "line 4" in err.value.details() or "flow.yml:4" in err.value.details() or ":4:" in err.value.details()


def test_duplicate_sla_ids_are_refused_at_registration_naming_flow_field_and_line(stubs):
    source = ("id: dup-sla\nnamespace: tests.sla\nsla:\n"
              "  - id: late\n    type: MAX_DURATION\n    duration: PT1H\n"
              "  - id: other\n    type: MAX_DURATION\n    duration: PT2H\n"
              "  - id: late\n    type: EXECUTION_ASSERTION\n    assert: \"{{ true }}\"\n"
              "tasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: x\n")
    with pytest.raises(grpc.RpcError) as err:
        stubs.deploy(source)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details()
    assert "flow tests.sla.dup-sla is invalid" in details, details
    assert "line 10: sla[2].id: sla 'late': duplicate sla id 'late' (first at line 4)" in details, details
    # Kestra accepts it (its sla-execution-condition.yaml repeats an id): lenient registration warns
    resp = stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=source, lenient_expressions=True), timeout=10)
    assert [(w.path, w.line) for w in resp.warnings if "duplicate sla id" in w.message] == [("sla[2].id", 10)]

PAUSED = """
id: sla-paused
namespace: tests.sla
sla:
  - id: quick
    type: MAX_DURATION
    duration: PT1S
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
    delay: PT60S
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: not reached
"""


def test_max_duration_fires_while_paused_and_restart_rearms_it(stubs):
    stubs.deploy(PAUSED)
    final = stubs.wait(stubs.start("tests.sla", "sla-paused").id, timeout=40)
    assert state_name(final.state.current) == "FAILED"  # behavior defaults to FAIL
    assert [tr.task_id for tr in final.task_runs] == ["wait"]
    restarted = stubs.executions.RestartExecution(execution_pb2.RestartExecutionRequest(id=final.id), timeout=10)
    assert state_name(restarted.execution.state.current) in ("RESTARTED", "RUNNING", "PAUSED")
    again = stubs.wait(final.id, timeout=40)
    assert state_name(again.state.current) == "FAILED"
    histories = [state_name(h.state) for h in again.state.histories]
    # re-armed from the restart: it paused again before failing, not failed on the spot
    assert histories[histories.index("RESTARTED"):].count("PAUSED") == 1


@pytest.mark.parametrize(
    ("labels", "message"),
    [("\"k\\u0000\": v", "NUL"), ("system.correlationId: x", "reserved")],
)
def test_sla_labels_are_checked_like_api_labels(stubs, labels, message):
    source = ("id: bad-sla-labels\nnamespace: tests.sla\nsla:\n  - id: a\n    type: EXECUTION_ASSERTION\n"
              f"    assert: \"{{{{ false }}}}\"\n    behavior: NONE\n    labels:\n      {labels}\n"
              "tasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: x\n")
    with pytest.raises(grpc.RpcError) as err:
        stubs.deploy(source)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sla[0].labels" in err.value.details()
