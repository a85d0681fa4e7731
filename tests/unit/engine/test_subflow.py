"""Subflow: rendered properties, the task run's state from the child's, waiting on the child."""

from __future__ import annotations

import pytest

from controlplane.engine.flowables import subflow
from controlplane.engine.plan import FlowableError
from controlplane.engine.view import ChildExecution
from controlplane.model import State
from tests.unit.engine.sim import Sim, flow_of


def _task(props: str):
    return flow_of(f"""
        id: parent
        namespace: tests
        tasks:
          - id: sub
            type: io.kestra.plugin.core.flow.Subflow
            {props}
    """).tasks[0]


def _prepare(props: str):
    return subflow.prepare(_task(props), lambda value, _prop: value).properties


def test_prepare_defaults():
    assert _prepare("namespace: ns\n            flowId: child") == {
        "namespace": "ns", "flowId": "child", "revision": 0, "inputs": {}, "labels": {},
        "wait": True, "transmitFailed": True, "inheritLabels": False, "restartBehavior": "RETRY_FAILED",
    }


def test_prepare_restart_behavior_and_schedule_date():
    props = _prepare("namespace: ns\n            flowId: child\n            restartBehavior: new_execution\n"
                     "            scheduleDate: '2030-01-02T10:00:00+01:00'")
    assert props["restartBehavior"] == "NEW_EXECUTION"
    assert props["scheduleDate"] == "2030-01-02T09:00:00+00:00"
    with pytest.raises(FlowableError, match="property 'restartBehavior' must be RETRY_FAILED or NEW_EXECUTION"):
        _prepare("namespace: ns\n            flowId: child\n            restartBehavior: SOMETIMES")
    with pytest.raises(FlowableError, match="property 'scheduleDate' needs a time zone offset"):
        _prepare("namespace: ns\n            flowId: child\n            scheduleDate: '2030-01-02T10:00:00'")


def test_prepare_reads_labels_as_a_map_or_a_list_and_the_flags():
    props = _prepare("namespace: ns\n            flowId: child\n            revision: 2\n            wait: false\n"
                     "            transmitFailed: false\n            inheritLabels: true\n"
                     "            labels: [{key: a, value: 1}, {key: b, value: x}]\n            inputs: {n: 1}")
    assert props["labels"] == {"a": "1", "b": "x"}
    assert (props["revision"], props["wait"], props["transmitFailed"], props["inheritLabels"]) == (2, False, False, True)
    assert props["inputs"] == {"n": 1}


@pytest.mark.parametrize(
    ("props", "needle"),
    [
        ("flowId: child", "'namespace' is required"),
        ("namespace: ns\n            flowId: ''", "'flowId' is required"),
        ("namespace: ns\n            flowId: child\n            revision: '{{ x }}'", "'revision' must be an integer"),
        ("namespace: ns\n            flowId: child\n            labels: [oops]", "'labels'"),
    ],
)
def test_prepare_refuses(props, needle):
    with pytest.raises(FlowableError, match=needle):
        _prepare(props)


@pytest.mark.parametrize(
    ("child", "transmit", "expected"),
    [
        (State.SUCCESS, True, State.SUCCESS), (State.WARNING, True, State.WARNING),
        (State.FAILED, True, State.FAILED), (State.KILLED, True, State.FAILED),
        (State.CANCELLED, True, State.FAILED), (State.FAILED, False, State.SUCCESS),
    ],
)
def test_final_state(child, transmit, expected):
    assert subflow.final_state(child, transmit) is expected


def _sim(wait: str = "true") -> Sim:
    sim = Sim(f"""
        id: parent
        namespace: tests
        tasks:
          - {{id: sub, type: io.kestra.plugin.core.flow.Subflow, namespace: ns, flowId: child, wait: {wait}}}
          - {{id: after, type: io.kestra.plugin.core.log.Log, message: x}}
    """)
    sim.advance()
    return sim


def test_waits_for_the_child_then_takes_its_state():
    sim = _sim()
    tr = sim.run_of("sub")
    assert sim.ids() == ["sub"]  # no child recorded yet: wait
    for state in (State.CREATED, State.RUNNING, State.RETRIED):
        sim.view.subflows[tr.id] = ChildExecution("c1", state)
        assert subflow.step(sim.view, sim.tasks["sub"], tr, False).done is None
    sim.view.subflows[tr.id] = ChildExecution("c1", State.FAILED)
    assert sim.drive() is State.FAILED and sim.ids() == ["sub"]


def test_without_wait_it_succeeds_as_soon_as_the_child_exists():
    sim = _sim("false")
    tr = sim.run_of("sub")
    sim.view.subflows[tr.id] = ChildExecution("c1", State.CREATED)
    assert sim.drive() is State.SUCCESS and sim.ids() == ["sub", "after"]


def test_killed_parent():
    sim = _sim()
    assert subflow.step(sim.view, sim.tasks["sub"], sim.run_of("sub"), True).done is State.KILLED
