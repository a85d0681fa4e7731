"""MultipleCondition window state: events are read out of date order (two replicas, look-back
passes), so an event older than the one that met the window, or of an older window, does not
count again."""

from __future__ import annotations

from datetime import UTC, datetime

from controlplane.scheduler.service import Scheduler

COND = {
    "id": "window", "type": "io.kestra.core.models.conditions.types.MultipleCondition",
    "window": "PT1H", "windowAdvance": "PT0S",
    "conditions": {
        "a": {"type": "io.kestra.plugin.core.condition.ExecutionFlow", "namespace": "n", "flowId": "part-a"},
        "b": {"type": "io.kestra.plugin.core.condition.ExecutionFlow", "namespace": "n", "flowId": "part-b"},
    },
}


def _event(state: dict, flow_id: str, minute: int, hour: int = 10) -> tuple[bool, list[str]]:
    counted: list[str] = []
    met = Scheduler(None, None, None)._multiple(
        COND, state, {}, {"namespace": "n", "flowId": flow_id, "state": "SUCCESS"},
        datetime(2026, 1, 1, hour, minute, tzinfo=UTC), counted)
    return met, counted


def test_met_once_then_an_earlier_event_read_late_does_not_count_in_the_reset_window():
    state: dict = {}
    assert _event(state, "other", 1) == (False, [])  # opens the window: matches no member
    assert _event(state, "part-a", 2) == (False, ["window"])
    assert state["window"]["matched"] == ["a"]
    assert _event(state, "part-b", 5) == (True, ["window"])
    assert state["window"]["matched"] == [] and state["window"]["after"].startswith("2026-01-01T10:05")
    assert _event(state, "part-a", 3) == (False, [])  # before the fire: consumed by it
    assert _event(state, "part-b", 6) == (False, ["window"])
    assert state["window"]["matched"] == ["b"]
    assert _event(state, "part-a", 7) == (True, ["window"])


def test_an_event_of_an_older_window_leaves_the_current_window_alone():
    state: dict = {}
    _event(state, "part-a", 2, hour=11)
    assert _event(state, "part-b", 59, hour=10) == (False, [])
    assert state["window"]["window"].startswith("2026-01-01T11:00") and state["window"]["matched"] == ["a"]
    assert _event(state, "part-b", 3, hour=11) == (True, ["window"])
    assert _event(state, "part-a", 1, hour=12) == (False, ["window"])  # a new window starts empty
    assert state["window"]["matched"] == ["a"]
