"""Pure helpers of the pages: namespace tree, table rows, task-state summaries, log filters."""

from __future__ import annotations

from datetime import timedelta

from dashboard.model import (
    declared_triggers,
    execution_rows,
    file_rows,
    filter_logs,
    fleet_rows,
    format_duration,
    labels_text_to_dict,
    namespace_entries,
    state_color,
    summarise_task_states,
    worker_rows_from_executions,
)
from tests.unit.dashboard.factories import at, attempt, execution, task_run
from worker_sdk.types import Flow, LogEntry, LogLevel, State


def test_namespace_tree_lists_every_prefix_depth_first_with_totals() -> None:
    entries = namespace_entries(["company.team", "company.team", "company.data.ml", "acme", "company"])
    assert [(e.namespace, e.depth, e.flow_count, e.total) for e in entries] == [
        ("acme", 0, 1, 1),
        ("company", 0, 1, 4),
        ("company.data", 1, 0, 1),
        ("company.data.ml", 2, 1, 1),
        ("company.team", 1, 2, 2),
    ]
    assert entries[3].label == "    └ ml (1)"
    assert namespace_entries([]) == []


def test_task_state_summary_prefers_unfinished_then_kestra_priority() -> None:
    runs = [
        task_run("1", "a", (State.CREATED, 0), (State.SUCCESS, 1)),
        task_run("2", "a", (State.CREATED, 0), (State.FAILED, 1)),
        task_run("3", "a", (State.CREATED, 0), (State.SUCCESS, 1)),
        task_run("4", "b", (State.CREATED, 0), (State.SUCCESS, 1)),
        task_run("5", "b", (State.CREATED, 0), (State.RUNNING, 1)),
        task_run("6", "c", (State.CREATED, 0), (State.WARNING, 1)),
        task_run("7", "c", (State.CREATED, 0), (State.KILLED, 1)),
    ]
    summary = summarise_task_states(runs)
    assert {k: v.state for k, v in summary.items()} == {
        "a": State.FAILED,
        "b": State.RUNNING,
        "c": State.KILLED,
    }
    assert summary["a"].runs == 3 and summary["a"].caption == "3 runs: 2 SUCCESS, 1 FAILED"
    single = summarise_task_states(runs[3:4])["b"]
    assert single.caption == "SUCCESS"


def test_execution_rows_format_dates_durations_and_labels() -> None:
    done = execution([], (State.CREATED, 0), (State.SUCCESS, 90), id="done", labels={"team": "data"})
    running = execution([], (State.CREATED, 0), (State.RUNNING, 1), id="run")
    rows = execution_rows([done, running], now=at(3725))
    assert rows[0] == {
        "id": "done",
        "namespace": "company.team",
        "flow": "flow",
        "revision": 0,
        "state": "SUCCESS",
        "start (UTC)": "2026-01-01 12:00:00",
        "end (UTC)": "2026-01-01 12:01:30",
        "duration": "1 min 30 s",
        "labels": "team=data",
    }
    assert rows[1]["end (UTC)"] == "" and rows[1]["duration"] == "1 h 02 min"  # measured to now


def test_format_duration_and_state_colour() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (0.25, 12.34, 125, 7300)] == [
        "250 ms",
        "12.3 s",
        "2 min 05 s",
        "2 h 01 min",
    ]
    assert format_duration(None) == "" and format_duration(timedelta(seconds=-1)) == "0 ms"
    assert state_color("FAILED") == state_color(State.FAILED) != state_color("SUCCESS")
    assert state_color("NOT-A-STATE") == state_color(State.UNSPECIFIED)


def _line(seq: int, level: LogLevel, message: str, task: str | None = "t") -> LogEntry:
    return LogEntry(sequence=seq, execution_id="ex", level=level, message=message, task_id=task)


def test_filter_logs_by_level_search_and_task() -> None:
    lines = [
        _line(1, LogLevel.DEBUG, "connecting"),
        _line(2, LogLevel.INFO, "Loaded 42 rows", "load"),
        _line(3, LogLevel.WARN, "slow query", "load"),
        _line(4, LogLevel.ERROR, "Connection refused", "save"),
    ]
    assert [e.sequence for e in filter_logs(lines, min_level="WARN")] == [3, 4]
    assert [e.sequence for e in filter_logs(lines, min_level=LogLevel.UNSPECIFIED)] == [1, 2, 3, 4]
    assert [e.sequence for e in filter_logs(lines, search="CONNECT")] == [1, 4]  # case-insensitive
    assert [e.sequence for e in filter_logs(lines, search="save")] == [4]  # matches the task id too
    assert [e.sequence for e in filter_logs(lines, task_id="load", min_level="info")] == [2, 3]


