"""Retry policies: Kestra's ``retry`` block parsed, validated, and turned into retry dates.

Reference: conformance/kestra/FEATURES.md §7 and Kestra's ``io.kestra.core.models.tasks.retrys``
(``Constant``, ``Exponential``, ``Random``, ``AbstractRetry``) with ``TaskRun.nextRetryDate`` and
``ExecutionService.nextRetryDate``. Pure: no I/O and no clock (callers pass the times); the
randomness of ``random`` retries is injectable.

Semantics, as Kestra's:

- ``maxAttempt`` (``maxAttempts`` in later Kestra versions) counts every attempt, the first one
  included: ``maxAttempt: 5`` means at most 5 attempts.
- The next attempt is due at the end of the last attempt plus a delay: ``interval`` (constant),
  ``interval × delayFactor^(n−1)`` capped at ``maxInterval`` (exponential, n = attempts made so
  far, ``delayFactor`` 2 by default), or uniform in ``[minInterval, maxInterval)`` (random).
- ``maxDuration`` stops retrying when that date would be later than the first attempt's start
  plus ``maxDuration`` (``PT6S`` with a constant ``PT2S`` gives 3 attempts).
- With neither ``maxAttempt`` nor ``maxDuration`` a failing task is retried until it succeeds or
  its execution is killed (Kestra does the same; registration warns about it).

Deliberate difference from the Kestra snapshot FEATURES.md describes: its exponential delay is
``interval × delayFactor × (n−1)`` with the factor truncated to an integer, so the first retry
comes with no delay at all and ``delayFactor: 1.5`` behaves as 1. Later Kestra versions fixed
this to the geometric ``interval × delayFactor^(n−1)`` used here (first retry after
``interval``, then ``interval × factor``, …), the safer choice for a backoff.
"""

from __future__ import annotations

import difflib
import enum
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controlplane.flows.durations import check_seconds, format_duration, parse_duration
from controlplane.model import Attempt, Flow, Task

#: Attempt end reasons that are not failures of the task itself: a lost lease or a worker shutting
#: down re-dispatches the task run without consuming its retry policy.
LOST_REASONS = frozenset({"LEASE_EXPIRED", "WORKER_SHUTDOWN"})

Random = Callable[[], float]


class RetryType(enum.StrEnum):
    """Kestra's retry ``type``."""

    CONSTANT = "constant"
    EXPONENTIAL = "exponential"
    RANDOM = "random"


class RetryBehavior(enum.StrEnum):
    """Kestra's retry ``behavior``: where the next attempt runs."""

    RETRY_FAILED_TASK = "RETRY_FAILED_TASK"
    """A new attempt of the same task run, in the same execution (the default)."""
    CREATE_NEW_EXECUTION = "CREATE_NEW_EXECUTION"
    """The execution ends RETRIED and a new execution of the flow revision starts at the retry date."""


_COMMON_FIELDS = ("type", "maxAttempt", "maxAttempts", "maxDuration", "warningOnRetry", "behavior")
_TYPE_FIELDS: dict[RetryType, tuple[str, ...]] = {
    RetryType.CONSTANT: ("interval",),
    RetryType.EXPONENTIAL: ("interval", "maxInterval", "delayFactor"),
    RetryType.RANDOM: ("minInterval", "maxInterval"),
}
_REQUIRED: dict[RetryType, tuple[str, ...]] = {
    RetryType.CONSTANT: ("interval",),
    RetryType.EXPONENTIAL: ("interval", "maxInterval"),
    RetryType.RANDOM: ("minInterval", "maxInterval"),
}
_DURATION_FIELDS = ("interval", "maxInterval", "minInterval", "maxDuration")


