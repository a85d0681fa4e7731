"""Flow SLAs, as Kestra's ``sla`` property (beta; Kestra's ``SLAService`` and ``SLAMonitor``).

A flow lists SLAs ``{id, type, behavior, labels, duration | assert}``:

- ``MAX_DURATION`` (Kestra's ``ExecutionMonitoringSLA``): violated when the execution is still
  not terminated ``duration`` after it was created. The executor keeps a durable timer for it:
  the execution's executor-queue row is due at the earliest pending deadline, so a control-plane
  restart does not lose it.
- ``EXECUTION_ASSERTION`` (Kestra's ``ExecutionChangedSLA``): the ``assert`` expression is rendered
  on every change of a not-yet-terminated execution; any result other than ``true`` is a
  violation (Kestra reads it with ``Boolean.parseBoolean``).

On a violation, ``behavior`` decides: ``FAIL`` ends the execution FAILED, ``CANCEL`` ends it
CANCELLED (both stop what still runs, as Kestra's ``markAs`` + kill), ``NONE`` changes nothing;
``labels`` are added to the execution in every case. As in Kestra, only the first violation found
on a change acts on the execution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controlplane.flows.durations import parse_duration
from controlplane.model import State

TYPES = ("MAX_DURATION", "EXECUTION_ASSERTION")
BEHAVIORS = {"FAIL": State.FAILED, "CANCEL": State.CANCELLED, "NONE": None}


@dataclass(frozen=True)
class Sla:
    """One checked SLA of a flow.

    Attributes:
        id: As written; unique within a registered flow (controlplane/flows/literal_checks.py),
            though Kestra allows repeats (a flow deployed with lenient_expressions may have them).
        type: ``MAX_DURATION`` or ``EXECUTION_ASSERTION``.
        behavior: ``FAIL`` (the default), ``CANCEL`` or ``NONE``.
        labels: Labels added to the execution on a violation.
        duration: Seconds (``MAX_DURATION`` only).
        assertion: The ``assert`` template (``EXECUTION_ASSERTION`` only).
    """

    id: str
    type: str
    behavior: str
    labels: dict[str, str] = field(default_factory=dict)
    duration: float | None = None
    assertion: str | None = None


@dataclass(frozen=True)
class Violation:
    """A violated SLA: what it asks (``state`` None for ``NONE``) and why, in one sentence."""

    sla: Sla
    state: State | None
    reason: str


def check(raw: Mapping[str, Any], path: str) -> tuple[Sla | None, list[tuple[str, str]]]:
    """Check one ``sla`` item as written.

    Args:
        raw: The item (plain YAML values).
        path: Its path in the flow (``sla[0]``), prefixed to the issue paths.

    Returns:
        ``(sla, [])`` when valid, else ``(None, [(path, message), ...])`` naming each bad field.
    """
    issues: list[tuple[str, str]] = []
    sla_id = raw.get("id")
    what = f"sla '{sla_id}'" if isinstance(sla_id, str) and sla_id else "sla"
    if not isinstance(sla_id, str) or not sla_id.strip():
        issues.append((f"{path}.id", f"{what}: 'id' is required (a non-empty string)"))
    kind = raw.get("type")
    if kind not in TYPES:
        issues.append((f"{path}.type", f"{what}: 'type' must be one of {', '.join(TYPES)}, not {kind!r}"))
    behavior = raw.get("behavior", "FAIL")  # Kestra's default
    if behavior not in BEHAVIORS:
        issues.append((f"{path}.behavior", f"{what}: 'behavior' must be one of FAIL, CANCEL, NONE, not {behavior!r}"))
    labels = _labels(raw.get("labels"), f"{path}.labels", what, issues)
    duration = None
    assertion = None
    if kind == "MAX_DURATION":
        written = raw.get("duration")
        if written is None:
            issues.append((f"{path}.duration", f"{what}: a MAX_DURATION SLA needs 'duration' (e.g. PT1H)"))
        else:
            try:
                duration = parse_duration(str(written))
            except ValueError as exc:
                issues.append((f"{path}.duration", f"{what}: invalid 'duration': {exc}"))
            else:
                if duration <= 0:
                    issues.append((f"{path}.duration", f"{what}: 'duration' must be positive, got {written}"))
    elif kind == "EXECUTION_ASSERTION":
        assertion = raw.get("assert")
        if not isinstance(assertion, str) or not assertion.strip():
            issues.append((f"{path}.assert", f"{what}: an EXECUTION_ASSERTION SLA needs 'assert', an expression "
                                             "such as \"{{ outputs.check.value == 'ok' }}\""))
    unknown = sorted(set(raw) - {"id", "type", "behavior", "labels", "duration", "assert"})
    if unknown:
        issues.append((f"{path}.{unknown[0]}", f"{what}: unknown propert{'ies' if len(unknown) > 1 else 'y'} "
                                               f"{', '.join(repr(u) for u in unknown)}"))
    if issues:
        return None, issues
    return Sla(id=str(sla_id), type=str(kind), behavior=str(behavior), labels=labels,
               duration=duration, assertion=assertion), []


def _labels(raw: Any, path: str, what: str, issues: list[tuple[str, str]]) -> dict[str, str]:
    """Kestra writes labels as a map or as a list of ``{key, value}``."""
    from controlplane.api import checks  # the API's label rules: sizes, no NUL, no system.*
    from controlplane.errors import InvalidArgumentError

    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        labels = {str(k): "" if v is None else str(v) for k, v in raw.items()}
    elif isinstance(raw, list) and all(isinstance(i, Mapping) and "key" in i for i in raw):
        labels = {str(i["key"]): "" if i.get("value") is None else str(i.get("value")) for i in raw}
    else:
        issues.append((path, f"{what}: 'labels' must be a map or a list of {{key, value}}"))
        return {}
    try:
        return checks.labels(labels, "labels")
    except InvalidArgumentError as exc:
        issues.append((path, f"{what}: {exc}"))
        return {}


def parse_all(raw: tuple[Mapping[str, Any], ...]) -> list[Sla]:
    """The flow's SLAs (already checked at registration; an invalid item is skipped)."""
    return [sla for sla in (check(item, f"sla[{i}]")[0] for i, item in enumerate(raw)) if sla is not None]


