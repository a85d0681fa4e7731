"""Values are data, never templates: an input holding ``{{ 7*7 }}`` is stored, rendered into a
task and logged literally (Kestra renders a property once; values it inserts are not re-rendered)."""

from __future__ import annotations

import json

from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

FLOW = """
id: literal
namespace: tests.safety
inputs:
  - id: text
    type: STRING
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "got {{ inputs.text }}"
  - id: echo
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.text }}"
  - id: again
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.echo.value }}"
"""

PAYLOADS = ["{{ 7*7 }}", "{% for i in range(1, 3) %}x{% endfor %}", "{{ secret('X') }}", "{{ __class__ }}"]


def test_template_text_in_inputs_is_never_rendered(server):
    stubs = connect(server.address)
    try:
        stubs.deploy(FLOW)
        with worker_process(server.address):
            for payload in PAYLOADS:
                final = stubs.wait(stubs.start("tests.safety", "literal", inputs={"text": payload}).id, timeout=60)
                assert state_name(final.state.current) == "SUCCESS", final.task_runs
                assert json.loads(final.inputs_json) == {"text": payload}
                outputs = {tr.task_id: json.loads(tr.outputs_json or "{}") for tr in final.task_runs}
                assert outputs["echo"] == {"value": payload} and outputs["again"] == {"value": payload}
                messages = [e.message for e in stubs.logs_stub_list(final.id) if e.task_id == "log"]
                assert messages == [f"got {payload}"]
    finally:
        stubs.close()


def test_output_values_render_expressions_as_text_and_keep_literals(server):
    """As Kestra's OutputValues (render(String) per value): ``{{ 1 + 3 }}`` is "4", a number
    written in the YAML stays a number."""
    stubs = connect(server.address)
    try:
        stubs.deploy("""
id: output-values-text
namespace: tests.safety
tasks:
  - id: out
    type: io.kestra.plugin.core.output.OutputValues
    values:
      sum: "{{ 1 + 3 }}"
      items: "{{ [1, 2] }}"
      flag: "{{ 1 == 1 }}"
      literal: 4
      text: "plain"
""")
        with worker_process(server.address):
            final = stubs.wait(stubs.start("tests.safety", "output-values-text").id, timeout=60)
    finally:
        stubs.close()
    assert state_name(final.state.current) == "SUCCESS"
    assert json.loads(final.task_runs[0].outputs_json) == {
        "values": {"sum": "4", "items": "[1,2]", "flag": "true", "literal": 4, "text": "plain"}
    }