@dataclass(frozen=True)
class RetryPolicy:
    """A validated ``retry`` block.

    Attributes:
        type: constant, exponential or random.
        interval: Delay of a constant retry; base delay of an exponential one.
        max_interval: Cap of an exponential delay; upper bound of a random one.
        min_interval: Lower bound of a random delay.
        delay_factor: Multiplier of an exponential delay (None = Kestra's default, 2).
        max_attempts: Most attempts in all, the first included (None = unlimited).
        max_duration: Retries stop when the next attempt would start later than the first
            attempt's start plus this (None = unlimited).
        warning_on_retry: A task run that succeeds after more than one attempt ends WARNING.
        behavior: Retry in the same execution, or in a new execution.
    """

    type: RetryType
    interval: timedelta | None = None
    max_interval: timedelta | None = None
    min_interval: timedelta | None = None
    delay_factor: float | None = None
    max_attempts: int | None = None
    max_duration: timedelta | None = None
    warning_on_retry: bool = False
    behavior: RetryBehavior = RetryBehavior.RETRY_FAILED_TASK

    def delay(self, attempts_made: int, rng: Random | None = None) -> timedelta:
        """The wait between the end of attempt ``attempts_made`` and the start of the next one.

        Args:
            attempts_made: Attempts already made (>= 1).
            rng: ``() -> float`` in [0, 1) for random retries (default ``random.random``).
        """
        if self.type is RetryType.CONSTANT:
            assert self.interval is not None
            return self.interval
        if self.type is RetryType.EXPONENTIAL:
            assert self.interval is not None and self.max_interval is not None
            factor = 2.0 if self.delay_factor is None else self.delay_factor
            cap = self.max_interval.total_seconds()
            try:
                seconds = self.interval.total_seconds() * factor ** max(attempts_made - 1, 0)
            except OverflowError:
                seconds = cap
            return timedelta(seconds=min(seconds, cap))
        assert self.min_interval is not None and self.max_interval is not None
        low, high = self.min_interval.total_seconds(), self.max_interval.total_seconds()
        return timedelta(seconds=low + (rng or random.random)() * (high - low))


@dataclass(frozen=True)
class RetryProblem:
    """Something wrong (or worth a warning) in a retry block: the field and what is wrong."""

    field: str
    message: str


class RetryConfigError(ValueError):
    """A retry block is invalid; ``problems`` lists every problem (field and message)."""

    def __init__(self, problems: Sequence[RetryProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in self.problems))


def check_retry(raw: Any) -> tuple[RetryPolicy | None, list[RetryProblem]]:
    """Validate a retry block as written in YAML (plain Python values).

    Kestra's rules (``AbstractRetry`` and its subtypes): ``type`` is constant, exponential or
    random; the type's fields are required (``interval``; ``interval`` and ``maxInterval``;
    ``minInterval`` and ``maxInterval``); ``maxAttempt`` >= 1; ``interval`` < ``maxDuration``
    (constant, exponential); ``interval`` < ``maxInterval`` (exponential); ``minInterval`` <
    ``maxInterval`` < ``maxDuration`` (random) — a retry breaking those could never retry.
    Durations are ISO-8601 (``PT0.25S``) or a number of seconds; expressions are not rendered
    in retry blocks (Kestra types them as plain durations). Unknown fields are refused.

    Returns:
        ``(policy, [])`` when valid, else ``(None, problems)``.
    """
    if not isinstance(raw, Mapping):
        return None, [RetryProblem("", f"a retry must be a mapping with 'type', not {_kind(raw)}")]
    problems: list[RetryProblem] = []
    kind_text = raw.get("type")
    if not isinstance(kind_text, str) or kind_text not in {t.value for t in RetryType}:
        shown = "missing" if kind_text is None else f"'{kind_text}'"
        problems.append(RetryProblem("type", f"retry 'type' is {shown}; one of {', '.join(t.value for t in RetryType)}"))
        return None, problems
    kind = RetryType(kind_text)
    allowed = (*_COMMON_FIELDS, *_TYPE_FIELDS[kind])
    for name in raw:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.7)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(RetryProblem(
                str(name), f"unknown property '{name}' for a {kind} retry{hint}; known: {', '.join(sorted(allowed))}"
            ))
    for name in _REQUIRED[kind]:
        if raw.get(name) is None:
            problems.append(RetryProblem(name, f"'{name}' is required for a {kind} retry"))

    durations: dict[str, timedelta] = {}
    for name in _DURATION_FIELDS:
        if name in allowed and raw.get(name) is not None:
            value = _duration(raw[name], name, problems)
            if value is not None:
                durations[name] = value

    max_attempts = _max_attempts(raw, problems)
    delay_factor = None
    if kind is RetryType.EXPONENTIAL and raw.get("delayFactor") is not None:
        factor = raw["delayFactor"]
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            problems.append(RetryProblem("delayFactor", f"'delayFactor' must be a number, not {_kind(factor)}"))
        elif not math.isfinite(factor) or factor <= 0 or factor > 1000:
            problems.append(RetryProblem("delayFactor", f"'delayFactor' must be a number in (0, 1000], got {factor}"))
        else:
            delay_factor = float(factor)
    warning = raw.get("warningOnRetry", False)
    if warning is None:
        warning = False
    if not isinstance(warning, bool):
        problems.append(RetryProblem("warningOnRetry", f"'warningOnRetry' must be true or false, not {_shown(warning)}"))
    behavior = RetryBehavior.RETRY_FAILED_TASK
    if raw.get("behavior") is not None:
        text = raw["behavior"]
        if isinstance(text, str) and text in {b.value for b in RetryBehavior}:
            behavior = RetryBehavior(text)
        else:
            hint = f" (did you mean '{text.upper()}'?)" if isinstance(text, str) and text.upper() in RetryBehavior.__members__ else ""
            problems.append(RetryProblem(
                "behavior", f"invalid retry 'behavior' {_shown(text)}{hint}; one of {', '.join(b.value for b in RetryBehavior)}"
            ))

    _check_order(kind, durations, problems)
    if problems:
        return None, problems
    return RetryPolicy(
        type=kind,
        interval=durations.get("interval"),
        max_interval=durations.get("maxInterval"),
        min_interval=durations.get("minInterval"),
        delay_factor=delay_factor,
        max_attempts=max_attempts,
        max_duration=durations.get("maxDuration"),
        warning_on_retry=bool(warning),
        behavior=behavior,
    ), []


