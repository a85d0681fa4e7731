"""Cron schedules in a time zone, DST-correct, on croniter.

Kestra's ``Schedule`` trigger evaluates a cron expression in the trigger's ``timezone``
(default UTC). croniter walks *local wall-clock* times; this module maps each of them to one
UTC instant with these rules (the rules of Vixie cron for fixed times, and what the issue asks):

- a local time that does not exist (spring forward, e.g. 02:30 in Europe/Paris on the last
  Sunday of March) fires once, at the time shifted by the gap (03:30 CEST);
- a local time that exists twice (fall back) fires once, at its first occurrence; the repeated
  hour therefore produces no second round of fires.

Every instant fires at most once: a local time that maps onto an instant already passed (the
shifted times of a gap, or the second pass through a repeated hour) is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

#: Kestra's cron nicknames (cron-utils) and their 5-field meaning.
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Safety stop for a walk that finds no instant (an impossible date such as 30 February).
#: Remembered dates per schedule before the memo starts again (CronSchedule.next_after).
_MEMO_SIZE = 512
_MAX_STEPS = 100_000


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message names the field."""


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name`` (None or empty = UTC).

    Raises:
        CronError: unknown zone name.
    """
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone '{name}': use an IANA name such as Europe/Paris") from None


def to_utc_instant(local: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of naive wall-clock time ``local`` in ``tz``.

    A nonexistent time (in a DST gap) is shifted forward by the gap; an ambiguous one takes its
    first occurrence (``fold=0``, the offset before the transition in both cases).
    """
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression in a time zone.

    Args:
        expression: 5 fields (minute hour day month weekday), 6 with ``with_seconds`` (seconds
            first, as Kestra's ``withSeconds``), or a nickname (``@hourly``, ``@daily``…).
        timezone: IANA zone name; None = UTC.
        with_seconds: Kestra's ``withSeconds``.

    Raises:
        CronError: bad expression (message says why) or unknown zone.
    """

    expression: str
    timezone: str | None = None
    with_seconds: bool = False

    def __post_init__(self) -> None:
        zone(self.timezone)
        expr = self.normalized
        fields = expr.split()
        want = 6 if self.with_seconds else 5
        if len(fields) != want:
            raise CronError(
                f"cron '{self.expression}' has {len(fields)} fields; expected {want}"
                + (" (seconds first, because withSeconds is true)" if self.with_seconds else
                   " (minute hour day-of-month month day-of-week; set withSeconds: true for 6)")
            )
        try:
            croniter(expr, datetime(2000, 1, 1), second_at_beginning=self.with_seconds)
        except (CroniterError, ValueError, KeyError) as exc:
            raise CronError(f"invalid cron '{self.expression}': {exc}") from None
        if self.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise CronError(f"cron '{self.expression}' never fires (no such date)")

    @property
    def normalized(self) -> str:
        """The expression with a nickname expanded (and seconds ``0`` prepended if needed)."""
        text = " ".join(self.expression.split())
        expanded = NICKNAMES.get(text.lower())
        if expanded is None:
            return text
        return f"0 {expanded}" if self.with_seconds else expanded

    @property
    def tz(self) -> ZoneInfo:
        """The schedule's zone."""
        return zone(self.timezone)

    def _candidates(self, local: datetime, forward: bool) -> Iterator[datetime]:
        """Fire instants (UTC) from the wall-clock time ``local`` on, forward or backward, at most
        :data:`_MAX_STEPS`. It steps the schedule's spare croniter, reset to ``local`` (building
        one parses the expression, ~6 times the cost of a step: the scheduler computes two dates
        per schedule per tick, issue 10), or a new one while the spare is in use (a nested call,
        or another thread); the spare is handed back when the iteration is closed."""
        it = self.__dict__.pop("_spare", None)
        if it is None:
            it = croniter(self.normalized, local, second_at_beginning=self.with_seconds)
        else:
            it.set_current(local, force=True)
        step = it.get_next if forward else it.get_prev
        try:
            for _ in range(_MAX_STEPS):
                try:
                    yield to_utc_instant(step(datetime), self.tz)
                except CroniterError:
                    return
        finally:
            self.__dict__["_spare"] = it  # frozen dataclass: a cache, not a field

    def _memo(self) -> dict[tuple[str, datetime], datetime | None]:
        """Dates computed so far, by ``(kind, instant)`` (a few hundred per schedule: the
        scheduler asks for the same ones again, ahead of a tick and then at it)."""
        memo = self.__dict__.get("_dates")
        if memo is None or len(memo) > _MEMO_SIZE:
            memo = self.__dict__["_dates"] = {}  # frozen dataclass: a cache, not a field
        return memo

    def _remembered(self, kind: str, instant: datetime,
                    compute: Callable[[datetime], datetime | None]) -> datetime | None:
        """``compute(instant)``, remembered (:meth:`_memo`)."""
        memo = self._memo()
        key = (kind, instant)
        if key not in memo:
            memo[key] = compute(instant)
        return memo[key]

    def remember(self, fire: datetime, following: datetime | None) -> None:
        """Record that ``following`` is :meth:`next_after` of the fire instant ``fire``, so that
        :meth:`previous_before` of ``following`` is ``fire`` without a computation (the
        scheduler knows both when it moves a schedule on; ``fire`` must be a fire instant)."""
        if following is not None:
            memo = self._memo()
            memo[("next", fire)] = following
            memo[("previous", following)] = fire

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire instant strictly after ``instant`` (aware), in UTC; None if none exists
        (remembered)."""
        return self._remembered("next", instant, self._next_after)

    def _next_after(self, instant: datetime) -> datetime | None:
        after = instant.astimezone(UTC)
        local = after.astimezone(self.tz).replace(tzinfo=None, fold=0)
        with contextlib.closing(self._candidates(local, forward=True)) as candidates:
            return next((fired for fired in candidates if fired > after), None)

    def previous_before(self, instant: datetime) -> datetime | None:
        """The last fire instant strictly before ``instant`` (aware), in UTC; None if none
        (remembered)."""
        return self._remembered("previous", instant, self._previous_before)

    def _previous_before(self, instant: datetime) -> datetime | None:
        tz = self.tz
        before = instant.astimezone(UTC)
        local = before.astimezone(tz).replace(tzinfo=None)
        near_transition = (before - timedelta(hours=3)).astimezone(tz).utcoffset() != (
            before + timedelta(hours=3)).astimezone(tz).utcoffset()
        # Near a DST transition a wall-clock time after ``local`` can be an earlier instant (the
        # first pass through a repeated hour): start past the fold and check each candidate.
        start = local + timedelta(hours=3) if near_transition else local
        with contextlib.closing(self._candidates(start, forward=False)) as candidates:
            return next((fired for fired in candidates if fired < before and (
                not near_transition or self.next_after(fired - timedelta(microseconds=1)) == fired)), None)

    def upcoming(self, instant: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire instants after ``instant``."""
        found: list[datetime] = []
        current = instant
        while len(found) < count:
            nxt = self.next_after(current)
            if nxt is None:
                break
            found.append(nxt)
            current = nxt
        return found


def local_iso(instant: datetime, timezone: str | None) -> str:
    """``instant`` as ISO-8601 in ``timezone`` with its offset (``Z`` for UTC), as Kestra shows
    ``trigger.date`` (a ``ZonedDateTime`` in the schedule's zone)."""
    tz = zone(timezone)
    text = instant.astimezone(tz).isoformat()
    if not timezone or timezone.upper() in ("UTC", "ETC/UTC", "Z"):
        text = instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text
