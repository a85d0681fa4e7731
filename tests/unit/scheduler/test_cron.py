"""Cron schedules in a time zone: nicknames, seconds, and both DST transitions in Europe/Paris
and America/New_York with the expected UTC instants written out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.scheduler.cron import CronError, CronSchedule, local_iso


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _iso(values: list[datetime]) -> list[str]:
    return [v.strftime("%Y-%m-%dT%H:%M:%SZ") for v in values]


# Europe/Paris 2026: CET->CEST on 29 March at 01:00Z (02:00 local skipped),
# CEST->CET on 25 October at 01:00Z (02:00-03:00 local repeated).
# America/New_York 2026: EST->EDT on 8 March at 07:00Z, EDT->EST on 1 November at 06:00Z.
@pytest.mark.parametrize(
    ("cron", "zone", "start", "expected"),
    [
        # 02:30 does not exist on 29 March in Paris: fires once, at 03:30 CEST (01:30Z).
        ("30 2 * * *", "Europe/Paris", _utc(2026, 3, 27, 12), [
            "2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"]),
        # Hourly over the gap: every real hour once (02:00 local shifts onto 03:00 CEST).
        ("0 * * * *", "Europe/Paris", _utc(2026, 3, 28, 23, 30), [
            "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]),
        # 02:30 exists twice on 25 October in Paris: fires once, at the first (02:30 CEST = 00:30Z).
        ("30 2 * * *", "Europe/Paris", _utc(2026, 10, 23, 12), [
            "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
        # Hourly over the repeated hour: 02:00 local fires once (00:00Z), no second 02:00 (01:00Z).
        ("0 * * * *", "Europe/Paris", _utc(2026, 10, 24, 22, 30), [
            "2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]),
        # New York spring forward: 02:30 does not exist on 8 March -> 03:30 EDT (07:30Z).
        ("30 2 * * *", "America/New_York", _utc(2026, 3, 6, 12), [
            "2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"]),
        # New York fall back: 01:30 happens twice on 1 November -> once, at 01:30 EDT (05:30Z).
        ("30 1 * * *", "America/New_York", _utc(2026, 10, 30, 12), [
            "2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]),
        # Every 30 minutes through New York's repeated hour: 01:00 and 01:30 once each.
        ("*/30 * * * *", "America/New_York", _utc(2026, 11, 1, 4, 45), [
            "2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T07:00:00Z", "2026-11-01T07:30:00Z"]),
    ],
)
def test_dst_transitions_fire_each_local_time_once(cron, zone, start, expected):
    assert _iso(CronSchedule(cron, zone).upcoming(start, len(expected))) == expected


def test_previous_before_skips_the_repeated_hour():
    hourly = CronSchedule("0 * * * *", "Europe/Paris")
    assert hourly.previous_before(_utc(2026, 10, 25, 2)) == _utc(2026, 10, 25, 0)
    assert hourly.previous_before(_utc(2026, 3, 29, 1, 30)) == _utc(2026, 3, 29, 1)


def test_nicknames_and_seconds():
    start = _utc(2026, 1, 1, 10, 15, 7)
    assert _iso(CronSchedule("@hourly").upcoming(start, 2)) == ["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"]
    assert _iso(CronSchedule("@daily").upcoming(start, 1)) == ["2026-01-02T00:00:00Z"]
    assert _iso(CronSchedule("@monthly").upcoming(start, 1)) == ["2026-02-01T00:00:00Z"]
    assert _iso(CronSchedule("@weekly").upcoming(start, 1)) == ["2026-01-04T00:00:00Z"]  # a Sunday
    assert _iso(CronSchedule("@yearly").upcoming(start, 1)) == ["2027-01-01T00:00:00Z"]
    assert _iso(CronSchedule("*/5 * * * * *", with_seconds=True).upcoming(start, 2)) == [
        "2026-01-01T10:15:10Z", "2026-01-01T10:15:15Z"]
    assert _iso(CronSchedule("@hourly", with_seconds=True).upcoming(start, 1)) == ["2026-01-01T11:00:00Z"]


@pytest.mark.parametrize(
    ("cron", "zone", "with_seconds", "message"),
    [
        ("61 * * * *", None, False, "invalid cron"),
        ("* * * *", None, False, "has 4 fields; expected 5"),
        ("* * * * * *", None, False, "set withSeconds: true"),
        ("* * * * *", None, True, "expected 6"),
        ("* * * * *", "Europe/Pariss", False, "unknown time zone 'Europe/Pariss'"),
        ("0 0 30 2 *", None, False, "never fires"),
    ],
)
def test_bad_expressions_are_refused_with_the_reason(cron, zone, with_seconds, message):
    with pytest.raises(CronError, match=message.replace("(", r"\(")):
        CronSchedule(cron, zone, with_seconds)


def test_trigger_date_is_shown_in_the_schedule_zone():
    assert local_iso(_utc(2026, 3, 29, 1, 30), "Europe/Paris") == "2026-03-29T03:30:00+02:00"
    assert local_iso(_utc(2026, 3, 29, 1, 30), None) == "2026-03-29T01:30:00Z"


def test_one_schedule_reused_in_any_order_gives_the_dates_of_a_fresh_one():
    """CronSchedule keeps a spare croniter between calls (reset each time, a new one for a
    nested call such as previous_before's DST check): reusing one schedule object across
    jumps back and forth, over a DST change, gives what a new object gives."""
    shared = CronSchedule("30 2 * * *", "Europe/Paris")
    instants = [datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2025, 10, 26, 0, 10, tzinfo=UTC),
                datetime(2026, 3, 28, 23, 59, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC),
                datetime(2026, 10, 25, 0, 45, tzinfo=UTC), datetime(2026, 3, 29, 0, 30, tzinfo=UTC)]
    for at in instants:
        fresh = CronSchedule("30 2 * * *", "Europe/Paris")
        assert shared.previous_before(at) == fresh.previous_before(at)
        assert shared.next_after(at) == fresh.next_after(at)
        assert shared.upcoming(at, 3) == CronSchedule("30 2 * * *", "Europe/Paris").upcoming(at, 3)
    assert shared == CronSchedule("30 2 * * *", "Europe/Paris")  # the spare is not a field


def test_remembered_neighbours_are_the_computed_ones():
    """The scheduler records (tick, next) when it moves a schedule on; previous_before(next)
    then answers from that record, and it is what the computation gives."""
    recorded = CronSchedule("*/15 * * * *", "America/New_York")
    tick = datetime(2026, 11, 1, 5, 45, tzinfo=UTC)  # 01:45 EDT, just before the clocks go back
    following = recorded.next_after(tick)
    recorded.remember(tick, following)
    assert recorded.previous_before(following) == tick
    assert CronSchedule("*/15 * * * *", "America/New_York").previous_before(following) == tick
    assert recorded.next_after(tick) == following == CronSchedule("*/15 * * * *", "America/New_York").next_after(tick)
