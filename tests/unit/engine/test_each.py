"""EachSequential and EachParallel (Kestra's deprecated loops)."""

from __future__ import annotations

from controlplane.engine.flowables import each_parallel, each_sequential
from controlplane.model import State
from tests.unit.engine.sim import Sim, flow_of


def _flow(kind: str, extra: str = "", value: str = "'[\"a\", \"b\"]'") -> str:
    return f"""
id: each
namespace: tests
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.{kind}
    value: {value}
    {extra}
    tasks:
      - {{id: one, type: io.kestra.plugin.core.log.Log, message: "{{{{ taskrun.value }}}}"}}
      - {{id: two, type: io.kestra.plugin.core.log.Log, message: "{{{{ taskrun.value }}}}"}}
"""


def test_each_sequential_runs_value_after_value():
    sim = Sim(_flow("EachSequential"))
    order = []
    while True:
        created = sim.advance()
        order += sim.ids(created)
        if sim.done is not None:
            break
        for tr in sim.queued():
            sim.finish_run(tr)
    assert order == ["each", "one[a]", "two[a]", "one[b]", "two[b]"]
    assert sim.done is State.SUCCESS


def test_each_sequential_accepts_a_yaml_list_and_stores_values_once():
    task = flow_of(_flow("EachSequential", value="[1, {k: v}]")).tasks[0]
    assert each_sequential.prepare(task, lambda value, prop: value).properties == {"values": ["1", '{"k":"v"}']}


def test_each_parallel_starts_every_task_of_every_value():
    sim = Sim(_flow("EachParallel"))
    assert sim.ids(sim.advance()) == ["each", "one[a]", "two[a]", "one[b]", "two[b]"]
    assert sim.drive() is State.SUCCESS


def test_each_parallel_concurrent_limits_unfinished_children():
    sim = Sim(_flow("EachParallel", "concurrent: 3"))
    assert sim.ids(sim.advance()) == ["each", "one[a]", "two[a]", "one[b]"]
    sim.finish("two", "a")
    assert sim.ids(sim.advance()) == ["two[b]"]
    task = flow_of(_flow("EachParallel", "concurrent: 3")).tasks[0]
    assert each_parallel.prepare(task, lambda value, prop: value).properties == {
        "values": ["a", "b"], "concurrent": 3
    }


def test_each_parallel_integer_values_are_stringified():
    sim = Sim(_flow("EachParallel", value="[1, 2, 3]"))
    assert sim.drive() is State.SUCCESS
    assert [tr.value for tr in sim.runs("one")] == ["1", "2", "3"]


def test_each_parallel_failure_fails_it_after_running_children_end():
    sim = Sim(_flow("EachParallel", "concurrent: 2"))
    sim.advance()
    sim.finish("one", "a", state=State.FAILED)
    assert sim.advance() == []
    assert sim.state_of("each") is State.RUNNING
    sim.finish("two", "a")
    sim.advance()
    assert sim.state_of("each") is State.FAILED and len(sim.runs()) == 3
