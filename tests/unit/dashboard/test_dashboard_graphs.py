"""Flow topology from YAML source, and its Graphviz rendering coloured by task-run state."""

from __future__ import annotations

from dashboard.graphs import END, START, flow_topology, topology_dot
from dashboard.model import STATE_COLORS, summarise_task_states
from tests.unit.dashboard.factories import task_run
from worker_sdk.types import State

CORE = "io.kestra.plugin.core"


def _edges(topo, style: str | None = None) -> set[tuple[str, str]]:
    return {(e.src, e.dst) for e in topo.edges if style is None or e.style == style}


def test_a_list_of_tasks_runs_in_sequence_between_start_and_end() -> None:
    topo = flow_topology(f"""
id: f
namespace: n
tasks:
  - {{id: a, type: {CORE}.log.Log, message: x}}
  - {{id: b, type: {CORE}.debug.Return, format: y}}
""")
    assert _edges(topo) == {(START, "a"), ("a", "b"), ("b", END)}
    assert topo.nodes["b"].type == "Return" and topo.nodes["b"].kind == "runnable"


def test_parallel_children_are_branches_and_join_on_the_next_task() -> None:
    topo = flow_topology(f"""
id: f
namespace: n
tasks:
  - id: par
    type: {CORE}.flow.Parallel
    tasks:
      - {{id: p1, type: {CORE}.log.Log, message: x}}
      - {{id: p2, type: {CORE}.log.Log, message: x}}
  - {{id: after, type: {CORE}.log.Log, message: x}}
""")
    assert {("par", "p1"), ("par", "p2"), ("p1", "after"), ("p2", "after")} <= _edges(topo)
    assert ("p1", "p2") not in _edges(topo)
    assert topo.nodes["p1"].cluster == "par" and topo.clusters == {"par": None}


def test_sequential_flowables_chain_their_children_and_nest_boxes() -> None:
    topo = flow_topology(f"""
id: f
namespace: n
tasks:
  - id: loop
    type: {CORE}.flow.ForEach
    values: [1, 2]
    tasks:
      - {{id: one, type: {CORE}.log.Log, message: x}}
      - id: inner
        type: {CORE}.flow.Sequential
        tasks:
          - {{id: deep, type: {CORE}.log.Log, message: x}}
""")
    assert {("loop", "one"), ("one", "inner"), ("inner", "deep"), ("deep", END)} <= _edges(topo)
    assert topo.clusters == {"loop": None, "inner": "loop"}
    assert topo.nodes["deep"].cluster == "inner"


def test_if_switch_and_their_fallthrough() -> None:
    topo = flow_topology(f"""
id: f
namespace: n
tasks:
  - id: check
    type: {CORE}.flow.If
    condition: "{{{{ true }}}}"
    then:
      - {{id: yes, type: {CORE}.log.Log, message: x}}
  - id: pick
    type: {CORE}.flow.Switch
    value: a
    cases:
      A:
        - {{id: case_a, type: {CORE}.log.Log, message: x}}
      B:
        - {{id: case_b, type: {CORE}.log.Log, message: x}}
    defaults:
      - {{id: other, type: {CORE}.log.Log, message: x}}
""")
    edges = _edges(topo)
    assert {("check", "yes"), ("yes", "pick"), ("check", "pick")} <= edges  # no else: straight on
    assert {("pick", "case_a"), ("pick", "case_b"), ("pick", "other")} <= edges
    assert {("case_a", END), ("case_b", END), ("other", END)} <= edges


def test_dag_items_follow_depends_on() -> None:
    topo = flow_topology(f"""
id: f
namespace: n
tasks:
  - id: dag
    type: {CORE}.flow.Dag
    tasks:
      - task: {{id: extract, type: {CORE}.log.Log, message: x}}
      - task: {{id: transform, type: {CORE}.log.Log, message: x}}
        dependsOn: [extract]
      - task: {{id: audit, type: {CORE}.log.Log, message: x}}
""")
    edges = _edges(topo)
    assert {("dag", "extract"), ("dag", "audit"), ("extract", "transform")} <= edges
    assert ("dag", "transform") not in edges
    assert {("transform", END), ("audit", END)} <= edges and ("extract", END) not in edges


def test_errors_and_finally_hang_off_dashed_edges() -> None:
    topo = flow_topology(f"""
id: f
namespace: n
tasks:
  - id: seq
    type: {CORE}.flow.Sequential
    tasks:
      - {{id: work, type: {CORE}.log.Log, message: x}}
    errors:
      - {{id: local_err, type: {CORE}.log.Log, message: x}}
errors:
  - {{id: alert, type: {CORE}.log.Log, message: x}}
finally:
  - {{id: cleanup, type: {CORE}.log.Log, message: x}}
""")
    dashed = _edges(topo, "dashed")
    assert {("seq", "local_err"), (START, "alert"), ("work", "cleanup")} <= dashed
    assert topo.clusters["errors"] is None and topo.nodes["alert"].cluster == "errors"
    assert topo.nodes["cleanup"].cluster == "finally"
    labels = {(e.src, e.dst): e.label for e in topo.edges}
    assert labels[(START, "alert")] == "on failure"


def test_an_unreadable_source_draws_only_start_and_end() -> None:
    for source in ("", "just text", "[1, 2]", "tasks: [oops"):
        topo = flow_topology(source)
        assert set(topo.nodes) == {START, END} and _edges(topo) == {(START, END)}


def test_dot_colours_nodes_by_task_run_state_and_marks_tasks_not_run() -> None:
    topo = flow_topology(f"""
id: f
namespace: n
tasks:
  - id: loop
    type: {CORE}.flow.ForEach
    values: [1, 2, 3]
    tasks:
      - {{id: step, type: {CORE}.log.Log, message: x}}
  - {{id: never, type: {CORE}.log.Log, message: x}}
""")
    runs = [task_run("l", "loop", (State.CREATED, 0), (State.FAILED, 3))] + [
        task_run(f"s{i}", "step", (State.CREATED, 0), (state, 1), parent="l")
        for i, state in enumerate([State.SUCCESS, State.SUCCESS, State.FAILED])
    ]
    dot = topology_dot(topo, summarise_task_states(runs)).source
    assert "cluster_loop" in dot
    assert STATE_COLORS[State.FAILED] in dot
    assert "3 runs: 2 SUCCESS, 1 FAILED" in dot
    assert "never\\nLog\\nnot run" in dot
    plain = topology_dot(topo).source
    assert "not run" not in plain and STATE_COLORS[State.FAILED] not in plain
