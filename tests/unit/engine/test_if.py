"""If: the condition rendered once at start, Kestra truthiness, then/else/none."""

from __future__ import annotations

import pytest

from controlplane.engine.flowables import if_
from controlplane.engine.plan import FlowableError
from controlplane.model import State
from tests.unit.engine.sim import Sim, flow_of

FLOW = """
id: cond
namespace: tests
inputs:
  - {id: param, type: STRING}
tasks:
  - id: if
    type: io.kestra.plugin.core.flow.If
    condition: "{{ inputs.param }}"
    then:
      - {id: yes1, type: io.kestra.plugin.core.log.Log, message: y}
      - {id: yes2, type: io.kestra.plugin.core.log.Log, message: y}
    else:
      - {id: no, type: io.kestra.plugin.core.log.Log, message: n}
"""


@pytest.mark.parametrize(
    ("param", "branch"),
    [
        (True, ["yes1", "yes2"]), ("true", ["yes1", "yes2"]), (1, ["yes1", "yes2"]), ("yes", ["yes1", "yes2"]),
        ("False", ["yes1", "yes2"]),  # Kestra compares case-sensitively
        (False, ["no"]), ("false", ["no"]), (0, ["no"]), ("0", ["no"]), ("-0", ["no"]), ("", ["no"]),
        (" false ", ["no"]), (None, ["no"]),
    ],
)
def test_truthiness_picks_the_branch(param, branch):
    sim = Sim(FLOW, inputs={"param": param})
    assert sim.drive() is State.SUCCESS
    assert sim.ids() == ["if", *branch]
    assert sim.run_of("if").outputs == {"evaluationResult": branch != ["no"]}
    assert {tr.branch for tr in sim.runs()[1:]} == {"then" if branch != ["no"] else "else"}


def test_no_else_leaves_only_the_if():
    sim = Sim(FLOW.replace("    else:\n      - {id: no, type: io.kestra.plugin.core.log.Log, message: n}\n", ""),
              inputs={"param": "false"})
    assert sim.drive() is State.SUCCESS
    assert sim.ids() == ["if"]


def test_condition_is_rendered_once_when_the_if_starts():
    sim = Sim(FLOW, inputs={"param": "true"})
    sim.advance()
    sim.execution.inputs["param"] = "false"  # what the condition reads changes mid-branch
    sim.finish("yes1")
    assert sim.ids(sim.advance()) == ["yes2"]


def test_a_failing_branch_task_fails_the_if_after_its_errors():
    sim = Sim("""
id: cond
namespace: tests
tasks:
  - id: if
    type: io.kestra.plugin.core.flow.If
    condition: "true"
    then:
      - {id: boom, type: io.kestra.plugin.core.execution.Fail}
      - {id: never, type: io.kestra.plugin.core.log.Log, message: n}
    errors:
      - {id: local, type: io.kestra.plugin.core.log.Log, message: handled}
errors:
  - {id: global, type: io.kestra.plugin.core.log.Log, message: handled}
""")
    assert sim.drive() is State.FAILED
    assert sim.ids() == ["if", "boom", "local", "global"]
    assert sim.state_of("if") is State.FAILED


def test_unrenderable_or_missing_condition_fails_the_if():
    sim = Sim(FLOW.replace("{{ inputs.param }}", "{{ nope }}"))
    assert sim.drive() is State.FAILED
    assert sim.ids() == ["if"] and "nope" in sim.errors["tr1"]
    task = flow_of(FLOW).tasks[0]
    bare = type(task)(id="if", type=task.type, subtasks=task.subtasks)
    with pytest.raises(FlowableError, match="task 'if': property 'condition' is required"):
        if_.prepare(bare, lambda value, prop: value)
