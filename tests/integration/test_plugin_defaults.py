"""pluginDefaults end to end: a task without its own ``message`` logs the default one."""

from __future__ import annotations

import json

from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

FLOW = """
id: with-defaults
namespace: tests.defaults
pluginDefaults:
  - type: io.kestra.plugin.core.log.Log
    values:
      message: "default for {{ task.id }}"
  - type: io.kestra.plugin.core.debug.Return
    forced: true
    values:
      format: "forced {{ flow.id }}"
tasks:
  - id: uses-default
    type: io.kestra.plugin.core.log.Log
  - id: own-message
    type: io.kestra.plugin.core.log.Log
    message: "own message"
  - id: forced
    type: io.kestra.plugin.core.debug.Return
    format: "ignored"
"""


def test_plugin_defaults_apply_when_the_flow_runs(server):
    stubs = connect(server.address)
    try:
        stubs.deploy(FLOW)
        with worker_process(server.address):
            final = stubs.wait(stubs.start("tests.defaults", "with-defaults").id, timeout=60)
        messages = [e.message for e in stubs.logs_stub_list(final.id)]
    finally:
        stubs.close()
    assert state_name(final.state.current) == "SUCCESS"
    assert "default for uses-default" in messages and "own message" in messages
    forced = next(tr for tr in final.task_runs if tr.task_id == "forced")
    assert json.loads(forced.outputs_json) == {"value": "forced with-defaults"}
