"""Trigger conditions: execution conditions, Not/Or, expressions and calendar conditions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.scheduler.conditions import ConditionContext, all_hold, check_conditions, holds

C = "io.kestra.plugin.core.condition."


def _ctx(date: str = "2026-06-15T10:00:00Z", execution: dict | None = None) -> ConditionContext:
    return ConditionContext(variables={"trigger": {"date": date}}, execution=execution,
                            now=datetime(2026, 6, 15, tzinfo=UTC))


UPSTREAM = {"id": "e1", "namespace": "company.team.sales", "flowId": "extract", "state": "SUCCESS",
            "labels": {"env": "prod", "team": "data"}, "outputs": {"rows": 12}}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"type": C + "ExecutionFlow", "namespace": "company.team.sales", "flowId": "extract"}, True),
        ({"type": "io.kestra.core.models.conditions.types.ExecutionFlowCondition",
          "namespace": "company.team.sales", "flowId": "load"}, False),
        ({"type": C + "ExecutionNamespace", "namespace": "company.team", "prefix": True}, True),
        ({"type": C + "ExecutionNamespace", "namespace": "company.team"}, False),
        ({"type": C + "ExecutionNamespace", "namespace": ".sales", "comparison": "SUFFIX"}, True),
        ({"type": C + "ExecutionStatus", "in": ["SUCCESS", "WARNING"]}, True),
        ({"type": C + "ExecutionStatus", "notIn": ["SUCCESS"]}, False),
        ({"type": C + "ExecutionLabels", "labels": {"env": "prod"}}, True),
        ({"type": C + "ExecutionLabels", "labels": [{"key": "env", "value": "dev"}]}, False),
        ({"type": C + "ExecutionOutputs", "expression": "{{ outputs.rows > 10 }}"}, True),
        ({"type": C + "Expression", "expression": "{{ trigger.date is defined }}"}, True),
        ({"type": C + "Not", "conditions": [{"type": C + "ExecutionStatus", "in": ["FAILED"]}]}, True),
        ({"type": C + "Or", "conditions": [{"type": C + "ExecutionStatus", "in": ["FAILED"]},
                                          {"type": C + "ExecutionLabels", "labels": {"team": "data"}}]}, True),
    ],
)
def test_execution_conditions(condition, expected):
    assert holds(condition, _ctx(execution=UPSTREAM)) is expected


@pytest.mark.parametrize(
    ("condition", "date", "expected"),
    [
        ({"type": C + "DayWeek", "dayOfWeek": "MONDAY"}, "2026-06-15T10:00:00Z", True),
        ({"type": C + "DayWeek", "dayOfWeek": "TUESDAY"}, "2026-06-15T10:00:00Z", False),
        ({"type": C + "Weekend"}, "2026-06-13T10:00:00Z", True),
        ({"type": C + "Weekend"}, "2026-06-15T10:00:00Z", False),
        ({"type": C + "DayWeekInMonth", "dayOfWeek": "MONDAY", "dayInMonth": "FIRST"}, "2026-06-01T10:00:00Z", True),
        ({"type": C + "DayWeekInMonth", "dayOfWeek": "MONDAY", "dayInMonth": "THIRD"}, "2026-06-15T10:00:00Z", True),
        ({"type": C + "DayWeekInMonth", "dayOfWeek": "MONDAY", "dayInMonth": "LAST"}, "2026-06-29T10:00:00Z", True),
        ({"type": C + "DayWeekInMonth", "dayOfWeek": "MONDAY", "dayInMonth": "LAST"}, "2026-06-22T10:00:00Z", False),
        ({"type": C + "TimeBetween", "after": "09:00:00", "before": "11:00:00"}, "2026-06-15T10:00:00Z", True),
        ({"type": C + "TimeBetween", "after": "11:00:00"}, "2026-06-15T10:00:00Z", False),
        # Local time of the trigger date in its own offset: 10:00+02:00 is 10:00.
        ({"type": C + "TimeBetween", "before": "10:30:00"}, "2026-06-15T10:00:00+02:00", True),
        ({"type": C + "DateTimeBetween", "after": "2026-06-01T00:00:00Z", "before": "2026-07-01T00:00:00Z"},
         "2026-06-15T10:00:00Z", True),
        ({"type": C + "DateTimeBetween", "before": "2026-06-01T00:00:00Z"}, "2026-06-15T10:00:00Z", False),
        ({"type": C + "PublicHoliday", "country": "FR"}, "2026-07-14T10:00:00Z", True),
        ({"type": C + "PublicHoliday", "country": "FR"}, "2026-07-15T10:00:00Z", False),
        ({"type": C + "PublicHoliday", "country": "US"}, "2026-07-04T10:00:00Z", True),
        ({"type": C + "Not", "conditions": [{"type": C + "PublicHoliday", "country": "FR"}]},
         "2026-12-25T08:00:00Z", False),
    ],
)
def test_calendar_conditions_check_the_trigger_date(condition, date, expected):
    assert holds(condition, _ctx(date)) is expected


def test_calendar_condition_with_its_own_date_expression():
    cond = {"type": C + "DayWeek", "dayOfWeek": "SATURDAY", "date": "{{ trigger.date | dateAdd(-2, 'DAYS') }}"}
    assert holds(cond, _ctx("2026-06-15T10:00:00Z")) is True


def test_all_conditions_must_hold():
    conds = [{"type": C + "DayWeek", "dayOfWeek": "MONDAY"}, {"type": C + "Weekend"}]
    assert all_hold(conds, _ctx()) is False
    assert all_hold([], _ctx()) is True


def test_validation_names_the_field_and_the_problem():
    issues = check_conditions([
        {"type": C + "DayWeek"},
        {"type": C + "Nope"},
        {"type": C + "ExecutionStatus", "in": ["DONE"]},
        {"type": C + "TimeBetween", "after": "25:00"},
        {"type": C + "PublicHoliday", "country": "ZZ"},
        {"type": C + "Not", "conditions": [{"type": C + "DayWeekInMonth", "dayOfWeek": "MONDAY", "dayInMonth": "FIFTH"}]},
    ], "triggers[0].conditions", "flow a.b: trigger 's': ", trigger_kind="schedule")
    text = [f"{i.path}: {i.message}" for i in issues]
    assert "triggers[0].conditions[0].dayOfWeek: flow a.b: trigger 's': condition DayWeek: 'dayOfWeek' is required" in text
    assert any(t.startswith("triggers[0].conditions[1].type") and "unknown condition type" in t for t in text)
    assert any(t.startswith("triggers[0].conditions[2].in") and "unknown state 'DONE'" in t for t in text)
    assert any(t.startswith("triggers[0].conditions[2].type") and "only applies to a Flow trigger" in t for t in text)
    assert any(t.startswith("triggers[0].conditions[3].after") for t in text)
    assert any(t.startswith("triggers[0].conditions[4].country") for t in text)
    assert any(t.startswith("triggers[0].conditions[5].conditions[0].dayInMonth") for t in text)
