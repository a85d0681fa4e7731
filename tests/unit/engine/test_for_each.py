"""ForEach: values, the concurrencyLimit sliding window, loop values on children, failures."""

from __future__ import annotations

import pytest

from controlplane.engine.flowables import for_each
from controlplane.engine.flowables.loop import resolve_values
from controlplane.engine.plan import FlowableError
from controlplane.model import State
from tests.unit.engine.sim import Sim, flow_of


def _flow(values: str = '["a", "b", "c"]', limit: str = "", tasks: str = "") -> str:
    tasks = tasks or """
      - id: one
        type: io.kestra.plugin.core.debug.Return
        format: "{{ taskrun.value }}"
      - id: two
        type: io.kestra.plugin.core.log.Log
        message: "{{ taskrun.value }}\""""
    return f"""
id: loop
namespace: tests
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: {values}
    {limit}
    tasks:{tasks}
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: after
"""


@pytest.mark.parametrize(
    ("rendered", "values"),
    [
        ('["a", "b"]', ["a", "b"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2.5, True], ["1", "2.5", "true"]),
        ('[{"key": "k", "value": {"sub": 1}}]', ['{"key":"k","value":{"sub":1}}']),
        (["x", "y", "x"], ["x", "y"]),  # duplicates dropped, as Kestra's distinct()
        ("[]", []),
    ],
)
def test_values_are_strings_and_json_text(rendered, values):
    assert resolve_values(rendered, task_id="each", prop="values") == values


@pytest.mark.parametrize(
    ("rendered", "message"),
    [
        ('[1, null, {"key": "a"}]', "Found '1' null values on Each, with values=[1,null,{\"key\":\"a\"}]"),
        ("not json", "task 'each': property 'values' must be a list or a JSON array"),
        ('{"a": 1}', "maps are not supported"),
        (3, "must be a list or a JSON array"),
    ],
)
def test_bad_values_fail_the_loop(rendered, message):
    with pytest.raises(FlowableError, match=message.replace("[", r"\[").replace("{", r"\{")):
        resolve_values(rendered, task_id="each", prop="values")


def test_default_limit_runs_every_task_of_every_value_in_order():
    sim = Sim(_flow())
    assert sim.ids(sim.advance()) == ["each", "one[a]"]
    order = []
    while sim.done is None:
        for tr in sim.queued():
            order.append(sim.ids([tr])[0])
            sim.finish_run(tr)
        sim.advance()
    assert order == ["one[a]", "two[a]", "one[b]", "two[b]", "one[c]", "two[c]", "after"]
    assert sim.done is State.SUCCESS


def test_limit_zero_starts_every_group_at_once_tasks_stay_in_order():
    sim = Sim(_flow(limit="concurrencyLimit: 0"))
    assert sim.ids(sim.advance()) == ["each", "one[a]", "one[b]", "one[c]"]
    sim.finish("one", "b")
    assert sim.ids(sim.advance()) == ["two[b]"]


def test_limit_n_is_a_sliding_window_not_batches():
    sim = Sim(_flow('["a", "b", "c", "d"]', "concurrencyLimit: 2"))
    assert sim.ids(sim.advance()) == ["each", "one[a]", "one[b]"]
    sim.finish("one", "a")
    assert sim.ids(sim.advance()) == ["two[a]"]  # a group stays in progress between its tasks
    sim.finish("one", "b")
    assert sim.ids(sim.advance()) == ["two[b]"]
    sim.finish("two", "b")
    assert sim.ids(sim.advance()) == ["one[c]"]  # b ended: c starts while a is still running
    sim.finish("two", "a")
    assert sim.ids(sim.advance()) == ["one[d]"]
    assert sim.drive() is State.SUCCESS


def test_children_carry_the_value_and_outputs_are_keyed_by_it():
    sim = Sim(_flow(tasks="""
      - id: one
        type: io.kestra.plugin.core.debug.Return
        format: "v={{ taskrun.value }}"
      - id: seq
        type: io.kestra.plugin.core.flow.Sequential
        tasks:
          - id: inner
            type: io.kestra.plugin.core.debug.Return
            format: "{{ parent.taskrun.value }}:{{ outputs.one[parent.taskrun.value].value }}\""""))
    assert sim.drive() is State.SUCCESS
    assert sim.run_of("inner").value is None  # only the loop's direct children carry the value
    assert sim.run_of("seq", "b").value == "b"
    assert [tr.outputs["value"] for tr in sim.runs("inner")] == ["a:v=a", "b:v=b", "c:v=c"]


def test_empty_values_end_success_without_children():
    sim = Sim(_flow("'[]'"))
    assert sim.drive() is State.SUCCESS
    assert sim.ids() == ["each", "after"]


def test_null_value_fails_the_foreach_without_children():
    sim = Sim(_flow("'[1, null]'"))
    assert sim.drive() is State.FAILED
    assert sim.ids() == ["each"]
    assert "Found '1' null values on Each" in sim.errors["tr1"]


def test_a_failing_group_stops_new_groups_and_runs_local_errors():
    sim = Sim(_flow('["a", "b", "c"]', "concurrencyLimit: 2\n    errors:\n"
                    "      - {id: handler, type: io.kestra.plugin.core.log.Log, message: h}"))
    sim.advance()
    sim.finish("one", "a", state=State.FAILED)
    assert sim.ids(sim.advance()) == ["handler"]  # no two[a], no one[c]
    sim.finish("handler")
    sim.finish("one", "b")
    assert sim.advance() == []  # b's group does not go on either
    assert sim.state_of("each") is State.FAILED and sim.done is State.FAILED


def test_values_and_limit_are_rendered_once_at_start():
    task = flow_of(_flow('"{{ inputs.list }}"', "concurrencyLimit: 3")).tasks[0]
    seen = []

    def render(value, prop):
        seen.append(prop)
        return ["x", 2] if prop == "values" else value

    prepared = for_each.prepare(task, render)
    assert prepared.properties == {"values": ["x", "2"], "concurrencyLimit": 3}
    assert prepared.outputs is None  # ForEach has no outputs: it must not shift parents[i]
    assert seen == ["values", "concurrencyLimit"]


def test_kill_inside_a_loop_ends_it_killed():
    sim = Sim(_flow(limit="concurrencyLimit: 0"))
    sim.advance()
    sim.pick("one", "a")
    sim.kill()
    sim.finish("one", "a", state=State.KILLED)
    sim.advance()
    assert sim.state_of("each") is State.KILLED and sim.done is State.KILLED
    assert len(sim.runs()) == 4
