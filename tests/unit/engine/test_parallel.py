"""Parallel: every child at once, the ``concurrent`` limit, failures and local errors."""

from __future__ import annotations

import pytest

from controlplane.engine.flowables import parallel
from controlplane.engine.plan import FlowableError
from controlplane.model import State
from tests.unit.engine.sim import Sim, flow_of


def _flow(concurrent: str = "", errors: str = "") -> str:
    children = "".join(
        f"""
      - id: c{i}
        type: io.kestra.plugin.core.log.Log
        message: "{{{{ task.id }}}}\"""" for i in range(1, 5)
    )
    return f"""
id: par
namespace: tests
tasks:
  - id: par
    type: io.kestra.plugin.core.flow.Parallel
    {concurrent}
    tasks:{children}
{errors}
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: after
"""


def test_all_children_start_at_once_and_the_next_task_waits_for_all():
    sim = Sim(_flow())
    assert sim.ids(sim.advance()) == ["par", "c1", "c2", "c3", "c4"]
    for child in ("c1", "c2", "c3"):
        sim.finish(child)
    assert sim.advance() == []
    sim.finish("c4")
    assert sim.ids(sim.advance()) == ["after"]
    assert sim.state_of("par") is State.SUCCESS


def test_concurrent_limit_is_a_sliding_window():
    sim = Sim(_flow("concurrent: 2"))
    assert sim.ids(sim.advance()) == ["par", "c1", "c2"]
    sim.finish("c2")
    assert sim.ids(sim.advance()) == ["c3"]
    sim.finish("c1")
    assert sim.ids(sim.advance()) == ["c4"]
    assert sim.drive() is State.SUCCESS


def test_concurrent_is_rendered_once_and_validated():
    task = flow_of(_flow("concurrent: \"{{ 1 + 1 }}\"")).tasks[0]
    assert parallel.prepare(task, lambda value, prop: 3 if value else None).properties == {"concurrent": 3}
    assert parallel.prepare(task, lambda value, prop: None).properties == {"concurrent": 0}
    with pytest.raises(FlowableError, match="task 'par': property 'concurrent' must be an integer >= 0"):
        parallel.prepare(task, lambda value, prop: "-1")


def test_a_failure_starts_nothing_new_runs_local_errors_and_waits_for_running_siblings():
    errors = """    errors:
      - id: handler
        type: io.kestra.plugin.core.log.Log
        message: handled"""
    sim = Sim(_flow("concurrent: 2", errors))
    sim.advance()
    sim.finish("c1", state=State.FAILED)
    assert sim.ids(sim.advance()) == ["handler"]  # c3 is not started; errors start at once
    sim.finish("handler")
    assert sim.advance() == [] and sim.state_of("par") is State.RUNNING  # c2 still runs
    sim.finish("c2")
    sim.advance()
    assert sim.state_of("par") is State.FAILED
    assert sim.done is State.FAILED and "after" not in sim.ids()


def test_warning_child_makes_a_warning_parallel():
    sim = Sim(_flow())
    sim.advance()
    sim.finish("c1", state=State.WARNING)
    for child in ("c2", "c3", "c4"):
        sim.finish(child)
    assert sim.drive() is State.WARNING
    assert sim.state_of("par") is State.WARNING


def test_disabled_children_never_run():
    sim = Sim("""
id: par
namespace: tests
tasks:
  - id: par
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - {id: a, type: io.kestra.plugin.core.log.Log, message: a, disabled: true}
      - {id: b, type: io.kestra.plugin.core.log.Log, message: b}
""")
    assert sim.drive() is State.SUCCESS
    assert sim.ids() == ["par", "b"]


def test_kill_starts_nothing_and_ends_killed_once_children_end():
    sim = Sim(_flow("concurrent: 2"))
    sim.advance()
    sim.pick("c1")
    sim.kill()  # c2 was queued: KILLED at once; c1 runs on
    assert sim.advance() == [] and sim.state_of("par") is State.RUNNING
    sim.finish("c1", state=State.KILLED)
    sim.advance()
    assert sim.state_of("par") is State.KILLED and sim.done is State.KILLED
    assert sim.ids() == ["par", "c1", "c2"]
