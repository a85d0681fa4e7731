"""Flow triggers end to end with two control-plane replicas on one Postgres and Redis: each
upstream event starts exactly one listener execution, with trigger variables and inputs rendered
from the upstream execution; conditions filter events."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as settings_for
from worker_sdk.client import KestrelClient

UPSTREAM = """
id: upstream
namespace: tests.flowtrigger
labels:
  team: data
tasks:
  - id: only
    type: io.kestra.plugin.core.debug.Return
    format: "from {{ execution.id }}"
outputs:
  - id: result
    type: STRING
    value: "{{ outputs.only.value }}"
"""

FAILING = """
id: failing
namespace: tests.flowtrigger
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
"""

LISTENER = """
id: listener
namespace: tests.flowtrigger.listeners
inputs:
  - id: from-parent
    type: STRING
tasks:
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs['from-parent'] }}|{{ trigger.executionId }}|{{ trigger.flowId }}|{{ trigger.state }}|{{ trigger.outputs.result }}"
triggers:
  - id: on-upstream
    type: io.kestra.core.models.triggers.types.Flow
    inputs:
      from-parent: "{{ outputs.only.value }}"
    conditions:
      - type: io.kestra.core.models.conditions.types.ExecutionFlowCondition
        namespace: tests.flowtrigger
        flowId: upstream
      - type: io.kestra.plugin.core.condition.ExecutionStatus
        in: [SUCCESS]
      - type: io.kestra.plugin.core.condition.ExecutionLabels
        labels: {team: data}
"""

ON_FAILURE = """
id: on-failure
namespace: tests.flowtrigger.listeners
tasks:
  - id: show
    type: io.kestra.plugin.core.log.Log
    message: "{{ trigger.executionId }} failed"
triggers:
  - id: failures
    type: io.kestra.plugin.core.trigger.Flow
    states: [FAILED]
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionNamespace
        namespace: tests.flowtrigger
        comparison: EQUALS
      - type: io.kestra.plugin.core.condition.Not
        conditions:
          - type: io.kestra.plugin.core.condition.ExecutionFlow
            namespace: tests.flowtrigger
            flowId: upstream
"""


@pytest.fixture(scope="module")
def replicas(database_url):
    first = ServerThread(settings_for(database_url)).start()
    second = ServerThread(settings_for(database_url, redis_prefix=first.settings.redis_prefix)).start()
    yield first, second
    second.stop()
    first.stop()


def _listener_executions(server, flow_id: str) -> list:
    async def q():
        async with server.cp.transaction() as unit:
            rows = await unit.conn.execute(sa.text(
                "SELECT id, trigger FROM executions WHERE namespace='tests.flowtrigger.listeners' AND flow_id=:f"),
                {"f": flow_id})
            return rows.all()
    return server.run(q())


def test_each_upstream_execution_starts_exactly_one_listener_execution(replicas):
    first, second = replicas
    with KestrelClient(first.address, timeout=30) as client, worker_process(first.address, concurrency=8):
        for source in (UPSTREAM, FAILING, LISTENER, ON_FAILURE):
            client.deploy_flow(source)
        wait_until(lambda: len(first.run(first.cp.scheduler.list_triggers("tests.flowtrigger"))) == 2, timeout=30,
                   what="the triggers to be registered")
        count = int(os.environ.get("KESTREL_TEST_FLOW_TRIGGER_UPSTREAMS", "20"))  # 50 when measured by hand
        upstream_ids = [client.start_execution("tests.flowtrigger", "upstream").id for _ in range(count)]
        failing_ids = [client.start_execution("tests.flowtrigger", "failing").id for _ in range(3)]
        for execution_id in upstream_ids + failing_ids:
            client.wait_execution(execution_id, timeout=120)
        wait_until(lambda: len(_listener_executions(first, "listener")) >= count, timeout=120,
                   what=f"{count} listener executions")
        wait_until(lambda: len(_listener_executions(first, "on-failure")) >= 3, timeout=60,
                   what="3 on-failure executions")
        # Let both replicas scan again: still exactly one per upstream event.
        first.run(first.cp.scheduler.flow_triggers_once())
        second.run(second.cp.scheduler.flow_triggers_once())
        listened = _listener_executions(first, "listener")
        assert sorted(r.trigger["variables"]["executionId"] for r in listened) == sorted(upstream_ids)
        failures = _listener_executions(first, "on-failure")
        assert sorted(r.trigger["variables"]["executionId"] for r in failures) == sorted(failing_ids)
        one = client.wait_execution(listened[0].id, timeout=60)
        assert one.state.current.value == "SUCCESS"
        upstream_id = listened[0].trigger["variables"]["executionId"]
        assert one.task_runs[0].outputs["value"] == (
            f"from {upstream_id}|{upstream_id}|upstream|SUCCESS|from {upstream_id}")


def test_trigger_listing_and_disabling_a_flow_trigger_stops_it(replicas):
    from controlplane.api.triggers import list_triggers, set_trigger_enabled

    first, _ = replicas
    with KestrelClient(first.address, timeout=30) as client, worker_process(first.address):
        kinds = {t.trigger_id: t for t in list_triggers(client, "tests.flowtrigger")}
        assert kinds["on-upstream"].type == "io.kestra.plugin.core.trigger.Flow" and kinds["on-upstream"].enabled
        set_trigger_enabled(client, "tests.flowtrigger.listeners", "listener", "on-upstream", False)
        before = len(_listener_executions(first, "listener"))
        done = client.start_execution("tests.flowtrigger", "upstream").id
        client.wait_execution(done, timeout=60)
        first.run(first.cp.scheduler.flow_triggers_once())
        assert len(_listener_executions(first, "listener")) == before


def test_multiple_condition_fires_once_both_upstreams_succeeded_in_the_window(replicas):
    first, _ = replicas
    sources = [f"""
