"""Switch: the value rendered once, cases by string key, defaults, no match."""

from __future__ import annotations

import pytest

from controlplane.engine.flowables import switch
from controlplane.engine.plan import FlowableError
from controlplane.model import State
from tests.unit.engine.sim import Sim, flow_of

FLOW = """
id: sw
namespace: tests
inputs:
  - {id: v, type: STRING}
tasks:
  - id: sw
    type: io.kestra.plugin.core.flow.Switch
    value: "{{ inputs.v }}"
    cases:
      FIRST:
        - {id: first, type: io.kestra.plugin.core.log.Log, message: "1"}
      2:
        - {id: two, type: io.kestra.plugin.core.log.Log, message: "2"}
      "true":
        - {id: yes, type: io.kestra.plugin.core.log.Log, message: "t"}
        - {id: yes2, type: io.kestra.plugin.core.log.Log, message: "t"}
    defaults:
      - {id: other, type: io.kestra.plugin.core.log.Log, message: "d"}
"""


@pytest.mark.parametrize(
    ("value", "ran", "text", "defaults"),
    [
        ("FIRST", ["first"], "FIRST", False),
        (2, ["two"], "2", False),  # YAML int key 2 matches the rendered "2"
        ("2", ["two"], "2", False),
        (True, ["yes", "yes2"], "true", False),  # a boolean renders "true"
        ("first", ["other"], "first", True),
        (None, ["other"], "", True),  # null prints as "" in Pebble
    ],
)
def test_the_matching_case_runs_else_defaults(value, ran, text, defaults):
    sim = Sim(FLOW, inputs={"v": value})
    assert sim.drive() is State.SUCCESS
    assert sim.ids() == ["sw", *ran]
    assert sim.run_of("sw").outputs == {"value": text, "defaults": defaults}


def test_no_match_and_no_defaults_fails_the_switch():
    flow = FLOW.split("    defaults:")[0]
    sim = Sim(flow, inputs={"v": "nothing"})
    assert sim.drive() is State.FAILED
    assert sim.ids() == ["sw"]
    assert "no case matches value 'nothing'" in sim.errors["tr1"]
    with pytest.raises(FlowableError, match="task 'sw': no case matches value 'x' .*FIRST, 2, true"):
        switch.prepare(flow_of(flow).tasks[0], lambda value, prop: "x")


def test_value_is_rendered_once_and_a_render_error_fails_the_switch():
    sim = Sim(FLOW, inputs={"v": True})
    sim.advance()
    sim.execution.inputs["v"] = "FIRST"
    sim.finish("yes")
    assert sim.ids(sim.advance()) == ["yes2"]
    broken = Sim(FLOW.replace("inputs.v", "inputs.missing"), inputs={"v": "x"})
    assert broken.drive() is State.FAILED and "missing" in broken.errors["tr1"]


def test_local_errors_of_the_switch_handle_a_failing_case():
    sim = Sim("""
id: sw
namespace: tests
tasks:
  - id: sw
    type: io.kestra.plugin.core.flow.Switch
    value: A
    cases:
      A:
        - {id: boom, type: io.kestra.plugin.core.execution.Fail}
    errors:
      - {id: local, type: io.kestra.plugin.core.log.Log, message: handled}
""")
    assert sim.drive() is State.FAILED
    assert sim.ids() == ["sw", "boom", "local"]
