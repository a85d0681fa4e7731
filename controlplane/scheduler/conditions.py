"""Trigger conditions: validation at registration and evaluation when a trigger fires.

Kestra's condition types (FEATURES.md §4; canonical ``io.kestra.plugin.core.condition.*``,
legacy ``…Condition`` aliases resolved by :func:`controlplane.flows.catalogue.canonical_type`):

- on the upstream execution (Flow trigger): ``ExecutionFlow`` (namespace + flowId),
  ``ExecutionNamespace`` (``namespace`` with ``comparison`` EQUALS/PREFIX/SUFFIX, or legacy
  ``prefix: true``), ``ExecutionStatus`` (``in`` / ``notIn``), ``ExecutionLabels`` (every label
  present with that value), ``ExecutionOutputs`` (an expression over the execution's outputs);
- ``Expression`` (rendered, Kestra truthiness), ``Not`` (none of its ``conditions`` holds),
  ``Or`` (at least one holds);
- calendar, on ``date`` (default ``{{ trigger.date }}``): ``DayWeek``, ``DayWeekInMonth``,
  ``Weekend``, ``TimeBetween``, ``DateTimeBetween``, ``PublicHoliday`` (``holidays`` library).

``MultipleCondition`` (a time window over several executions) is handled by the scheduler
itself, since it needs stored state (:mod:`controlplane.scheduler.service`).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from controlplane.errors import ExpressionError, Issue
from controlplane.expressions import render
from controlplane.flows.catalogue import canonical_type
from controlplane.flows.durations import parse_duration
from controlplane.model.state import State

_CORE = "io.kestra.plugin.core.condition."
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
DAY_IN_MONTH = ("FIRST", "SECOND", "THIRD", "FOURTH", "LAST")
STATES = tuple(s.value for s in State)
_DEFAULT_DATE = "{{ trigger.date }}"

#: Condition type (short name) -> required properties.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "ExecutionFlow": ("namespace", "flowId"),
    "ExecutionNamespace": ("namespace",),
    "ExecutionStatus": (),
    "ExecutionLabels": ("labels",),
    "ExecutionOutputs": ("expression",),
    "Expression": ("expression",),
    "Not": ("conditions",),
    "Or": ("conditions",),
    "MultipleCondition": ("conditions",),
    "DayWeek": ("dayOfWeek",),
    "DayWeekInMonth": ("dayOfWeek", "dayInMonth"),
    "Weekend": (),
    "TimeBetween": (),
    "DateTimeBetween": (),
    "PublicHoliday": (),
}
#: Conditions that look at an upstream execution: only meaningful on a Flow trigger.
EXECUTION_CONDITIONS = frozenset(
    {"ExecutionFlow", "ExecutionNamespace", "ExecutionStatus", "ExecutionLabels", "ExecutionOutputs",
     "MultipleCondition"}
)


def short_type(type_name: str) -> str | None:
    """``ExecutionFlow`` for any accepted spelling of a core condition type; None if unknown."""
    canonical = canonical_type(type_name)
    if canonical.startswith(_CORE):
        short = canonical[len(_CORE):]
        if short in _REQUIRED:
            return short
    return None


def check_conditions(raw: Any, path: str, what: str, *, trigger_kind: str) -> list[Issue]:
    """Validate a ``conditions`` list (recursing into Not/Or/MultipleCondition).

    Args:
        raw: The list as written.
        path: Dotted path for the issues (``triggers[0].conditions``).
        what: Message prefix naming flow and trigger.
        trigger_kind: ``schedule``, ``flow`` or ``webhook``; execution conditions are refused
            outside a Flow trigger.

    Returns:
        Problems found (empty when valid).
    """
    if raw is None:
        return []
    items: list[tuple[str, Any]]
    if isinstance(raw, Mapping):  # MultipleCondition's map form: id -> condition
        items = [(f"{path}.{k}", v) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(raw)]
    else:
        return [Issue(path, f"{what}'conditions' must be a list of conditions")]
    issues: list[Issue] = []
    for where, cond in items:
        if not isinstance(cond, Mapping) or not isinstance(cond.get("type"), str):
            issues.append(Issue(where, f"{what}a condition must be a mapping with a 'type'"))
            continue
        short = short_type(cond["type"])
        if short is None:
            issues.append(Issue(f"{where}.type", f"{what}unknown condition type '{cond['type']}'"))
            continue
        if short in EXECUTION_CONDITIONS and trigger_kind != "flow":
            issues.append(Issue(f"{where}.type", f"{what}condition {short} only applies to a Flow trigger"))
        for prop in _REQUIRED[short]:
            if cond.get(prop) in (None, "", [], {}):
                issues.append(Issue(f"{where}.{prop}", f"{what}condition {short}: '{prop}' is required"))
        issues += _check_values(short, cond, where, what)
        if short in ("Not", "Or", "MultipleCondition") and cond.get("conditions"):
            issues += check_conditions(cond["conditions"], f"{where}.conditions", what, trigger_kind=trigger_kind)
    return issues


def _check_values(short: str, cond: Mapping[str, Any], where: str, what: str) -> list[Issue]:
    issues: list[Issue] = []

    def bad(prop: str, text: str) -> None:
        issues.append(Issue(f"{where}.{prop}", f"{what}condition {short}: {text}"))

    if short == "ExecutionStatus":
        for prop in ("in", "notIn"):
            values = cond.get(prop) or []
            if not isinstance(values, list):
                bad(prop, f"'{prop}' must be a list of states")
                continue
            for value in values:
                if value not in STATES:
                    bad(prop, f"unknown state '{value}'; one of {', '.join(STATES)}")
    if short == "ExecutionNamespace":
        comparison = cond.get("comparison")
        if comparison is not None and comparison not in ("EQUALS", "PREFIX", "SUFFIX"):
            bad("comparison", f"invalid comparison '{comparison}'; one of EQUALS, PREFIX, SUFFIX")
    if short in ("DayWeek", "DayWeekInMonth") and cond.get("dayOfWeek") not in (None, *DAYS):
        bad("dayOfWeek", f"invalid day '{cond.get('dayOfWeek')}'; one of {', '.join(DAYS)}")
    if short == "DayWeekInMonth" and cond.get("dayInMonth") not in (None, *DAY_IN_MONTH):
        bad("dayInMonth", f"invalid value '{cond.get('dayInMonth')}'; one of {', '.join(DAY_IN_MONTH)}")
    if short == "TimeBetween":
        for prop in ("after", "before"):
            if cond.get(prop) is not None:
                try:
                    _parse_time(cond[prop])
                except ValueError as exc:
                    bad(prop, str(exc))
    if short == "DateTimeBetween":
        for prop in ("after", "before"):
            value = cond.get(prop)
            if value is not None and not _is_template(value):
                try:
                    _parse_instant(value)
                except ValueError as exc:
                    bad(prop, str(exc))
    if short == "MultipleCondition":
        for prop in ("window", "windowAdvance"):
            if cond.get(prop) is not None:
                try:
                    parse_duration(str(cond[prop]))
                except ValueError as exc:
                    bad(prop, str(exc))
    if short == "PublicHoliday" and cond.get("country"):
        try:
            _holidays(str(cond["country"]), cond.get("subDivision"), 2024)
        except (NotImplementedError, KeyError, ValueError) as exc:
            bad("country", f"unknown country/subdivision: {exc}")
    return issues


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@dataclass
class ConditionContext:
    """What conditions look at.

    Attributes:
        variables: Expression variables (``trigger``, ``flow``, ``execution``, ``outputs``…).
        execution: For a Flow trigger, the upstream execution as
            ``{"id", "namespace", "flowId", "state", "labels", "outputs"}``; None otherwise.
        now: The evaluation date (the schedule's tick, or the current time).
        multiple: Callback for MultipleCondition (returns whether its window is complete);
            None where it does not apply.
    """

    variables: dict[str, Any]
    execution: dict[str, Any] | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    multiple: Callable[[Mapping[str, Any]], bool] | None = None


def all_hold(conditions: list[Mapping[str, Any]] | None, ctx: ConditionContext) -> bool:
    """True when every condition holds (Kestra ANDs a trigger's conditions).

    Raises:
        ExpressionError: a condition's expression or date cannot be rendered/read.
    """
    return all(holds(c, ctx) for c in conditions or [])


def holds(cond: Mapping[str, Any], ctx: ConditionContext) -> bool:
    """Evaluate one (validated) condition."""
    short = short_type(str(cond.get("type")))
    ex = ctx.execution or {}
    if short == "ExecutionFlow":
        return ex.get("namespace") == cond.get("namespace") and ex.get("flowId") == cond.get("flowId")
    if short == "ExecutionNamespace":
        ns, want = str(ex.get("namespace", "")), str(cond.get("namespace"))
        comparison = cond.get("comparison") or ("PREFIX" if cond.get("prefix") else "EQUALS")
        if comparison == "PREFIX":
            return ns.startswith(want)
        if comparison == "SUFFIX":
            return ns.endswith(want)
        return ns == want
    if short == "ExecutionStatus":
        state = ex.get("state")
        if cond.get("in") and state not in cond["in"]:
            return False
        return not (cond.get("notIn") and state in cond["notIn"])
    if short == "ExecutionLabels":
        return _labels_match(cond.get("labels"), ex.get("labels") or {})
    if short == "ExecutionOutputs":
        variables = {**ctx.variables, "outputs": ex.get("outputs") or {}}
        return truthy(render(cond["expression"], variables, where="condition ExecutionOutputs"))
    if short == "Expression":
        return truthy(render(cond["expression"], ctx.variables, where="condition Expression"))
    if short == "Not":
        return not any(holds(c, ctx) for c in _children(cond))
    if short == "Or":
        return any(holds(c, ctx) for c in _children(cond))
    if short == "MultipleCondition":
        if ctx.multiple is None:
            return False
        return ctx.multiple(cond)
    date = _date_of(cond, ctx)
    if short == "DayWeek":
        return DAYS[date.weekday()] == cond["dayOfWeek"]
    if short == "Weekend":
        return date.weekday() >= 5
    if short == "DayWeekInMonth":
        if DAYS[date.weekday()] != cond["dayOfWeek"]:
            return False
        which = cond["dayInMonth"]
        if which == "LAST":
            return date.day + 7 > calendar.monthrange(date.year, date.month)[1]
        return (date.day - 1) // 7 == DAY_IN_MONTH.index(which)
    if short == "TimeBetween":
        local = date.timetz().replace(tzinfo=None)
        after = _parse_time(cond["after"]) if cond.get("after") is not None else None
        before = _parse_time(cond["before"]) if cond.get("before") is not None else None
        return (after is None or local >= after) and (before is None or local <= before)
    if short == "DateTimeBetween":
        after = cond.get("after")
        before = cond.get("before")
        if after is not None and date < _parse_instant(render(after, ctx.variables)):
            return False
        return not (before is not None and date > _parse_instant(render(before, ctx.variables)))
    if short == "PublicHoliday":
        return date.date() in _holidays(str(cond.get("country") or "FR"), cond.get("subDivision"), date.year)
    raise ValueError(f"unsupported condition type {cond.get('type')}")


def _children(cond: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = cond.get("conditions") or []
    return list(raw.values()) if isinstance(raw, Mapping) else list(raw)


def _labels_match(want: Any, have: Mapping[str, str]) -> bool:
    if isinstance(want, Mapping):
        pairs = list(want.items())
    else:
        pairs = [(item.get("key"), item.get("value")) for item in want or [] if isinstance(item, Mapping)]
    return all(str(have.get(str(k))) == str(v) for k, v in pairs if k is not None)


def truthy(value: Any) -> bool:
    """Kestra's truthiness of a rendered condition (``"false"``, ``""``, ``"0"``, null are false)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "null")
    return bool(value)


def _date_of(cond: Mapping[str, Any], ctx: ConditionContext) -> datetime:
    """The date a calendar condition checks: its rendered ``date`` (default the trigger date),
    the evaluation time when there is no trigger date."""
    template = cond.get("date") or _DEFAULT_DATE
    try:
        rendered = render(template, ctx.variables, where=f"condition {cond.get('type')} date")
    except ExpressionError:
        if template == _DEFAULT_DATE:
            return ctx.now
        raise
    return _parse_instant(rendered, keep_offset=True)


def _parse_instant(value: Any, *, keep_offset: bool = False) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{value}' is not an ISO-8601 date-time such as 2024-01-31T10:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed if keep_offset else parsed.astimezone(UTC)


def _parse_time(value: Any) -> time:
    text = str(value).strip()
    try:
        parsed = time.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{value}' is not a time such as 08:00:00 or 08:00:00+02:00") from None
    return parsed.replace(tzinfo=None)


def _holidays(country: str, subdivision: Any, year: int):
    import holidays  # imported lazily: a large package, only needed by PublicHoliday

    return holidays.country_holidays(country, subdiv=subdivision or None, years=year)


def window_start(now: datetime, window: float, advance: float) -> datetime:
    """Start of the MultipleCondition window containing ``now``: windows of ``window``
    seconds, aligned on UTC midnight shifted by ``windowAdvance`` (Kestra's daily windows)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(seconds=advance)
    if day > now:
        day -= timedelta(days=1)
    elapsed = (now - day).total_seconds()
    return day + timedelta(seconds=window * int(elapsed // window)) if window > 0 else day