def clock_origin(created_at: datetime, histories: list[Any]) -> datetime:
    """Where MAX_DURATION counts from: the execution's creation, or its last restart (a restart
    re-arms the SLA, else a restarted execution would be failed again at once)."""
    restarts = [h.date for h in histories if h.state is State.RESTARTED]
    return max([created_at, *restarts])


def next_deadline(slas: list[Sla], created_at: datetime, now: datetime) -> datetime | None:
    """The earliest MAX_DURATION deadline still ahead of ``now`` (the durable timer), or None."""
    ahead = [created_at + timedelta(seconds=s.duration) for s in slas
             if s.type == "MAX_DURATION" and s.duration is not None]
    ahead = [d for d in ahead if d > now]
    return min(ahead) if ahead else None


def violations(
    slas: list[Sla], created_at: datetime, now: datetime, render: Callable[[str, str], Any]
) -> list[Violation]:
    """Every SLA violated by a not-terminated execution at ``now``, in flow order.

    Args:
        render: ``render(template, where)`` -> value, rendering in the execution's context; an
            expression error is raised to the caller (the executor fails the execution with it,
            as Kestra does).
    """
    found = []
    for sla in slas:
        if sla.type == "MAX_DURATION" and sla.duration is not None:
            if now >= created_at + timedelta(seconds=sla.duration):
                found.append(Violation(sla, BEHAVIORS[sla.behavior],
                                       f"SLA '{sla.id}' violated: the execution is still running after "
                                       f"{_seconds(sla.duration)} (MAX_DURATION)"))
        elif sla.type == "EXECUTION_ASSERTION" and sla.assertion is not None:
            value = render(sla.assertion, f"sla '{sla.id}' property 'assert'")
            if not _truthy(value):
                found.append(Violation(sla, BEHAVIORS[sla.behavior],
                                       f"SLA '{sla.id}' violated: assertion {sla.assertion!r} is {value!r}"))
    return found


def _truthy(value: Any) -> bool:
    """Kestra parses the rendered text with ``Boolean.parseBoolean``: only ``true`` (any case)."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"


def _seconds(seconds: float) -> str:
    return f"{seconds:g} s"
