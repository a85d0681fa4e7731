"""Gantt and state-count chart builders: rows, nesting, colours, buckets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.charts import gantt_figure, gantt_rows, state_buckets, state_counts_figure, state_totals
from dashboard.model import STATE_COLORS
from tests.unit.dashboard.factories import at, attempt, execution, task_run
from worker_sdk.types import State

S, R, C, F = State.SUCCESS, State.RUNNING, State.CREATED, State.FAILED


def _loop_execution():
    runs = [
        task_run("t1", "first", (C, 0), (R, 0.5), (S, 1), attempts=[attempt(1, "w1", 0.5, 1)]),
        task_run("t2", "each", (C, 1), (R, 1), (S, 9), task_type="io.kestra.plugin.core.flow.ForEach"),
        task_run("t3", "ret", (C, 1), (R, 3), (S, 4), parent="t2", value="a", attempts=[attempt(1, "w1", 3, 4)]),
        task_run(
            "t4", "ret", (C, 1), (R, 2), (F, 5), parent="t2", value="b",
            attempts=[attempt(1, "w1", 2, 3, F), attempt(2, "w2", 4, 5, F)],
        ),
        task_run("t5", "last", (C, 9), (R, 9.5)),  # still running
    ]  # fmt: skip
    return execution(runs)


def test_gantt_rows_nest_children_under_their_flowable_in_creation_order() -> None:
    rows = gantt_rows(_loop_execution(), at(20))
    assert [(r.label, r.kind, r.depth) for r in rows] == [
        ("first", "task_run", 0),
        ("each", "task_run", 0),
        ("  ret [a]", "task_run", 1),
        ("  ret [b]", "task_run", 1),
        ("    ↳ attempt 1", "attempt", 2),
        ("    ↳ attempt 2", "attempt", 2),
        ("last", "task_run", 0),
    ]
    assert len({r.key for r in rows}) == len(rows)  # unique row keys


def test_gantt_rows_carry_dates_states_waiting_and_workers() -> None:
    rows = {r.key: r for r in gantt_rows(_loop_execution(), at(20))}
    ret_b = rows["t4"]
    assert (ret_b.start, ret_b.end, ret_b.run_start, ret_b.state) == (at(1), at(5), at(2), F)
    assert ret_b.waiting == timedelta(seconds=1) and ret_b.duration == timedelta(seconds=4)
    assert ret_b.worker == "w2"  # the last attempt's worker
    assert (rows["t4#2"].start, rows["t4#2"].end, rows["t4#2"].worker) == (at(4), at(5), "w2")
    last = rows["t5"]
    assert last.running and last.end == at(20)  # a running task run ends "now"
    assert not rows["t1"].running


def test_gantt_attempt_modes() -> None:
    ex = _loop_execution()
    assert sum(r.kind == "attempt" for r in gantt_rows(ex, at(20), attempts="all")) == 4
    assert sum(r.kind == "attempt" for r in gantt_rows(ex, at(20), attempts="none")) == 0
    with pytest.raises(ValueError, match="attempts must be"):
        gantt_rows(ex, at(20), attempts="some")


def test_gantt_rows_survive_orphans_and_parent_cycles() -> None:
    runs = [
        task_run("a", "a", (C, 0), parent="b"),
        task_run("b", "b", (C, 0), parent="a"),
        task_run("c", "c", (C, 0), parent="gone"),
    ]
    rows = gantt_rows(execution(runs), at(1))
    assert sorted(r.key for r in rows) == ["a", "b", "c"]
    assert next(r for r in rows if r.key == "c").depth == 0  # unknown parent: top level


def test_gantt_figure_one_trace_per_state_in_row_order_with_state_colours() -> None:
    rows = gantt_rows(_loop_execution(), at(20))
    fig = gantt_figure(rows)
    names = [t.name for t in fig.data]
    assert names == ["waiting", "SUCCESS", "FAILED", "RUNNING"]
    for trace in fig.data[1:]:
        assert trace.marker.color == STATE_COLORS[State(trace.name)]
    assert list(fig.layout.yaxis.tickvals) == [r.key for r in rows]
    assert list(fig.layout.yaxis.ticktext) == [r.label for r in rows]
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.xaxis.type == "date"
    failed = fig.data[names.index("FAILED")]
    # the running part of `ret [b]` starts after its 1 s wait and lasts 3 s
    index = list(failed.y).index("t4")
    assert failed.base[index] == at(2).isoformat() and failed.x[index] == pytest.approx(3000.0)
    assert fig.layout.height >= 22 * len(rows)


def test_state_buckets_pick_the_smallest_width_that_fits() -> None:
    points = [(at(0), S), (at(30), S), (at(65), F), (at(61), S), (None, S)]
    buckets = state_buckets(points, max_buckets=10)
    assert buckets.width == timedelta(seconds=10)
    assert buckets.starts[0] == at(0) and len(buckets.starts) == 7
    assert buckets.counts[S] == [1, 0, 0, 1, 0, 0, 1]
    assert buckets.counts[F] == [0, 0, 0, 0, 0, 0, 1]
    assert buckets.total == 4  # the undated point is left out
    coarse = state_buckets(points, max_buckets=2)
    assert coarse.width == timedelta(minutes=1) and coarse.counts[S] == [2, 1]


def test_state_buckets_edge_cases() -> None:
    assert state_buckets([]).total == 0 and state_buckets([]).starts == []
    one = state_buckets([(at(5), S)])
    assert one.counts == {S: [1]} and len(one.starts) == 1
    with pytest.raises(ValueError):
        state_buckets([(at(0), S)], max_buckets=0)
    far = state_buckets([(at(0), S), (at(400 * 86400), S)], max_buckets=3)
    assert far.width == timedelta(days=30)  # the largest width even when it gives more buckets


def test_state_totals_and_counts_figure() -> None:
    runs = [execution([], (C, 0), (S, 1), id=f"s{i}") for i in range(3)]
    runs.append(execution([], (C, 0), (F, 1), id="f"))
    assert state_totals(runs) == {S: 3, F: 1}
    fig = state_counts_figure(state_buckets([(at(0), S), (at(0), F), (at(1), S)]))
    assert [t.name for t in fig.data] == ["SUCCESS", "FAILED"]  # in STATE_COLORS order
    assert fig.layout.barmode == "stack"
    assert list(fig.data[0].y) == [2] and list(fig.data[1].y) == [1]
