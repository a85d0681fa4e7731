"""Pause: rendered durations and behavior, when it resumes by itself, PAUSED then its children."""

from __future__ import annotations

import pytest

from controlplane.engine.flowables import pause
from controlplane.engine.plan import FlowableError
from controlplane.model import State
from tests.unit.engine.sim import Sim, flow_of


def _task(props: str):
    flow = flow_of(f"""
        id: p
        namespace: tests
        inputs:
          - {{id: wait, type: STRING, defaults: PT2S}}
        tasks:
          - id: pause
            type: io.kestra.plugin.core.flow.Pause
            {props}
    """)
    return flow.tasks[0]


def _prepare(props: str, values: dict | None = None):
    values = values or {"{{ inputs.wait }}": "PT2S"}
    return pause.prepare(_task(props), lambda value, _prop: values.get(value, value)).properties


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ("delay: PT1.5S", {"pauseSeconds": 1.5, "timeoutSeconds": None, "behavior": "RESUME"}),
        ("pauseDuration: PT1M\n            behavior: warn", {"pauseSeconds": 60.0, "timeoutSeconds": None,
                                                           "behavior": "WARN"}),
        ('delay: "{{ inputs.wait }}"', {"pauseSeconds": 2.0, "timeoutSeconds": None, "behavior": "RESUME"}),
        ("timeout: PT3S", {"pauseSeconds": None, "timeoutSeconds": 3.0, "behavior": "RESUME"}),
        ("", {"pauseSeconds": None, "timeoutSeconds": None, "behavior": "RESUME"}),
    ],
)
def test_prepare_renders_durations_and_behavior(props, expected):
    assert _prepare(props) == expected


@pytest.mark.parametrize(
    ("props", "values", "needle"),
    [
        ('delay: "{{ inputs.wait }}"', {"{{ inputs.wait }}": "soon"}, "property 'delay'"),
        ('delay: "{{ inputs.wait }}"', {"{{ inputs.wait }}": "-PT1S"}, "must not be negative"),
        ('behavior: "{{ inputs.wait }}"', {"{{ inputs.wait }}": "LATER"}, "one of RESUME, WARN, FAIL, CANCEL"),
    ],
)
def test_prepare_refuses_bad_rendered_values(props, values, needle):
    with pytest.raises(FlowableError, match=needle):
        _prepare(props, values)


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"pauseSeconds": 1.0, "behavior": "RESUME"}, (1.0, State.RUNNING)),
        ({"pauseSeconds": 1.0, "behavior": "WARN"}, (1.0, State.RUNNING)),
        ({"pauseSeconds": 1.0, "behavior": "FAIL"}, (1.0, State.FAILED)),
        ({"pauseSeconds": 1.0, "behavior": "CANCEL"}, (1.0, State.CANCELLED)),
        ({"pauseSeconds": 1.0, "timeoutSeconds": 9.0, "behavior": "RESUME"}, (1.0, State.RUNNING)),
        ({"pauseSeconds": None, "timeoutSeconds": 9.0, "behavior": "RESUME"}, (9.0, State.FAILED)),
        ({"pauseSeconds": None, "timeoutSeconds": None, "behavior": "RESUME"}, None),
    ],
)
def test_resume_after(properties, expected):
    sim = Sim("""
        id: p
        namespace: tests
        tasks:
          - {id: pause, type: io.kestra.plugin.core.flow.Pause}
    """)
    sim.advance()
    tr = sim.run_of("pause")
    tr.properties = properties
    assert pause.resume_after(tr) == expected


FLOW = """
id: p
namespace: tests
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    behavior: WARN
    pauseDuration: PT1H
    tasks:
      - {id: a, type: io.kestra.plugin.core.log.Log, message: a}
      - {id: b, type: io.kestra.plugin.core.log.Log, message: b}
  - {id: last, type: io.kestra.plugin.core.log.Log, message: last}
"""


def test_paused_first_then_children_in_order_after_the_resume():
    sim = Sim(FLOW)
    sim.advance()
    assert sim.ids() == ["pause"] and sim.state_of("pause") is State.PAUSED
    sim.advance()
    assert sim.ids() == ["pause"]  # nothing starts while it is paused
    sim.resume("pause")
    assert sim.drive() is State.SUCCESS  # a manual resume succeeds whatever the behavior
    assert sim.ids() == ["pause", "a", "b", "last"]
    assert [h.state for h in sim.run_of("pause").histories].count(State.PAUSED) == 1


def test_warn_behavior_after_the_duration_ends_warning():
    sim = Sim(FLOW)
    sim.advance()
    sim.resume("pause", by_timer=True)
    assert sim.drive() is State.WARNING
    assert sim.state_of("pause") is State.WARNING


def test_a_restarted_pause_does_not_pause_again():
    sim = Sim(FLOW)
    sim.advance()
    sim.resume("pause")
    sim.advance()
    sim.finish("a", state=State.FAILED)
    sim.advance()
    assert sim.state_of("pause") is State.FAILED
    tr = sim.run_of("pause")
    tr.state = State.RUNNING  # what Executor.restart does (FAILED -> RESTARTED -> RUNNING)
    assert pause.was_paused(tr)
    assert pause.step(sim.view, sim.tasks["pause"], tr, False).pause is False


def test_killed_while_paused():
    sim = Sim(FLOW)
    sim.advance()
    sim.kill()
    sim.advance()
    assert sim.state_of("pause") is State.KILLED and sim.done is State.KILLED


def test_on_resume_inputs_become_flow_inputs():
    task = _task("onResume:\n              - {id: ok, type: boolean}\n              - {name: why, type: STRING, "
                 "required: false, defaults: none}")
    inputs = pause.on_resume_inputs(task)
    assert [(i.id, i.type, i.required, i.defaults) for i in inputs] == [
        ("ok", "BOOLEAN", True, None), ("why", "STRING", False, "none")]
