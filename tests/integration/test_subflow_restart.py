"""Subflow ``restartBehavior`` and ``scheduleDate`` end to end through the API with a real worker:
restarting a failed parent restarts the same failed child in place (RETRY_FAILED, Kestra's
default) or starts a new child (NEW_EXECUTION); a child with a future ``scheduleDate`` exists at
once but only starts at that date, and the parent waits for it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.harness import wait_until, worker_process
from worker_sdk.client import KestrelClient

CHILD = """
id: flaky-child
namespace: tests.subflow.restart
inputs:
  - id: marker
    type: STRING
tasks:
  - id: once
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - if [ ! -f "{{ inputs.marker }}" ]; then touch "{{ inputs.marker }}"; exit 1; fi
"""


def _parent(behavior: str) -> str:
    return f"""
id: parent-{behavior.lower().replace('_', '-')}
namespace: tests.subflow.restart
inputs:
  - id: marker
    type: STRING
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow.restart
    flowId: flaky-child
    restartBehavior: {behavior}
    inputs:
      marker: "{{{{ inputs.marker }}}}"
"""


@pytest.fixture(scope="module")
def client(server):
    c = KestrelClient(server.address, timeout=30)
    with worker_process(server.address):
        c.deploy_flow(CHILD)
        for behavior in ("RETRY_FAILED", "NEW_EXECUTION"):
            c.deploy_flow(_parent(behavior))
        yield c
    c.close()


def _children(client: KestrelClient) -> list:
    return client.list_executions(namespace="tests.subflow.restart", flow_id="flaky-child")


@pytest.mark.parametrize("behavior", ["RETRY_FAILED", "NEW_EXECUTION"])
def test_restart_behavior(client, behavior, tmp_path):
    flow_id = f"parent-{behavior.lower().replace('_', '-')}"
    started = client.start_execution("tests.subflow.restart", flow_id, inputs={"marker": str(tmp_path / "m")})
    failed = client.wait_execution(started.id, timeout=60)
    assert failed.state.current.value == "FAILED"
    first_child = failed.task_runs[0].outputs["executionId"]
    assert client.wait_execution(first_child, timeout=30).state.current.value == "FAILED"

    client.restart_execution(started.id)
    final = client.wait_execution(started.id, timeout=60)
    assert final.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in final.task_runs]
    child_now = final.task_runs[0].outputs["executionId"]
    first = client.wait_execution(first_child, timeout=30)
    if behavior == "RETRY_FAILED":
        assert child_now == first_child  # the same child, restarted in place
        assert first.state.current.value == "SUCCESS"
        once = next(tr for tr in first.task_runs if tr.task_id == "once")
        assert [a.state.current.value for a in once.attempts] == ["FAILED", "SUCCESS"]
    else:
        assert child_now != first_child  # a new child; the first one stays FAILED
        assert first.state.current.value == "FAILED"
        assert client.wait_execution(child_now, timeout=30).state.current.value == "SUCCESS"


def test_schedule_date_starts_the_child_at_that_date(client):
    client.deploy_flow("""
id: scheduled-parent
namespace: tests.subflow.restart
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow.restart
    flowId: quick-child
    scheduleDate: "{{ now() | dateAdd(4, 'SECONDS') }}"
""")
    client.deploy_flow("""
id: quick-child
namespace: tests.subflow.restart
tasks:
  - id: hi
    type: io.kestra.plugin.core.debug.Return
    format: hi
""")
    started = client.start_execution("tests.subflow.restart", "scheduled-parent")
    call = wait_until(lambda: next((tr for tr in client.get_execution(started.id).task_runs
                                    if tr.outputs and tr.outputs.get("executionId")), None), timeout=30,
                      what="the child execution")
    child_id = call.outputs["executionId"]
    final = client.wait_execution(started.id, timeout=60)
    assert final.state.current.value == "SUCCESS"
    child = client.wait_execution(child_id, timeout=30)
    assert child.state.current.value == "SUCCESS"
    # Held until the date: rendered (now + 4 s) after the parent was created, so the child
    # cannot have started earlier than 4 s after the parent's creation (a lower bound only).
    parent_created = final.state.histories[0].date
    running = next(h.date for h in child.state.histories if h.state.value == "RUNNING")
    assert running - parent_created >= timedelta(seconds=3.9), child.state.histories


def test_a_literal_bad_schedule_date_is_refused_at_registration(client):
    """A literal (no ``{{ }}``) is checked when the flow is deployed, naming flow, task, field and line."""
    from worker_sdk.errors import InvalidArgumentError

    for literal, why in (('"next tuesday"', "must be an ISO-8601 date-time"),
                         ("2026-01-01T10:00:00", "needs a time zone offset")):
        with pytest.raises(InvalidArgumentError) as err:
            client.deploy_flow(f"""
id: bad-schedule
namespace: tests.subflow.restart
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow.restart
    flowId: quick-child
    scheduleDate: {literal}
""")
        message = str(err.value)
        assert "flow tests.subflow.restart.bad-schedule is invalid" in message, message
        assert "line 9: tasks[0].scheduleDate: task 'call': property 'scheduleDate' " + why in message, message


def test_a_rendered_bad_schedule_date_fails_the_task_naming_the_property(client):
    client.deploy_flow("""
id: bad-rendered-schedule
namespace: tests.subflow.restart
inputs:
  - {id: when, type: STRING, defaults: next tuesday}
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.subflow.restart
    flowId: quick-child
    scheduleDate: "{{ inputs.when }}"
""")
    final = client.wait_execution(client.start_execution("tests.subflow.restart", "bad-rendered-schedule").id,
                                  timeout=60)
    assert final.state.current.value == "FAILED"
    assert "task 'call': property 'scheduleDate' must be an ISO-8601 date-time" in final.task_runs[0].error
