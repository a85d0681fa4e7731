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

    def _iter(self, local: datetime) -> croniter:
        """A croniter positioned at ``local``: the schedule's spare one, reset (building one parses
        the expression, ~6 times the cost of a step: the scheduler computes two dates per
        schedule per tick, issue 10), or a new one while the spare is in use (a nested call, or
        another thread). Hand it back with :meth:`_release`."""
        spare = self.__dict__.pop("_spare", None)
        if spare is None:
            return croniter(self.normalized, local, second_at_beginning=self.with_seconds)
        spare.set_current(local, force=True)
        return spare

    def _release(self, it: croniter) -> None:
        self.__dict__["_spare"] = it  # frozen dataclass: a cache, not a field

    def _memo(self) -> dict[tuple[str, datetime], datetime | None]:
        memo = self.__dict__.get("_dates")
        if memo is None or len(memo) > _MEMO_SIZE:
            memo = self.__dict__["_dates"] = {}
        return memo

    def remember(self, fire: datetime, following: datetime | None) -> None:
        """Record that ``following`` is :meth:`next_after` of the fire instant ``fire``, so that
        :meth:`previous_before` of ``following`` is ``fire`` without a computation (the
        scheduler knows both when it moves a schedule on; ``fire`` must be a fire instant)."""
        if following is not None:
            memo = self._memo()
            memo[("next", fire)] = following
            memo[("previous", following)] = fire

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire instant strictly after ``instant`` (aware), in UTC; None if none exists.
        Results are remembered (a few hundred per schedule): the scheduler asks for the same
        dates again (warm-up after a pass, then the pass itself)."""
        memo = self._memo()
        key = ("next", instant)
        if key in memo:
            return memo[key]
        memo[key] = found = self._next_after(instant)
        return found

    def _next_after(self, instant: datetime) -> datetime | None:
        tz = self.tz
        after = instant.astimezone(UTC)
        local = after.astimezone(tz).replace(tzinfo=None, fold=0)
        it = self._iter(local)
        try:
            for _ in range(_MAX_STEPS):
                try:
                    candidate = it.get_next(datetime)
                except CroniterError:
                    return None
                fired = to_utc_instant(candidate, tz)
                if fired > after:
                    return fired
            return None
        finally:
            self._release(it)

    def previous_before(self, instant: datetime) -> datetime | None:
        """The last fire instant strictly before ``instant`` (aware), in UTC; None if none.
        Remembered as :meth:`next_after`."""
        memo = self._memo()
        key = ("previous", instant)
        if key in memo:
            return memo[key]
        memo[key] = found = self._previous_before(instant)
        return found

    def _previous_before(self, instant: datetime) -> datetime | None:
        tz = self.tz
        before = instant.astimezone(UTC)
        local = before.astimezone(tz).replace(tzinfo=None)
        near_transition = (before - timedelta(hours=3)).astimezone(tz).utcoffset() != (
            before + timedelta(hours=3)).astimezone(tz).utcoffset()
        # Near a DST transition a wall-clock time after ``local`` can be an earlier instant (the
        # first pass through a repeated hour): start past the fold and check each candidate.
        it = self._iter(local + timedelta(hours=3) if near_transition else local)
        try:
            for _ in range(_MAX_STEPS):
                try:
                    candidate = it.get_prev(datetime)
                except CroniterError:
                    return None
                fired = to_utc_instant(candidate, tz)
                if fired < before and (not near_transition
                                       or self.next_after(fired - timedelta(microseconds=1)) == fired):
                    return fired
            return None
        finally:
            self._release(it)

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