id: part-{name}
namespace: tests.flowtrigger.multi
tasks:
  - id: only
    type: io.kestra.plugin.core.debug.Return
    format: "{name}"
""" for name in ("a", "b", "other")]
    sources.append("""
id: both
namespace: tests.flowtrigger.listeners
tasks:
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ trigger.flowId }}"
triggers:
  - id: both-done
    type: io.kestra.plugin.core.trigger.Flow
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionStatus
        in: [SUCCESS]
      - id: window
        type: io.kestra.core.models.conditions.types.MultipleCondition
        window: P1D
        windowAdvance: P0D
        conditions:
          a:
            type: io.kestra.plugin.core.condition.ExecutionFlow
            namespace: tests.flowtrigger.multi
            flowId: part-a
          b:
            type: io.kestra.plugin.core.condition.ExecutionFlow
            namespace: tests.flowtrigger.multi
            flowId: part-b
""")
    with KestrelClient(first.address, timeout=30) as client, worker_process(first.address):
        for source in sources:
            client.deploy_flow(source)
        wait_until(lambda: any(t.trigger_id == "both-done" for t in
                               first.run(first.cp.scheduler.list_triggers("tests.flowtrigger.listeners"))),
                   timeout=30, what="the listener's trigger")
        first.run(first.cp.scheduler.sync_once())
        # An unrelated SUCCESS opens the window's state first: part-a's membership must still be
        # stored on top of it (it was lost when that state was changed in place).
        client.wait_execution(client.start_execution("tests.flowtrigger.multi", "part-other").id, timeout=60)
        first.run(first.cp.scheduler.flow_triggers_once())
        for _ in range(2):
            client.wait_execution(client.start_execution("tests.flowtrigger.multi", "part-a").id, timeout=60)
        first.run(first.cp.scheduler.flow_triggers_once())
        assert _listener_executions(first, "both") == []  # only part-a so far: nothing
        b = client.start_execution("tests.flowtrigger.multi", "part-b").id
        client.wait_execution(b, timeout=60)
        wait_until(lambda: len(_listener_executions(first, "both")) == 1, timeout=30, what="one execution")
        first.run(first.cp.scheduler.flow_triggers_once())
        (fired,) = _listener_executions(first, "both")
        assert fired.trigger["variables"]["executionId"] == b
        # The window was reset once met: another part-b alone does not fire again.
        client.wait_execution(client.start_execution("tests.flowtrigger.multi", "part-b").id, timeout=60)
        first.run(first.cp.scheduler.flow_triggers_once())
        assert len(_listener_executions(first, "both")) == 1
