"""Variables inside loops: ``outputs`` keyed by loop values, ``taskrun.value``, ``parent``/``parents``."""

from __future__ import annotations

from controlplane.engine.context import expression_context, outputs_of, parents_of
from controlplane.model import State
from tests.unit.engine.sim import Sim


def _values(sim: Sim, task_id: str) -> list[str]:
    return [tr.outputs["value"] for tr in sim.runs(task_id)]


def test_nested_each_sequential_outputs_nest_by_value():
    # Kestra's each-sequential-nested.yaml
    sim = Sim("""
id: each-sequential-nested
namespace: tests
tasks:
  - id: 1_each
    type: io.kestra.plugin.core.flow.EachSequential
    value: ["s1", "s2", "s3"]
    tasks:
      - id: 1-1_return
        type: io.kestra.plugin.core.debug.Return
        format: "{{task.id}} > {{taskrun.value}}"
      - id: 1-2_each
        type: io.kestra.plugin.core.flow.EachSequential
        value: '["a a", "b b"]'
        tasks:
          - id: 1-2-1_return
            type: io.kestra.plugin.core.debug.Return
            format: "{{task.id}} > {{taskrun.value}}"
          - id: 1-2-2_return
            type: io.kestra.plugin.core.debug.Return
            format: "{{ outputs['1-2-1_return'].s1[taskrun.value].value }}"
      - id: 1-3_return
        type: io.kestra.plugin.core.debug.Return
        format: "{{task.id}} > {{ outputs['1-1_return'][taskrun.value].value }}"
  - id: 2_return
    type: io.kestra.plugin.core.debug.Return
    format: "{{task.id}} > {{outputs['1-2-1_return'].s1['a a'].value}}"
""")
    assert sim.drive() is State.SUCCESS
    assert len(sim.runs()) == 23
    assert _values(sim, "2_return") == ["2_return > 1-2-1_return > a a"]
    assert _values(sim, "1-3_return") == [f"1-3_return > 1-1_return > {v}" for v in ("s1", "s2", "s3")]
    assert _values(sim, "1-2-2_return")[:2] == ["1-2-1_return > a a", "1-2-1_return > b b"]
    outputs = outputs_of(sim.view)
    assert outputs["1-2-1_return"]["s2"]["b b"] == {"value": "1-2-1_return > b b"}
    assert set(outputs["1-1_return"]) == {"s1", "s2", "s3"}


def test_parents_go_outward_and_skip_task_runs_without_value_or_outputs():
    # The explicit form of Kestra's current-output.yaml (currentEachOutput belongs to expressions).
    sim = Sim("""
id: current-output
namespace: tests
tasks:
  - id: 1_each
    type: io.kestra.plugin.core.flow.ForEach
    values: '["v11", "v12"]'
    tasks:
      - id: 1-1_each
        type: io.kestra.plugin.core.flow.ForEach
        values: '["v21", "v22"]'
        tasks:
          - id: 1-1-1_each
            type: io.kestra.plugin.core.flow.ForEach
            values: '["v31", "v32"]'
            tasks:
            - id: 1-1-1_output
              type: io.kestra.plugin.core.debug.Return
              format: "{{ parents[1].taskrun.value }}-{{ parents[0].taskrun.value }}-{{ taskrun.value }}"
            - id: 1-1-1_return
              type: io.kestra.plugin.core.debug.Return
              format: >-
                return-{{ outputs['1-1-1_output'][parents[1].taskrun.value][parents[0].taskrun.value][taskrun.value].value }}
""")
    assert sim.drive() is State.SUCCESS
    assert len(sim.runs("1-1-1_return")) == 8
    assert "return-v12-v22-v32" in _values(sim, "1-1-1_return")
    assert outputs_of(sim.view)["1-1-1_output"]["v11"]["v21"]["v31"] == {"value": "v11-v21-v31"}