def parse_retry(raw: Any) -> RetryPolicy:
    """Validate and parse a retry block (see :func:`check_retry`).

    Raises:
        RetryConfigError: the block is invalid (every problem, with its field).
    """
    policy, problems = check_retry(raw)
    if policy is None:
        raise RetryConfigError(problems)
    return policy


def retry_warnings(policy: RetryPolicy) -> list[RetryProblem]:
    """Valid but probably unintended settings: a policy that never retries (``maxAttempt: 1``)
    or one that never stops (neither ``maxAttempt`` nor ``maxDuration``)."""
    if policy.max_attempts == 1:
        return [RetryProblem("maxAttempt", "'maxAttempt: 1' allows no retry: the first attempt is the only one")]
    if policy.max_attempts is None and policy.max_duration is None:
        return [RetryProblem(
            "", "the retry has neither 'maxAttempt' nor 'maxDuration': a failing task is retried until it "
            "succeeds or its execution is killed"
        )]
    return []


def next_attempt_at(
    policy: RetryPolicy,
    attempts: Sequence[tuple[datetime, datetime]],
    first_start: datetime,
    *,
    rng: Random | None = None,
) -> datetime | None:
    """When the next attempt is due, or None when the policy allows no more (Kestra's
    ``TaskRun.nextRetryDate``).

    Args:
        policy: The retry policy.
        attempts: ``(start, end)`` of each attempt made so far that counts (lost attempts do not),
            in order; at least one.
        first_start: Start of the first attempt: the origin of ``maxDuration``.
        rng: Randomness for random retries (``() -> float`` in [0, 1)).

    Returns:
        End of the last attempt + the policy's delay; None when ``maxAttempt`` attempts were made
        or that date is later than ``first_start + maxDuration``.

    Raises:
        ValueError: ``attempts`` is empty.
    """
    if not attempts:
        raise ValueError("next_attempt_at needs at least one attempt")
    made = len(attempts)
    if policy.max_attempts is not None and made >= policy.max_attempts:
        return None
    start, end = attempts[-1]
    due = max(start, end) + policy.delay(made, rng)
    if policy.max_duration is not None and due > first_start + policy.max_duration:
        return None
    return due


def next_execution_at(
    policy: RetryPolicy, attempt_number: int, failed_at: datetime, original_created: datetime, *, rng: Random | None = None
) -> datetime | None:
    """When the next execution of a ``CREATE_NEW_EXECUTION`` retry is due, or None (Kestra's
    ``ExecutionService.nextRetryDate`` / ``TaskRun.nextRetryDate(retry, execution)``).

    Each execution is one attempt: ``attempt_number`` counts the executions so far (1 for the
    first) and ``maxDuration`` runs from the first execution's creation.

    Args:
        policy: The retry policy.
        attempt_number: Number of the execution that just failed (1-based).
        failed_at: When it failed (the base of the delay).
        original_created: Creation date of the first execution of the chain.
        rng: Randomness for random retries.
    """
    attempts = [(original_created, original_created)] * (attempt_number - 1) + [(failed_at, failed_at)]
    return next_attempt_at(policy, attempts, original_created, rng=rng)


def counted_attempts(attempts: Iterable[Attempt]) -> list[tuple[datetime, datetime]]:
    """``(start, end)`` of the ended attempts that count against a retry policy: every attempt
    except those lost with their lease or handed back by a worker shutting down."""
    out = []
    for a in attempts:
        if a.reason in LOST_REASONS or a.started_at is None:
            continue
        out.append((a.started_at, a.ended_at or a.started_at))
    return out


