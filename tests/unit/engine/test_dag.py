"""Dag: tasks start when their dependencies have ended; ``concurrent``; failures."""

from __future__ import annotations

from controlplane.model import State
from tests.unit.engine.sim import Sim

FLOW = """
id: dag
namespace: tests
tasks:
  - id: dag
    type: io.kestra.plugin.core.flow.Dag
    {concurrent}
    tasks:
      - task: {{id: t1, type: io.kestra.plugin.core.log.Log, message: x}}
      - task: {{id: t2, type: io.kestra.plugin.core.log.Log, message: x}}
        dependsOn: [t1]
      - task: {{id: t3, type: io.kestra.plugin.core.log.Log, message: x}}
        dependsOn: [t1]
      - task: {{id: t4, type: io.kestra.plugin.core.log.Log, message: x}}
        dependsOn: [t2]
      - task: {{id: t5, type: io.kestra.plugin.core.log.Log, message: x}}
        dependsOn: [t4, t3]
      - task: {{id: t6, type: io.kestra.plugin.core.log.Log, message: x}}
"""


def test_tasks_start_when_their_dependencies_end():
    sim = Sim(FLOW.format(concurrent=""))
    assert sim.ids(sim.advance()) == ["dag", "t1", "t6"]
    sim.finish("t1")
    assert sim.ids(sim.advance()) == ["t2", "t3"]
    sim.finish("t3")
    assert sim.advance() == []  # t5 also waits for t4
    sim.finish("t2")
    assert sim.ids(sim.advance()) == ["t4"]
    sim.finish("t4")
    assert sim.ids(sim.advance()) == ["t5"]
    assert sim.drive() is State.SUCCESS
    assert len(sim.runs()) == 7


def test_concurrent_limits_the_ready_tasks_started():
    sim = Sim(FLOW.format(concurrent="concurrent: 1"))
    assert sim.ids(sim.advance()) == ["dag", "t1"]
    sim.finish("t1")
    assert sim.ids(sim.advance()) == ["t2"]
    assert sim.drive() is State.SUCCESS


def test_a_failure_stops_the_dag():
    sim = Sim(FLOW.format(concurrent=""))
    sim.advance()
    sim.finish("t1", state=State.FAILED)
    assert sim.advance() == [] and sim.state_of("dag") is State.RUNNING  # t6 still runs
    sim.finish("t6")
    sim.advance()
    assert sim.state_of("dag") is State.FAILED and sim.done is State.FAILED
    assert sim.ids() == ["dag", "t1", "t6"]


def test_a_warning_dependency_lets_dependents_run():
    sim = Sim(FLOW.format(concurrent=""))
    sim.advance()
    sim.finish("t1", state=State.WARNING)
    assert sim.ids(sim.advance()) == ["t2", "t3"]
    assert sim.drive() is State.WARNING