def test_switch_in_foreach_parents_include_flowable_outputs():
    # Kestra's each-switch.yaml (nested part)
    sim = Sim("""
id: each-switch
namespace: tests
tasks:
  - id: 2_each
    type: io.kestra.plugin.core.flow.ForEach
    values: '["a", "b"]'
    tasks:
      - id: 2-1_switch
        type: io.kestra.plugin.core.flow.Switch
        value: "{{taskrun.value}}"
        cases:
          a:
            - {id: letter-a, type: io.kestra.plugin.core.debug.Return, format: "{{ parent.outputs.value }}"}
          b:
            - id: 2-1_each
              type: io.kestra.plugin.core.flow.ForEach
              values: '["1", "2"]'
              tasks:
              - id: 2-1-1_switch
                type: io.kestra.plugin.core.flow.Switch
                value: "{{taskrun.value}}"
                cases:
                  1:
                    - id: number-1
                      type: io.kestra.plugin.core.debug.Return
                      format: "{{parents[0].taskrun.value}}"
                  2:
                    - id: number-2
                      type: io.kestra.plugin.core.debug.Return
                      format: "{{parents[0].taskrun.value}} {{parents[1].taskrun.value}}"
""")
    assert sim.drive() is State.SUCCESS
    assert _values(sim, "letter-a") == ["a"]
    assert _values(sim, "number-1") == ["1"] and _values(sim, "number-2") == ["2 b"]
    outputs = outputs_of(sim.view)
    assert outputs["number-2"] == {"b": {"2": {"value": "2 b"}}}
    assert outputs["2-1_switch"]["b"] == {"value": "b", "defaults": False}
    parents = parents_of(sim.view, sim.runs("number-2")[0])
    assert parents == [
        {"taskrun": {"value": "2"}, "outputs": {"value": "2", "defaults": False}},
        {"taskrun": {"value": "b"}, "outputs": {"value": "b", "defaults": False}},
    ]  # the ForEach task runs have neither value nor outputs: skipped


def test_taskrun_value_and_parent_in_the_context():
    sim = Sim("""
id: ctx
namespace: tests
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: ["x"]
    tasks:
      - id: seq
        type: io.kestra.plugin.core.flow.Sequential
        tasks:
          - {id: leaf, type: io.kestra.plugin.core.log.Log, message: m}
""")
    sim.drive()
    leaf = sim.runs("leaf")[0]
    ctx = expression_context(sim.flow, sim.execution, sim.view, sim.tasks["leaf"], leaf)
    assert ctx["taskrun"]["value"] is None
    assert ctx["parent"] == {"taskrun": {"value": "x"}} and ctx["parents"] == [ctx["parent"]]
    top = expression_context(sim.flow, sim.execution, sim.view, sim.tasks["each"], sim.run_of("each"))
    assert top["parents"] == [] and "parent" not in top


def test_foreach_inside_parallel_inside_if_with_loop_outputs():
    sim = Sim("""
id: nesting
namespace: tests
tasks:
  - id: if
    type: io.kestra.plugin.core.flow.If
    condition: "{{ 1 == 1 }}"
    then:
      - id: par
        type: io.kestra.plugin.core.flow.Parallel
        tasks:
          - id: each
            type: io.kestra.plugin.core.flow.ForEach
            values: [1, 2]
            concurrencyLimit: 0
            tasks:
              - {id: ret, type: io.kestra.plugin.core.debug.Return, format: "r{{ taskrun.value }}"}
          - {id: side, type: io.kestra.plugin.core.debug.Return, format: side}
  - id: sum
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.ret['1'].value }}+{{ outputs.ret['2'].value }}+{{ outputs.side.value }}"
""")
    assert sim.drive() is State.SUCCESS
    assert _values(sim, "sum") == ["r1+r2+side"]


def test_flow_errors_can_hold_nested_flowables():
    # Kestra's errors.yaml, without the errorLogs() log line
    sim = Sim("""
id: errors
namespace: tests
tasks:
  - {id: failed, type: io.kestra.plugin.core.execution.Fail}
errors:
  - id: t3
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: t3-t1
        type: io.kestra.plugin.core.flow.Parallel
        tasks:
          - id: t3-t1-t1
            type: io.kestra.plugin.core.flow.Parallel
            tasks:
              - {id: last, type: io.kestra.plugin.core.log.Log, message: "{{ task.id }}"}
""")
    assert sim.drive() is State.FAILED
    assert sim.ids() == ["failed", "t3", "t3-t1", "t3-t1-t1", "last"]
    assert sim.state_of("t3") is State.SUCCESS


def test_a_large_loop_decides_in_reasonable_time():
    import time

    values = list(range(1500))
    sim = Sim(f"""
id: big
namespace: tests
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: {values}
    concurrencyLimit: 0
    tasks:
      - {{id: ret, type: io.kestra.plugin.core.debug.Return, format: "{{{{ taskrun.value }}}}"}}
""")
    began = time.monotonic()
    assert len(sim.advance()) == 1501
    assert time.monotonic() - began < 10