@dataclass(frozen=True)
class ResolvedRetry:
    """The policy that applies to a task and where it is declared (``task 'x'``, ``flowable
    'seq'`` or ``flow``), for messages."""

    policy: RetryPolicy
    source: str


def resolve_retry(flow: Flow, task_id: str) -> ResolvedRetry | None:
    """The retry policy of a failed task: its own ``retry``, else the nearest ancestor task
    declaring one (Kestra's ``searchForParentRetry``: the failed child is re-run), else the flow's
    ``retry``; None when there is none.

    A block that fails validation (a flow stored before validation existed) counts as none.

    Raises:
        KeyError: the flow has no task ``task_id``.
    """
    parents: dict[str, Task] = {}
    by_id: dict[str, Task] = {}
    for task in flow.walk():
        by_id[task.id] = task
        for children in task.subtasks.values():
            for child in children:
                parents[child.id] = task
    task: Task | None = by_id[task_id]
    source = f"task '{task_id}'"
    while task is not None and not task.retry:
        task = parents.get(task.id)
        source = f"flowable '{task.id}'" if task is not None else "flow"
    raw = task.retry if task is not None else flow.retry
    if not raw:
        return None
    policy, _ = check_retry(raw)
    return ResolvedRetry(policy, source) if policy is not None else None


# -----------------------------------------------------------------------------------------------


def _duration(value: Any, name: str, problems: list[RetryProblem]) -> timedelta | None:
    if isinstance(value, bool):
        problems.append(RetryProblem(name, f"'{name}' must be an ISO-8601 duration like PT5S, not a boolean"))
        return None
    if isinstance(value, int | float):
        try:
            seconds = check_seconds(float(value), value)  # Jackson reads a bare number as seconds
        except ValueError as exc:
            problems.append(RetryProblem(name, f"invalid '{name}': {exc}"))
            return None
    elif isinstance(value, str):
        if "{{" in value:
            problems.append(RetryProblem(
                name, f"'{name}' must be a literal duration: retry properties are not rendered (got {value!r})"
            ))
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            problems.append(RetryProblem(name, f"invalid '{name}': {exc}"))
            return None
    else:
        problems.append(RetryProblem(name, f"'{name}' must be an ISO-8601 duration like PT5S, not {_kind(value)}"))
        return None
    if seconds < 0:
        problems.append(RetryProblem(name, f"'{name}' must not be negative, got {_shown(value)}"))
        return None
    return timedelta(seconds=seconds)


def _max_attempts(raw: Mapping[str, Any], problems: list[RetryProblem]) -> int | None:
    given = [name for name in ("maxAttempt", "maxAttempts") if raw.get(name) is not None]
    if len(given) == 2:
        problems.append(RetryProblem("maxAttempts", "give 'maxAttempt' or 'maxAttempts' (the same setting), not both"))
        return None
    if not given:
        return None
    name = given[0]
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(RetryProblem(name, f"'{name}' must be a whole number, not {_kind(value)}"))
        return None
    if value < 1:
        problems.append(RetryProblem(name, f"'{name}' must be at least 1 (it counts the first attempt), got {value}"))
        return None
    return value


def _check_order(kind: RetryType, d: Mapping[str, timedelta], problems: list[RetryProblem]) -> None:
    """Kestra's ``isIntervalLessThanMaxDuration`` / ``isIntervalLessThanMaxInterval`` checks, and
    random's ``minInterval < maxInterval < maxDuration``."""
    pairs: list[tuple[str, str]] = []
    if kind in (RetryType.CONSTANT, RetryType.EXPONENTIAL):
        pairs.append(("interval", "maxDuration"))
    if kind is RetryType.EXPONENTIAL:
        pairs.append(("interval", "maxInterval"))
    if kind is RetryType.RANDOM:
        pairs += [("minInterval", "maxInterval"), ("maxInterval", "maxDuration")]
    for low, high in pairs:
        if low in d and high in d and not d[low] < d[high]:
            never = (
                " (the first retry would come after it: the task could never be retried)"
                if high == "maxDuration" and low in ("interval", "minInterval") else ""
            )
            problems.append(RetryProblem(
                low,
                f"'{low}' must be less than '{high}' but is {format_duration(d[low].total_seconds())} "
                f"('{high}' is {format_duration(d[high].total_seconds())}){never}",
            ))


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{type(value).__name__} {value!r}"


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