def test_workers_seen_in_attempts_with_running_counts_and_types() -> None:
    runs = [
        task_run("1", "a", (State.CREATED, 0), (State.SUCCESS, 2), attempts=[attempt(1, "w1", 1, 2)]),
        task_run(
            "2", "b", (State.CREATED, 0), (State.RUNNING, 3), task_type="io.kestra.plugin.core.flow.Sleep",
            attempts=[attempt(1, "w1", 2, 3, State.FAILED), attempt(2, "w2", 5, None)],
        ),
        task_run("3", "c", (State.CREATED, 0)),  # never claimed
    ]  # fmt: skip
    rows = worker_rows_from_executions([execution(runs)])
    assert [r["worker"] for r in rows] == ["w2", "w1"]  # most recently seen first
    assert rows[0] == {
        "worker": "w2",
        "running now": 1,
        "attempts": 1,
        "task types": "Sleep",
        "last seen (UTC)": "2026-01-01 12:00:05",
    }
    assert rows[1]["attempts"] == 2 and rows[1]["task types"] == "Log, Sleep" and rows[1]["running now"] == 0


def test_labels_text_parsing() -> None:
    assert labels_text_to_dict("a=1\n b = two \n\n") == ({"a": "1", "b": "two"}, [])
    labels, errors = labels_text_to_dict("ok=1, broken, =x")
    assert labels == {"ok": "1"} and errors == [
        "label 'broken': expected key=value",
        "label '=x': expected key=value",
    ]


def test_declared_triggers_read_from_the_source() -> None:
    flow = Flow(
        namespace="n",
        id="f",
        revision=1,
        source="""
id: f
namespace: n
tasks: []
triggers:
  - {id: nightly, type: io.kestra.plugin.core.trigger.Schedule, cron: "0 2 * * *"}
  - {id: hook, type: io.kestra.plugin.core.trigger.Webhook, key: abc, disabled: true}
  - not a trigger
""",
    )
    rows = declared_triggers(flow)
    assert [(r["trigger"], r["type"], r["cron"], r["disabled"]) for r in rows] == [
        ("nightly", "Schedule", "0 2 * * *", False),
        ("hook", "Webhook", "", True),
    ]
    assert declared_triggers(Flow(namespace="n", id="f", revision=1, source=": : bad")) == []


def test_fleet_rows_order_states_and_show_slots_heartbeat_age_and_types() -> None:
    listing = [
        {"id": "w-dead", "state": "DEAD", "hostname": "h2", "concurrency": 4, "last_heartbeat_at": "2026-01-01T11:00:00Z"},
        {
            "id": "w-live", "state": "ACTIVE", "hostname": "h1", "sdk": "python/0.1.0", "worker_group": "",
            "concurrency": 8, "running_task_runs": 3, "last_heartbeat_at": "2026-01-01T12:00:05Z",
            "task_types": ["io.kestra.plugin.core.log.Log", "com.acme.RowCount"],
            "labels": [{"key": "zone", "value": "eu"}],
        },
    ]  # fmt: skip
    rows = fleet_rows(listing, now=at(7))
    assert [r["worker"] for r in rows] == ["w-live", "w-dead"]
    assert rows[0] == {
        "worker": "w-live",
        "state": "ACTIVE",
        "host": "h1",
        "sdk": "python/0.1.0",
        "group": "default",
        "slots in use": "3/8",
        "last heartbeat (UTC)": "2026-01-01 12:00:05",
        "heartbeat age": "2.0 s",
        "task types": "Log, RowCount",
        "labels": "zone=eu",
    }
    assert (
        rows[1]["state"] == "DEAD"
        and rows[1]["heartbeat age"] == "1 h 00 min"
        and rows[1]["slots in use"] == "0/4"
    )


def test_file_rows_name_the_task_that_wrote_each_file() -> None:
    class F:
        def __init__(self, uri: str, size: int, task_run_id: str | None) -> None:
            self.uri, self.size, self.task_run_id = uri, size, task_run_id

    runs = [task_run("tr1", "make", (State.SUCCESS, 0), value="a")]
    rows = file_rows(
        [
            F("kestra:///n/f/executions/ex/tasks/make/tr1/out.csv", 2048, "tr1"),
            F("kestra:///n/f/in.txt", 10, None),
        ],
        runs,
    )
    assert rows == [
        {
            "file": "out.csv",
            "task": "make [a]",
            "size": "2.0 KiB",
            "uri": "kestra:///n/f/executions/ex/tasks/make/tr1/out.csv",
        },
        {"file": "in.txt", "task": "(input)", "size": "10 B", "uri": "kestra:///n/f/in.txt"},
    ]
