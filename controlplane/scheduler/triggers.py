"""Trigger definitions read from a flow's ``triggers`` list, and their validation.

Kestra's trigger types (FEATURES.md §5): ``io.kestra.plugin.core.trigger.Schedule``,
``ScheduleOnDates``, ``Flow`` and ``Webhook`` (legacy ``io.kestra.core.models.triggers.types.*``
accepted). :func:`check_triggers` runs at registration and names flow, trigger and field in each
problem; :func:`definitions` turns the validated list into typed definitions for the scheduler.
Other trigger types (polling plugins) are accepted and reported as not applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.errors import Issue
from controlplane.flows.catalogue import canonical_type
from controlplane.flows.durations import parse_duration
from controlplane.model import Flow
from controlplane.model.state import State
from controlplane.scheduler.conditions import STATES, check_conditions
from controlplane.scheduler.cron import CronError, CronSchedule, zone

_CORE = "io.kestra.plugin.core.trigger."
SCHEDULE = _CORE + "Schedule"
SCHEDULE_ON_DATES = _CORE + "ScheduleOnDates"
FLOW = _CORE + "Flow"
WEBHOOK = _CORE + "Webhook"
#: Canonical trigger type -> kind stored in the trigger table.
KINDS = {SCHEDULE: "schedule", SCHEDULE_ON_DATES: "schedule", FLOW: "flow", WEBHOOK: "webhook"}
RECOVERY = ("ALL", "LAST", "NONE")
#: States a Flow trigger reacts to by default: the terminated ones and PAUSED (Kestra >= 0.23).
DEFAULT_FLOW_STATES = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "RETRIED", "SKIPPED", "PAUSED")


@dataclass(frozen=True)
class TriggerDef:
    """One trigger of a flow revision, as the scheduler uses it.

    Attributes:
        kind: ``schedule`` (Schedule and ScheduleOnDates), ``flow`` or ``webhook``.
        raw: The trigger as written (conditions, inputs, preconditions…).
        cron: The schedule (Schedule only); ``dates``: the instants (ScheduleOnDates only).
        recover: ``recoverMissedSchedules`` (ALL when not set, as Kestra's default).
        late_maximum_delay: Seconds after its date past which a tick is skipped, or None.
        stop_after: States of a triggered execution that disable the trigger.
        states: States of upstream executions a Flow trigger reacts to.
        backfill_start / backfill_end: a ``backfill`` block (Schedule only).
    """

    id: str
    type: str
    kind: str
    raw: Mapping[str, Any]
    disabled: bool = False
    conditions: tuple[Mapping[str, Any], ...] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict)
    cron: CronSchedule | None = None
    dates: tuple[datetime, ...] = ()
    timezone: str | None = None
    recover: str = "ALL"
    late_maximum_delay: float | None = None
    stop_after: tuple[str, ...] = ()
    states: tuple[str, ...] = DEFAULT_FLOW_STATES
    key: str | None = None
    wait: bool = False
    return_outputs: bool = False
    backfill_start: datetime | None = None
    backfill_end: datetime | None = None

    def next_after(self, instant: datetime) -> datetime | None:
        """The schedule's first fire instant after ``instant`` (None: never again)."""
        if self.cron is not None:
            return self.cron.next_after(instant)
        later = [d for d in self.dates if d > instant]
        return min(later) if later else None

    def remember(self, fire: datetime, following: datetime) -> None:
        """``following`` is the fire instant after the fire instant ``fire``
        (:meth:`CronSchedule.remember`; nothing to remember for a list of dates)."""
        if self.cron is not None:
            self.cron.remember(fire, following)

    def previous_before(self, instant: datetime) -> datetime | None:
        """The schedule's last fire instant before ``instant``."""
        if self.cron is not None:
            return self.cron.previous_before(instant)
        earlier = [d for d in self.dates if d < instant]
        return max(earlier) if earlier else None

    @property
    def signature(self) -> str:
        """Text that changes when the timing changes (a changed schedule restarts from now)."""
        if self.kind != "schedule":
            return self.kind
        if self.cron is not None:
            return f"cron:{self.cron.normalized}|{self.cron.with_seconds}|{self.timezone or ''}"
        return "dates:" + ",".join(d.isoformat() for d in self.dates)


def _dates(raw: Any, timezone: str | None) -> tuple[datetime, ...]:
    tz = zone(timezone)
    found = []
    for item in raw or []:
        value = item if isinstance(item, datetime) else datetime.fromisoformat(str(item).strip().replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        found.append(value)
    return tuple(sorted(found))


def _instant(value: Any, timezone: str | None) -> datetime:
    return _dates([value], timezone)[0]


def check_triggers(flow: Flow) -> list[Issue]:
    """Every problem in ``flow``'s triggers (see :func:`check_trigger`)."""
    issues: list[Issue] = []
    for index, raw in enumerate(flow.triggers):
        issues += check_trigger(raw, index, f"{flow.namespace}.{flow.id}")
    return issues


def check_trigger(raw: Mapping[str, Any], index: int, flow_ref: str) -> list[Issue]:
    """Problems of one trigger: cron syntax, time zone, dates, durations, states, recovery
    policy, webhook key, condition types and their required properties.

    Args:
        raw: The trigger as written; ``index``: its position in ``triggers``;
        flow_ref: ``namespace.id`` for the messages.

    Returns:
        Issues with the path ``triggers[i].field`` and a message naming flow and trigger.
    """
    issues: list[Issue] = []
    path = f"triggers[{index}]"
    what = f"flow {flow_ref}: trigger '{raw.get('id')}': "
    canonical = canonical_type(str(raw.get("type", "")))
    kind = KINDS.get(canonical)
    if kind is None:
        return issues
    if "disabled" in raw and not isinstance(raw["disabled"], bool):
        issues.append(Issue(f"{path}.disabled", f"{what}'disabled' must be true or false"))
    timezone = raw.get("timezone")
    if timezone is not None:
        try:
            zone(str(timezone))
        except CronError as exc:
            issues.append(Issue(f"{path}.timezone", f"{what}{exc}"))
            timezone = None
    if canonical == SCHEDULE:
        cron = raw.get("cron")
        if not isinstance(cron, str) or not cron.strip():
            issues.append(Issue(f"{path}.cron", f"{what}'cron' is required (e.g. '*/15 * * * *' or '@daily')"))
        else:
            try:
                CronSchedule(cron, str(timezone) if timezone else None, raw.get("withSeconds") is True)
            except CronError as exc:
                issues.append(Issue(f"{path}.cron", f"{what}{exc}"))
        backfill = raw.get("backfill")
        if backfill is not None:
            if not isinstance(backfill, Mapping) or backfill.get("start") is None:
                issues.append(Issue(f"{path}.backfill", f"{what}'backfill' needs a 'start' date"))
            else:
                for prop in ("start", "end"):
                    if backfill.get(prop) is not None:
                        try:
                            _instant(backfill[prop], timezone)
                        except (ValueError, TypeError):
                            issues.append(Issue(f"{path}.backfill.{prop}",
                                                f"{what}'{backfill[prop]}' is not an ISO-8601 date-time"))
    if canonical == SCHEDULE_ON_DATES:
        dates = raw.get("dates")
        if not isinstance(dates, list) or not dates:
            issues.append(Issue(f"{path}.dates", f"{what}'dates' must be a non-empty list of date-times"))
        else:
            for i, value in enumerate(dates):
                try:
                    _instant(value, timezone)
                except (ValueError, TypeError):
                    issues.append(Issue(f"{path}.dates[{i}]", f"{what}'{value}' is not an ISO-8601 date-time"))
    if kind == "schedule":
        recover = raw.get("recoverMissedSchedules")
        if recover is not None and recover not in RECOVERY:
            issues.append(Issue(f"{path}.recoverMissedSchedules",
                                f"{what}invalid value '{recover}'; one of ALL, LAST, NONE"))
        if raw.get("lateMaximumDelay") is not None:
            try:
                if parse_duration(str(raw["lateMaximumDelay"])) < 0:
                    raise ValueError("it must not be negative")
            except ValueError as exc:
                issues.append(Issue(f"{path}.lateMaximumDelay", f"{what}{exc}"))
    if kind == "webhook":
        key = raw.get("key")
        if not isinstance(key, str) or not key:
            issues.append(Issue(f"{path}.key", f"{what}'key' is required (the secret part of the webhook URL)"))
        elif len(key) > 256:
            issues.append(Issue(f"{path}.key", f"{what}'key' is longer than 256 characters"))
    for prop, allowed in (("stopAfter", STATES), ("states", STATES)):
        values = raw.get(prop)
        if values is None:
            continue
        if not isinstance(values, list):
            issues.append(Issue(f"{path}.{prop}", f"{what}'{prop}' must be a list of states"))
            continue
        for value in values:
            if value not in allowed:
                issues.append(Issue(f"{path}.{prop}", f"{what}unknown state '{value}'; one of {', '.join(allowed)}"))
    if raw.get("inputs") is not None and not isinstance(raw["inputs"], Mapping):
        issues.append(Issue(f"{path}.inputs", f"{what}'inputs' must be a mapping of input id to value"))
    issues += check_conditions(raw.get("conditions"), f"{path}.conditions", what, trigger_kind=kind)
    if raw.get("preconditions") is not None:
        issues += _check_preconditions(raw["preconditions"], f"{path}.preconditions", what, kind)
    return issues


def _check_preconditions(pre: Any, path: str, what: str, kind: str) -> list[Issue]:
    if kind != "flow":
        return [Issue(path, f"{what}'preconditions' only applies to a Flow trigger")]
    if not isinstance(pre, Mapping):
        return [Issue(path, f"{what}'preconditions' must be a mapping (flows, where, timeWindow)")]
    issues = []
    for i, item in enumerate(pre.get("flows") or []):
        if not isinstance(item, Mapping) or not item.get("namespace"):
            issues.append(Issue(f"{path}.flows[{i}]", f"{what}each precondition flow needs a 'namespace'"))
            continue
        for state in item.get("states") or []:
            if state not in STATES:
                issues.append(Issue(f"{path}.flows[{i}].states", f"{what}unknown state '{state}'"))
    return issues


def definitions(flow: Flow) -> list[TriggerDef]:
    """The triggers of a validated flow that this scheduler runs (others are skipped)."""
    found = []
    for raw in flow.triggers:
        canonical = canonical_type(str(raw.get("type", "")))
        kind = KINDS.get(canonical)
        if kind is None:
            continue
        timezone = str(raw["timezone"]) if raw.get("timezone") else None
        conditions = raw.get("conditions") or []
        late = raw.get("lateMaximumDelay")
        backfill = raw.get("backfill") if isinstance(raw.get("backfill"), Mapping) else None
        found.append(TriggerDef(
            id=str(raw["id"]),
            type=canonical,
            kind=kind,
            raw=raw,
            disabled=raw.get("disabled") is True,
            conditions=tuple(conditions),
            inputs=dict(raw.get("inputs") or {}),
            cron=CronSchedule(str(raw["cron"]), timezone, raw.get("withSeconds") is True) if canonical == SCHEDULE else None,
            dates=_dates(raw.get("dates"), timezone) if canonical == SCHEDULE_ON_DATES else (),
            timezone=timezone,
            recover=str(raw.get("recoverMissedSchedules") or "ALL"),
            late_maximum_delay=parse_duration(str(late)) if late is not None else None,
            stop_after=tuple(raw.get("stopAfter") or ()),
            states=tuple(raw.get("states") or DEFAULT_FLOW_STATES),
            key=str(raw["key"]) if raw.get("key") is not None else None,
            wait=raw.get("wait") is True,
            return_outputs=raw.get("returnOutputs") is True,
            backfill_start=_instant(backfill["start"], timezone) if backfill and backfill.get("start") else None,
            backfill_end=_instant(backfill["end"], timezone) if backfill and backfill.get("end") else None,
        ))
    return found


def terminal_or(state: str) -> bool:
    """True when ``state`` ends an execution."""
    return State(state).is_terminal
