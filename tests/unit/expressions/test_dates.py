"""Date filters with Java ``DateTimeFormatter`` patterns (Kestra's ``AbstractDate``): the input
conversion, patterns and named formats, time zones, ``dateAdd`` and the ``timestamp*`` filters.

The system time zone of a Kestra server is what its JVM has; ours is UTC."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.errors import ExpressionError
from controlplane.expressions import render_string

D = "2024-01-05T10:15:30.123456789+01:00"  # a Friday; 09:15:30 UTC
CTX: dict[str, Any] = {"d": D, "start": "2024-03-30T12:00:00Z", "local": "2024-01-05T10:15:30", "day": "2024-01-05"}


def r(template: str) -> Any:
    return render_string(template, CTX, where="test")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ d | date }}", "2024-01-05T09:15:30.123456Z"),
        ("{{ d | date('yyyy-MM-dd') }}", "2024-01-05"),
        ("{{ d | date('yyyy-MM-dd HH:mm:ss') }}", "2024-01-05 09:15:30"),
        ("{{ d | date('dd/MM/yy') }}", "05/01/24"),
        ("{{ d | date('d/M/y') }}", "5/1/2024"),
        ("{{ d | date('EEEE, MMMM d, yyyy h:mm a') }}", "Friday, January 5, 2024 9:15 AM"),
        ("{{ d | date('EEE MMM dd') }}", "Fri Jan 05"),
        ("{{ d | date('HH:mm:ss.SSS') }}", "09:15:30.123"),
        ("{{ d | date('SSSSSSSSS') }}", "123456789"),
        ("{{ d | date(\"yyyy-MM-dd'T'HH:mm:ssX\", timeZone='UTC') }}", "2024-01-05T09:15:30Z"),
        ("{{ d | date('HH:mm XXX', timeZone='Europe/Paris') }}", "10:15 +01:00"),
        ("{{ d | date('HH:mm XX', timeZone='America/New_York') }}", "04:15 -0500"),
        ("{{ d | date('HH:mm x', timeZone='UTC') }}", "09:15 +00"),
        ("{{ d | date('HH:mm Z', timeZone='Asia/Kolkata') }}", "14:45 +0530"),
        ("{{ d | date('VV z', timeZone='Europe/Paris') }}", "Europe/Paris CET"),
        ("{{ d | date('O', timeZone='Europe/Paris') }}", "GMT+1"),
        ("{{ d | date(\"'Q'Q yyyy, 'day' D, 'week' w\") }}", "Q1 2024, day 5, week 1"),
        ("{{ d | date(\"'it''s' HH'h'\") }}", "it's 09h"),
        ("{{ d | date('iso_sec') }}", "2024-01-05T09:15:30Z"),
        ("{{ d | date('sql') }}", "2024-01-05 09:15:30.123456"),
        ("{{ d | date('sql_seq') }}", "2024-01-05 09:15:30"),
        ("{{ d | date('iso_local_date') }}", "2024-01-05"),
        ("{{ d | date('iso_date') }}", "2024-01-05Z"),
        ("{{ d | date('iso_local_date_time') }}", "2024-01-05T09:15:30.123456789"),
        ("{{ d | date('iso_offset_date_time', timeZone='Europe/Paris') }}", "2024-01-05T10:15:30.123456789+01:00"),
        ("{{ d | date('iso_date_time', timeZone='Europe/Paris') }}", "2024-01-05T10:15:30.123456789+01:00[Europe/Paris]"),
        ("{{ d | date('iso_instant') }}", "2024-01-05T09:15:30.123456789Z"),
        ("{{ start | date('iso_instant') }}", "2024-03-30T12:00:00Z"),
        ("{{ d | date('iso_week_date') }}", "2024-W01-5Z"),
        ("{{ d | date('iso_ordinal_date') }}", "2024-005Z"),
        ("{{ d | date('rfc_1123_date_time') }}", "Fri, 5 Jan 2024 09:15:30 GMT"),
        ("{{ d | date('medium') }}", "Jan 5, 2024, 9:15:30\u202fAM"),
        ("{{ d | date('short') }}", "1/5/24, 9:15\u202fAM"),
        # inputs: local date-times are in the target zone, dates start the day, numbers are epoch seconds
        ("{{ local | date('HH:mm XXX', timeZone='Europe/Paris') }}", "10:15 +01:00"),
        ("{{ day | date }}", "2024-01-05T00:00:00.000000Z"),
        ("{{ 1700000000 | date('yyyy-MM-dd HH:mm:ss') }}", "2023-11-14 22:13:20"),
        ("{{ '2024-01-05T10:15:30+01:00[Europe/Paris]' | date('HH:mm') }}", "09:15"),
        ("{{ 'July 24, 2001' | date('yyyy-MM-dd', existingFormat='MMMM dd, yyyy') }}", "2001-07-24"),
        ("{{ '2024-1-5' | date(existingFormat='yyyy-M-d', format='yyyy/MMMM/d') }}", "2024/January/5"),
        ("{{ '05/01/2024 14:30' | date('iso_sec', existingFormat='dd/MM/yyyy HH:mm') }}", "2024-01-05T14:30:00Z"),
        ("{{ '20240105' | date('yyyy-MM-dd', existingFormat='yyyyMMdd') }}", "2024-01-05"),
        ("{{ '2024-01-05 02:30 PM +0200' | date('HH:mm', existingFormat='yyyy-MM-dd hh:mm a Z') }}", "12:30"),
        ("{{ nothing ?? null | date }}", None),
    ],
)
def test_date(template: str, expected: Any) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ d | dateAdd(1, 'DAYS', 'yyyy-MM-dd') }}", "2024-01-06"),
        ("{{ d | dateAdd(-1, 'DAYS', 'yyyy-MM-dd') }}", "2024-01-04"),
        ("{{ d | dateAdd(2, 'HOURS', 'HH:mm') }}", "11:15"),
        ("{{ d | dateAdd(90, 'MINUTES', 'HH:mm') }}", "10:45"),
        ("{{ d | dateAdd(1, 'WEEKS', 'yyyy-MM-dd') }}", "2024-01-12"),
        ("{{ '2024-01-31' | dateAdd(1, 'MONTHS', 'yyyy-MM-dd') }}", "2024-02-29"),
        ("{{ '2023-01-31' | dateAdd(1, 'MONTHS', 'yyyy-MM-dd') }}", "2023-02-28"),
        ("{{ '2024-02-29' | dateAdd(1, 'YEARS', 'yyyy-MM-dd') }}", "2025-02-28"),
        ("{{ d | dateAdd(500, 'MILLIS', 'ss.SSS') }}", "30.623"),
        ("{{ d | dateAdd(1, 'NANOS', 'SSSSSSSSS') }}", "123456790"),
        ("{{ d | dateAdd(1, 'HALF_DAYS', 'HH') }}", "21"),
        # DST in Paris (2024-03-31 02:00 -> 03:00): a day keeps the local time, 24 hours do not
        ("{{ '2024-03-30T12:00:00' | dateAdd(1, 'DAYS', 'yyyy-MM-dd HH:mm XXX', 'Europe/Paris') }}", "2024-03-31 12:00 +02:00"),
        ("{{ '2024-03-30T12:00:00' | dateAdd(24, 'HOURS', 'yyyy-MM-dd HH:mm XXX', 'Europe/Paris') }}", "2024-03-31 13:00 +02:00"),
        # an input with its own offset stays in it; only the output is converted
        ("{{ start | dateAdd(1, 'DAYS', 'yyyy-MM-dd HH:mm XXX', 'Europe/Paris') }}", "2024-03-31 14:00 +02:00"),
    ],
)
def test_date_add(template: str, expected: str) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ d | timestamp }}", 1704446130),
        ("{{ d | timestampMilli }}", 1704446130123),
        ("{{ d | timestampMicro }}", "1704446130123456"),
        ("{{ d | timestampNano }}", "1704446130123456789"),
        ("{{ local | timestamp(timeZone='Europe/Paris') }}", 1704446130),
        ("{{ day | timestamp }}", 1704412800),
        ("{{ '05/01/2024' | timestamp(existingFormat='dd/MM/yyyy') }}", 1704412800),
    ],
)
def test_timestamps(template: str, expected: Any) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'yesterday' | date }}", "could not be parsed"),
        ("{{ d | date('yyyy-qq-ppp') }}", "Unknown pattern letter: p"),
        ("{{ d | date('ddd') }}", "Too many pattern letters: d"),
        ("{{ d | date('{') }}", "reserved character"),
        ("{{ d | date(\"'open\") }}", "incomplete string literal"),
        ("{{ d | date(timeZone='Nowhere/City') }}", "Unknown time-zone ID"),
        ("{{ d | dateAdd(1, 'FORTNIGHTS') }}", "No enum constant java.time.temporal.ChronoUnit.FORTNIGHTS"),
        ("{{ d | dateAdd('1', 'DAYS') }}", "integer 'amount'"),
        ("{{ '2024-13-01' | date }}", "Invalid date"),
        ("{{ 'Jan 2024' | date(existingFormat='yyyy-MM-dd') }}", "could not be parsed"),
        ("{{ [1] | date }}", "Unable to convert"),
        ("{{ d | date('yyyy', locale='de_DE') }}", "not supported"),
    ],
)
def test_date_errors(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        r(template)
