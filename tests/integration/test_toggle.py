"""The Toggle task (io.kestra.plugin.core.trigger.Toggle, legacy io.kestra.core.tasks.trigger.Toggle)
enables or disables a trigger from a flow, as in Kestra's trigger-toggle.yaml."""

from __future__ import annotations

from kestrel.v1 import trigger_pb2, trigger_pb2_grpc
from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

SCHEDULED = """
id: scheduled
namespace: tests.toggle
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: tick
triggers:
  - id: yearly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 0 1 1 *"
"""

TOGGLE = """
id: toggler
namespace: tests.toggle
inputs:
  - id: enabled
    type: BOOLEAN
tasks:
  - id: toggle
    type: io.kestra.core.tasks.trigger.Toggle
    flowId: scheduled
    trigger: yearly
    enabled: "{{ inputs.enabled }}"
"""

MISSING = """
id: missing
namespace: tests.toggle
tasks:
  - id: toggle
    type: io.kestra.plugin.core.trigger.Toggle
    trigger: nope
"""


def _enabled(triggers, flow_id: str = "scheduled") -> bool:
    response = triggers.ListTriggers(trigger_pb2.ListTriggersRequest(namespace="tests.toggle", flow_id=flow_id),
                                     timeout=10)
    (trigger,) = response.triggers
    return trigger.enabled


def test_toggle_disables_and_enables_a_trigger_and_names_an_unknown_one(server):
    stubs = connect(server.address)
    triggers = trigger_pb2_grpc.TriggerServiceStub(stubs.channel)
    try:
        for source in (SCHEDULED, TOGGLE, MISSING):
            stubs.deploy(source)
        assert _enabled(triggers) is True
        with worker_process(server.address):
            off = stubs.wait(stubs.start("tests.toggle", "toggler", inputs={"enabled": "false"}).id, timeout=60)
            assert state_name(off.state.current) == "SUCCESS" and _enabled(triggers) is False
            on = stubs.wait(stubs.start("tests.toggle", "toggler", inputs={"enabled": "true"}).id, timeout=60)
            assert state_name(on.state.current) == "SUCCESS" and _enabled(triggers) is True
            refused = stubs.wait(stubs.start("tests.toggle", "missing").id, timeout=60)
    finally:
        stubs.close()
    assert state_name(refused.state.current) == "FAILED"
    assert "flow tests.toggle.missing has no trigger 'nope'" in refused.task_runs[0].error
