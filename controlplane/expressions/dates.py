"""Dates as Kestra's ``date``/``dateAdd``/``timestamp*`` filters and ``now()`` see them.

Kestra (``AbstractDate``) converts the input to a ``java.time.ZonedDateTime`` and formats it with a
``java.time.format.DateTimeFormatter`` pattern (``yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX`` by default),
converted to the target time zone. This module reproduces that:

- :func:`zone_of`: ``ZoneId.of`` (``UTC``, ``Z``, ``+01:00``, ``GMT+2``, ``Europe/Paris``).
- :func:`convert`: the input conversion (epoch seconds, ISO strings with or without offset, dates,
  or a string in an ``existingFormat`` pattern).
- :func:`format_moment`: Java pattern letters (``G u y D M L d Q q Y w W E e c F a h K k H m s S
  A n N V z O X x Z``, quoting with ``'``, optional sections ``[]``), the named formats ``iso``,
  ``iso_sec``, ``sql``, ``sql_seq``, ``iso_*``, ``rfc_1123_date_time`` and the ``full``/``long``/
  ``medium``/``short`` styles.
- :func:`plus`: ``ZonedDateTime.plus(amount, ChronoUnit)``.

Choices where Java depends on the machine: the "system default" time zone is UTC (a ``Z``
offset), and the locale is ``en_US`` as on Kestra's JVM (JDK 21 data: a narrow no-break space
before AM/PM in the styles; week fields ``Y``/``w``/``W``/``e``/``c`` use US rules: weeks start on
Sunday, week 1 contains January 1st). Other locales are refused with a clear error rather than
printed in English. Long zone names (``zzzz``) fall back to the short name.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import regex

from controlplane.expressions import limits
from controlplane.expressions.errors import EvaluationError

MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NNBSP = "\u202f"  # JDK 20+ (CLDR 42) puts a narrow no-break space before AM/PM in styles

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Zone:
    """A ``java.time.ZoneId``: a fixed offset (``Z``, ``+01:00``) or a region (``Europe/Paris``)."""

    id: str
    tz: tzinfo
    is_offset: bool


UTC_OFFSET = Zone("Z", UTC, True)
SYSTEM_ZONE = UTC_OFFSET


@dataclass(frozen=True)
class Moment:
    """A ``ZonedDateTime``: an aware datetime in ``zone`` plus nanoseconds (Python keeps micros)."""

    dt: datetime
    nano: int
    zone: Zone

    def in_zone(self, zone: Zone) -> Moment:
        """The same instant seen in another zone."""
        return Moment(self.dt.astimezone(zone.tz), self.nano, zone)

    def epoch_second(self) -> int:
        """Seconds since 1970-01-01T00:00Z, floored (``toEpochSecond``)."""
        return (self.dt - _EPOCH) // timedelta(seconds=1)


def _offset_zone(seconds: int) -> Zone:
    if seconds == 0:
        return UTC_OFFSET
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    ident = f"{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")
    return Zone(ident, timezone(timedelta(seconds=seconds)), True)


MAX_DATE_TEXT_LENGTH = 256
"""Longest date text or pattern `parse_with_pattern` accepts (characters)."""

_OFFSET_RE = re.compile(r"^([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?$")


def _parse_offset(text: str) -> int | None:
    if text in ("Z", "z"):
        return 0
    match = _OFFSET_RE.match(text)
    if not match:
        return None
    sign, hours, minutes, seconds = match.groups()
    total = int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    if int(hours) > 18 or int(minutes or 0) > 59 or int(seconds or 0) > 59:
        return None
    return -total if sign == "-" else total


@lru_cache(maxsize=256)
def zone_of(name: str | None) -> Zone:
    """``ZoneId.of(name)``; ``None`` gives the system default zone (UTC here).

    Raises:
        EvaluationError: unknown zone id.
    """
    if name is None:
        return SYSTEM_ZONE
    if not isinstance(name, str):
        raise EvaluationError(f"timeZone must be a string, not {type(name).__name__}")
    offset = _parse_offset(name)
    if offset is not None:
        return _offset_zone(offset)
    for prefix in ("UTC", "GMT", "UT"):
        if name == prefix:
            return Zone(name, UTC, False)
        if name.startswith(prefix) and name[len(prefix) :][:1] in ("+", "-"):
            offset = _parse_offset(name[len(prefix) :])
            if offset is not None:
                return Zone(f"{prefix}{_offset_zone(offset).id if offset else ''}", _offset_zone(offset).tz, False)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9~/._+-]+", name):
        try:
            return Zone(name, ZoneInfo(name), False)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise EvaluationError(f"Unknown time-zone ID: {name}")


def _localize(local: datetime, zone: Zone, preferred_offset: timedelta | None = None) -> datetime:
    """``ZonedDateTime.ofLocal``: a gap moves later by its length, an overlap keeps the preferred
    offset when it is valid (else the earlier one)."""
    if zone.is_offset:
        return local.replace(tzinfo=zone.tz)
    candidates = [local.replace(tzinfo=zone.tz, fold=fold) for fold in (0, 1)]
    chosen = candidates[0]
    if preferred_offset is not None:
        for candidate in candidates:
            if candidate.utcoffset() == preferred_offset:
                chosen = candidate
                break
    return chosen.astimezone(UTC).astimezone(zone.tz)


def _moment(local: datetime, nano: int, zone: Zone, offset: int | None = None) -> Moment:
    if offset is None:
        return Moment(_localize(local, zone), nano, zone)
    aware = local.replace(tzinfo=timezone(timedelta(seconds=offset)))
    return Moment(aware.astimezone(zone.tz), nano, zone)


def now(zone: Zone) -> Moment:
    """The current instant in ``zone`` (microsecond precision)."""
    current = datetime.now(UTC)
    return Moment(current.astimezone(zone.tz), current.microsecond * 1000, zone)


# --- ISO parsing (ZonedDateTime.parse, LocalDateTime.parse, LocalDate.parse) -----------------

_ISO_DATE = r"(?P<year>[+-]\d{4,9}|\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
_ISO_TIME = r"(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
_ISO_ZONED = re.compile(
    rf"^{_ISO_DATE}T{_ISO_TIME}(?P<offset>Z|[+-]\d{{2}}(?::?\d{{2}}(?::?\d{{2}})?)?)(?:\[(?P<zone>[^\]]+)\])?$",
    re.IGNORECASE,
)
_ISO_LOCAL = re.compile(rf"^{_ISO_DATE}T{_ISO_TIME}$", re.IGNORECASE)
_ISO_DATE_ONLY = re.compile(rf"^{_ISO_DATE}$")


def _fraction_nanos(fraction: str | None) -> int:
    return int((fraction or "").ljust(9, "0")) if fraction else 0


def _local(fields: dict[str, Any]) -> tuple[datetime, int]:
    nano = _fraction_nanos(fields.get("fraction"))
    try:
        local = datetime(
            int(fields["year"]),
            int(fields["month"]),
            int(fields["day"]),
            int(fields.get("hour") or 0),
            int(fields.get("minute") or 0),
            int(fields.get("second") or 0),
            nano // 1000,
        )
    except (ValueError, OverflowError) as exc:
        raise EvaluationError(f"Invalid date: {exc}") from exc
    return local, nano


def parse_iso(text: str, zone: Zone) -> Moment:
    """Kestra's cascade for a string without ``existingFormat``: an ISO zoned/offset date-time,
    else an ISO local date-time in ``zone``, else an ISO date at the start of the day in ``zone``.

    Raises:
        EvaluationError: the text is none of these.
    """
    match = _ISO_ZONED.match(text)
    if match:
        fields = match.groupdict()
        local, nano = _local(fields)
        offset = _parse_offset(fields["offset"].upper())
        target = zone_of(fields["zone"]) if fields["zone"] else _offset_zone(offset or 0)
        return _moment(local, nano, target, offset)
    match = _ISO_LOCAL.match(text)
    if match:
        local, nano = _local(match.groupdict())
        return _moment(local, nano, zone)
    match = _ISO_DATE_ONLY.match(text)
    if match:
        local, nano = _local(match.groupdict())
        return _moment(local, nano, zone)
    raise EvaluationError(f"Text '{text}' could not be parsed as a date")


def convert(value: Any, zone: Zone, existing_format: str | None = None) -> Moment:
    """Kestra's ``AbstractDate.convert``: the input of a date filter as a zoned date-time.

    Args:
        value: A :class:`Moment`, ``datetime`` (aware: its own offset; naive: in ``zone``),
            ``date`` (at noon, as Java's ``LocalDate``), int (epoch seconds) or string.
        zone: Zone for inputs without one.
        existing_format: Java pattern (or named format) the string is written in.

    Raises:
        EvaluationError: the value cannot be read as a date.
    """
    if isinstance(value, Moment):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            offset = value.utcoffset() or timedelta(0)
            own = _offset_zone(int(offset.total_seconds()))
            return Moment(value, value.microsecond * 1000, own)
        return _moment(value, value.microsecond * 1000, zone)
    if isinstance(value, date):
        return _moment(datetime.combine(value, time(12, 0)), 0, zone)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            instant = _EPOCH + timedelta(seconds=value)
        except OverflowError as exc:
            raise EvaluationError(f"Epoch second {value} is out of range") from exc
        return Moment(instant.astimezone(zone.tz), 0, zone)
    if isinstance(value, str):
        if existing_format is None:
            return parse_iso(value.strip(), zone)
        return parse_with_pattern(value, existing_format, zone)
    raise EvaluationError(f"Unable to convert value of type '{type(value).__name__}' to a date")


# --- arithmetic ---------------------------------------------------------------------------------

_TIME_UNITS = {
    "NANOS": timedelta(microseconds=0),
    "MICROS": timedelta(microseconds=1),
    "MILLIS": timedelta(milliseconds=1),
    "SECONDS": timedelta(seconds=1),
    "MINUTES": timedelta(minutes=1),
    "HOURS": timedelta(hours=1),
    "HALF_DAYS": timedelta(hours=12),
}
_DATE_UNITS_DAYS = {"DAYS": 1, "WEEKS": 7}
_MONTH_UNITS = {"MONTHS": 1, "YEARS": 12, "DECADES": 120, "CENTURIES": 1200, "MILLENNIA": 12000}


def _plus_months(local: datetime, months: int) -> datetime:
    total = local.year * 12 + (local.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise EvaluationError(f"Date out of the supported range (year {year})")
    last_day = calendar.monthrange(year, month)[1]
    return local.replace(year=year, month=month, day=min(local.day, last_day))


def plus(moment: Moment, amount: Any, unit: Any) -> Moment:
    """``ZonedDateTime.plus(amount, ChronoUnit.valueOf(unit))``.

    Time units (``NANOS`` … ``HALF_DAYS``) move the instant; date units (``DAYS``, ``WEEKS``,
    ``MONTHS``, ``YEARS``, ``DECADES``, ``CENTURIES``, ``MILLENNIA``) move the local date-time and
    keep the offset when still valid (a month end is clamped: Jan 31 + 1 month = Feb 29 or 28).

    Raises:
        EvaluationError: unknown or unsupported unit, non-integer amount, out of range.
    """
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise EvaluationError(f"The 'dateAdd' filter expects an integer 'amount', not {amount!r}")
    if not isinstance(unit, str):
        raise EvaluationError(f"The 'dateAdd' filter expects a string 'unit', not {unit!r}")
    try:
        if unit == "NANOS":
            total = moment.nano + amount
            seconds, nano = divmod(total, 1_000_000_000)
            base = moment.dt.replace(microsecond=0) + timedelta(seconds=seconds, microseconds=nano // 1000)
            return Moment(base.astimezone(moment.zone.tz), nano, moment.zone)
        if unit in _TIME_UNITS:
            step = _TIME_UNITS[unit]
            shifted = moment.dt.astimezone(UTC) + step * amount
            nano = shifted.microsecond * 1000 + moment.nano % 1000
            return Moment(shifted.astimezone(moment.zone.tz), nano, moment.zone)
        local = moment.dt.replace(tzinfo=None)
        if unit in _DATE_UNITS_DAYS:
            local = local + timedelta(days=_DATE_UNITS_DAYS[unit] * amount)
        elif unit in _MONTH_UNITS:
            local = _plus_months(local, _MONTH_UNITS[unit] * amount)
        elif unit in ("ERAS", "FOREVER"):
            raise EvaluationError(f"Unsupported unit: {unit.capitalize()}")
        else:
            raise EvaluationError(f"No enum constant java.time.temporal.ChronoUnit.{unit}")
    except (OverflowError, ValueError) as exc:
        raise EvaluationError(f"Date out of the supported range: {exc}") from exc
    return Moment(_localize(local, moment.zone, moment.dt.utcoffset()), moment.nano, moment.zone)


# --- patterns -----------------------------------------------------------------------------------

_KNOWN_LETTERS = set("GuyDMLdQqYwWEecFaHKkhmsSAnNVvzOXxZ")


@dataclass(frozen=True)
class _Field:
    letter: str
    count: int


@dataclass(frozen=True)
class _Optional:
    items: tuple[Any, ...]


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> tuple[Any, ...]:
    """Parse a ``DateTimeFormatter.ofPattern`` pattern into literals, fields and optional parts.

    Raises:
        EvaluationError: unknown pattern letter, reserved character, unclosed quote or bracket.
    """
    stack: list[list[Any]] = [[]]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "'":
            end = i + 1
            text = []
            while True:
                if end >= len(pattern):
                    raise EvaluationError(f"Pattern ends with an incomplete string literal: {pattern}")
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            stack[-1].append("".join(text) if text else "'")
            i = end + 1
        elif char == "[":
            stack.append([])
            i += 1
        elif char == "]":
            if len(stack) == 1:
                raise EvaluationError(f"Pattern invalid as it contains ] without previous [: {pattern}")
            items = stack.pop()
            stack[-1].append(_Optional(tuple(items)))
            i += 1
        elif char in "{}#":
            raise EvaluationError(f"Pattern includes reserved character: '{char}'")
        elif char.isascii() and char.isalpha():
            end = i
            while end < len(pattern) and pattern[end] == char:
                end += 1
            if char not in _KNOWN_LETTERS:
                raise EvaluationError(f"Unknown pattern letter: {char}")
            _check_count(char, end - i)
            stack[-1].append(_Field(char, end - i))
            i = end
        else:
            stack[-1].append(char)
            i += 1
    if len(stack) != 1:
        raise EvaluationError(f"Pattern has an unclosed optional section '[': {pattern}")
    return tuple(stack[0])


_MAX_COUNT = {
    "d": 2, "H": 2, "h": 2, "K": 2, "k": 2, "m": 2, "s": 2, "D": 3, "a": 1, "M": 5, "L": 5,
    "E": 5, "e": 5, "c": 5, "G": 5, "Q": 5, "q": 5, "w": 2, "W": 1, "F": 1, "S": 9, "n": 19,
    "N": 19, "A": 19, "V": 2, "v": 4, "z": 4, "O": 4, "X": 5, "x": 5, "Z": 5,
}


def _check_count(letter: str, count: int) -> None:
    if count > _MAX_COUNT.get(letter, 19):
        raise EvaluationError(f"Too many pattern letters: {letter}")
    if letter == "V" and count != 2:
        raise EvaluationError("Pattern letter count must be 2: V")
    if letter == "O" and count not in (1, 4):
        raise EvaluationError("Pattern letter count must be 1 or 4: O")
    if letter == "c" and count == 2:
        raise EvaluationError("Invalid pattern \"cc\"")


def _pad(value: int, width: int) -> str:
    text = str(abs(value)).rjust(width, "0")
    return ("-" + text) if value < 0 else text


def _year_text(year: int, count: int) -> str:
    if count == 2:
        return f"{year % 100:02d}"
    text = _pad(year, count)
    if count == 4 and year > 9999:
        return "+" + text
    return text


def _offset_text(seconds: int, style: str, zero: str) -> str:
    """Offsets in Java's styles: ``+HH``, ``+HHmm``, ``+HH:mm``, ``+HHMM``, ``+HH:MM``…"""
    if seconds == 0 and zero:
        return zero
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if style == "+HHmm":  # X: minutes only when non-zero
        return f"{sign}{hours:02d}" + (f"{minutes:02d}" if minutes else "")
    if style == "+HHMM":
        return f"{sign}{hours:02d}{minutes:02d}"
    if style == "+HH:MM":
        return f"{sign}{hours:02d}:{minutes:02d}"
    if style == "+HHMMss":
        return f"{sign}{hours:02d}{minutes:02d}" + (f"{secs:02d}" if secs else "")
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")  # +HH:MM:ss


def _gmt_offset(seconds: int, full: bool) -> str:
    if seconds == 0:
        return "GMT"
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if full:
        return f"GMT{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")
    return f"GMT{sign}{hours}" + (f":{minutes:02d}" if minutes or secs else "") + (f":{secs:02d}" if secs else "")


def _us_week(day: date) -> tuple[int, int]:
    """(week-based year, week) with US rules: weeks start on Sunday, week 1 holds January 1."""
    sunday_index = (day.weekday() + 1) % 7  # Sunday = 0
    week_start = day - timedelta(days=sunday_index)
    week_end = week_start + timedelta(days=6)
    year = week_end.year if week_end.year > day.year else day.year
    jan1 = date(year, 1, 1)
    first_week_start = jan1 - timedelta(days=(jan1.weekday() + 1) % 7)
    return year, (week_start - first_week_start).days // 7 + 1


def _zone_name(moment: Moment) -> str:
    if moment.zone.is_offset:
        return moment.zone.id
    name = moment.dt.tzname() or moment.zone.id
    return name


def _field_text(field: _Field, moment: Moment) -> str:
    letter, count = field.letter, field.count
    dt = moment.dt
    offset = int((dt.utcoffset() or timedelta(0)).total_seconds())
    if letter in "yu":
        return _year_text(dt.year, count)
    if letter == "Y":
        return _year_text(_us_week(dt.date())[0], count)
    if letter in "ML":
        if count <= 2:
            return _pad(dt.month, count)
        name = MONTHS[dt.month - 1]
        return name[:3] if count == 3 else name if count == 4 else name[0]
    if letter == "d":
        return _pad(dt.day, count)
    if letter == "D":
        return _pad(dt.timetuple().tm_yday, count)
    if letter in "Qq":
        quarter = (dt.month - 1) // 3 + 1
        if count <= 2:
            return _pad(quarter, count)
        return f"Q{quarter}" if count == 3 else f"{quarter}{['st', 'nd', 'rd', 'th'][quarter - 1]} quarter" if count == 4 else str(quarter)
    if letter == "E" or (letter in "ec" and count >= 3):
        name = DAYS[dt.weekday()]
        return name[:3] if count <= 3 else name if count == 4 else name[0]
    if letter in "ec":
        return _pad((dt.weekday() + 1) % 7 + 1, count)  # US: Sunday = 1
    if letter == "w":
        return _pad(_us_week(dt.date())[1], count)
    if letter == "W":
        first = dt.date().replace(day=1)
        return str((dt.day + (first.weekday() + 1) % 7 - 1) // 7 + 1)
    if letter == "F":
        return str((dt.day - 1) // 7 + 1)
    if letter == "G":
        return "AD" if count <= 3 else "Anno Domini" if count == 4 else "A"
    if letter == "a":
        return "AM" if dt.hour < 12 else "PM"
    if letter == "H":
        return _pad(dt.hour, count)
    if letter == "k":
        return _pad(dt.hour or 24, count)
    if letter == "h":
        return _pad(dt.hour % 12 or 12, count)
    if letter == "K":
        return _pad(dt.hour % 12, count)
    if letter == "m":
        return _pad(dt.minute, count)
    if letter == "s":
        return _pad(dt.second, count)
    if letter == "S":
        return f"{moment.nano:09d}"[:count]
    if letter == "n":
        return _pad(moment.nano, count)
    if letter == "N":
        return _pad((dt.hour * 3600 + dt.minute * 60 + dt.second) * 1_000_000_000 + moment.nano, count)
    if letter == "A":
        return _pad((dt.hour * 3600 + dt.minute * 60 + dt.second) * 1000 + moment.nano // 1_000_000, count)
    if letter == "V":
        return moment.zone.id
    if letter in "zv":
        return _zone_name(moment)
    if letter == "O":
        return _gmt_offset(offset, full=count == 4)
    if letter in "Xx":
        zero = "Z" if letter == "X" else ""
        style = {1: "+HHmm", 2: "+HHMM", 3: "+HH:MM", 4: "+HHMMss", 5: "+HH:MM:ss"}[count]
        if letter == "x" and count == 1 and offset == 0:
            return "+00"
        return _offset_text(offset, style, zero)
    if letter == "Z":
        if count <= 3:
            return _offset_text(offset, "+HHMM", "")
        if count == 4:
            return _gmt_offset(offset, full=True)
        return _offset_text(offset, "+HH:MM:ss", "Z")
    raise EvaluationError(f"Unknown pattern letter: {letter}")


def _format_items(items: tuple[Any, ...], moment: Moment) -> str:
    parts: list[str] = []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, _Optional):
            parts.append(_format_items(item.items, moment))
        else:
            parts.append(_field_text(item, moment))
    return "".join(parts)


def _fraction_minimal(nano: int) -> str:
    return ("." + f"{nano:09d}".rstrip("0")) if nano else ""


def _iso_local_time(moment: Moment) -> str:
    dt = moment.dt
    return f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}{_fraction_minimal(moment.nano)}"


def _iso_local_date(moment: Moment) -> str:
    return f"{_year_text(moment.dt.year, 4)}-{moment.dt.month:02d}-{moment.dt.day:02d}"


def _offset_id(moment: Moment) -> str:
    seconds = int((moment.dt.utcoffset() or timedelta(0)).total_seconds())
    return _offset_text(seconds, "+HH:MM:ss", "Z")


def _region_suffix(moment: Moment) -> str:
    return "" if moment.zone.is_offset else f"[{moment.zone.id}]"


def _iso_instant(moment: Moment) -> str:
    utc = moment.dt.astimezone(UTC)
    nano = moment.nano
    fraction = ""
    if nano:
        text = f"{nano:09d}"
        fraction = "." + (text[:3] if nano % 1_000_000 == 0 else text[:6] if nano % 1000 == 0 else text)
    return f"{_year_text(utc.year, 4)}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}{fraction}Z"


def _iso_week_date(moment: Moment) -> str:
    year, week, weekday = moment.dt.date().isocalendar()
    return f"{_year_text(year, 4)}-W{week:02d}-{weekday}{_offset_id(moment)}"


def _rfc_1123(moment: Moment) -> str:
    dt = moment.dt
    seconds = int((dt.utcoffset() or timedelta(0)).total_seconds())
    offset = "GMT" if seconds == 0 else _offset_text(seconds, "+HHMM", "")
    return f"{DAYS[dt.weekday()][:3]}, {dt.day} {MONTHS[dt.month - 1][:3]} {dt.year} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {offset}"


_NAMED_PATTERNS = {
    "iso": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "iso_sec": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "sql": "yyyy-MM-dd HH:mm:ss.SSSSSS",
    "sql_seq": "yyyy-MM-dd HH:mm:ss",
}
_STYLE_PATTERNS = {
    "full": f"EEEE, MMMM d, y 'at' h:mm:ss{NNBSP}a zzzz",
    "long": f"MMMM d, y 'at' h:mm:ss{NNBSP}a z",
    "medium": f"MMM d, y, h:mm:ss{NNBSP}a",
    "short": f"M/d/yy, h:mm{NNBSP}a",
}
_NAMED_FORMATTERS = {
    "iso_date_time": lambda m: f"{_iso_local_date(m)}T{_iso_local_time(m)}{_offset_id(m)}{_region_suffix(m)}",
    "iso_zoned_date_time": lambda m: f"{_iso_local_date(m)}T{_iso_local_time(m)}{_offset_id(m)}{_region_suffix(m)}",
    "iso_offset_date_time": lambda m: f"{_iso_local_date(m)}T{_iso_local_time(m)}{_offset_id(m)}",
    "iso_local_date_time": lambda m: f"{_iso_local_date(m)}T{_iso_local_time(m)}",
    "iso_date": lambda m: f"{_iso_local_date(m)}{_offset_id(m)}",
    "iso_local_date": _iso_local_date,
    "iso_time": lambda m: f"{_iso_local_time(m)}{_offset_id(m)}",
    "iso_local_time": _iso_local_time,
    "iso_offset_time": lambda m: f"{_iso_local_time(m)}{_offset_id(m)}",
    "iso_ordinal_date": lambda m: f"{_year_text(m.dt.year, 4)}-{m.dt.timetuple().tm_yday:03d}{_offset_id(m)}",
    "iso_week_date": _iso_week_date,
    "iso_instant": _iso_instant,
    "rfc_1123_date_time": _rfc_1123,
}


def check_locale(locale: Any) -> None:
    """Only English locales are known here (Kestra's default ``en_US``).

    Raises:
        EvaluationError: another locale, rather than silently printing English names.
    """
    if locale is None:
        return
    if not isinstance(locale, str) or not re.fullmatch(r"en([_-][A-Za-z0-9]+)*", locale):
        raise EvaluationError(f"Locale '{locale}' is not supported (only English locales, e.g. 'en_US')")


def format_moment(moment: Moment, fmt: Any = None, zone: Zone = SYSTEM_ZONE) -> str:
    """Format like Kestra: convert to ``zone`` then apply the named format or Java pattern.

    Raises:
        EvaluationError: bad pattern.
    """
    if fmt is None:
        fmt = "iso"
    if not isinstance(fmt, str):
        raise EvaluationError(f"The date format must be a string, not {type(fmt).__name__}")
    moment = moment.in_zone(zone)
    named = _NAMED_FORMATTERS.get(fmt)
    if named is not None:
        return named(moment)
    pattern = _NAMED_PATTERNS.get(fmt) or _STYLE_PATTERNS.get(fmt) or fmt
    return _format_items(compile_pattern(pattern), moment)


# --- pattern parsing (existingFormat) -----------------------------------------------------------

_NUMERIC = set("yuYMLdDHhKkmsSnwWeFQq")


def _is_numeric(item: Any) -> bool:
    return isinstance(item, _Field) and item.letter in _NUMERIC and not (item.letter in "ML" and item.count >= 3)


def _field_regex(field: _Field, adjacent: bool, group: str) -> str:
    letter, count = field.letter, field.count
    name = f"(?P<{group}>"
    if letter in "yuY":
        body = r"\d{2}" if count == 2 else (rf"\d{{{count}}}" if adjacent else rf"[+-]?\d{{{max(count, 1)},10}}")
    elif letter in "ML":
        if count == 1:
            body = r"\d{2}" if adjacent else r"\d{1,2}"
        elif count == 2:
            body = r"\d{2}"
        elif count == 3:
            body = "|".join(m[:3] for m in MONTHS)
        elif count == 4:
            body = "|".join(MONTHS)
        else:
            raise EvaluationError("Pattern letter count 5 of M cannot be used to parse a date")
    elif letter in "dHhKkms":
        body = r"\d{2}" if count == 2 or adjacent else r"\d{1,2}"
    elif letter == "D":
        body = {1: r"\d{1,3}", 2: r"\d{2,3}", 3: r"\d{3}"}[count]
    elif letter == "S":
        body = rf"\d{{{count}}}"
    elif letter == "n":
        body = r"\d{1,9}"
    elif letter == "E":
        body = "|".join(d[:3] for d in DAYS) if count <= 3 else "|".join(DAYS)
    elif letter == "a":
        body = "AM|PM"
    elif letter == "G":
        body = "AD|BC|Anno Domini|Before Christ"
    elif letter in "XxZ":
        body = r"Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?"
    elif letter == "O":
        body = r"GMT(?:[+-]\d{1,2}(?::\d{2}(?::\d{2})?)?)?"
    elif letter == "V":
        body = r"[A-Za-z][A-Za-z0-9~/._+-]*"
    elif letter == "z":
        body = r"[A-Za-z]{1,5}"
    else:
        raise EvaluationError(f"Pattern letter '{letter}' cannot be used to parse a date here")
    return f"{name}{body})"


def _items_regex(items: tuple[Any, ...], names: dict[str, _Field]) -> str:
    parts: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            parts.append(re.escape(item))
        elif isinstance(item, _Optional):
            parts.append(f"(?:{_items_regex(item.items, names)})?")
        else:
            following = items[index + 1] if index + 1 < len(items) else None
            adjacent = _is_numeric(item) and _is_numeric(following)
            group = f"g{len(names)}"
            names[group] = item
            parts.append(_field_regex(item, adjacent, group))
    return "".join(parts)


def parse_with_pattern(text: str, pattern: str, zone: Zone) -> Moment:
    """Parse ``text`` written in a Java pattern (or a named format): zoned when the pattern has an
    offset or zone, else a local date-time in ``zone``, else a date at the start of the day.

    Raises:
        EvaluationError: the text does not match the pattern or is not a valid date.
    """
    if pattern in _NAMED_FORMATTERS or pattern in _STYLE_PATTERNS:
        if pattern.startswith("iso"):
            return parse_iso(text, zone)
        raise EvaluationError(f"The named format '{pattern}' cannot be used as existingFormat")
    pattern = _NAMED_PATTERNS.get(pattern, pattern)
    names: dict[str, _Field] = {}
    if len(text) > MAX_DATE_TEXT_LENGTH or len(pattern) > MAX_DATE_TEXT_LENGTH:
        raise EvaluationError(
            f"Text '{text[:60]}…' could not be parsed: dates and patterns are at most {MAX_DATE_TEXT_LENGTH} characters"
        )
    pattern_regex = _items_regex(compile_pattern(pattern), names)
    try:
        match = regex.fullmatch(pattern_regex, text, timeout=limits.regex_timeout())
    except TimeoutError as exc:
        raise limits.regex_timed_out(pattern) from exc
    if not match:
        raise EvaluationError(f"Text '{text}' could not be parsed with the pattern '{pattern}'")
    values: dict[str, str] = {}
    for key, raw in match.groupdict().items():
        if raw is not None:
            values[names[key].letter + ("3" if names[key].count >= 3 and names[key].letter in "ML" else "")] = raw
    year_text = values.get("y") or values.get("u") or values.get("Y")
    if year_text is None:
        raise EvaluationError(f"Text '{text}' could not be parsed: the pattern '{pattern}' has no year")
    year = int(year_text)
    if len(year_text) == 2 and year_text.isdigit() and ("yy" in pattern or "uu" in pattern):
        year += 2000
    if "M3" in values or "L3" in values:
        name = values.get("M3") or values.get("L3") or ""
        month = next(i + 1 for i, m in enumerate(MONTHS) if m == name or m[:3] == name)
    elif "M" in values or "L" in values:
        month = int(values.get("M") or values.get("L") or 0)
    elif "D" in values:
        month = 0
    else:
        raise EvaluationError(f"Text '{text}' could not be parsed: the pattern '{pattern}' has no month")
    try:
        if month == 0:
            day_date = date(year, 1, 1) + timedelta(days=int(values["D"]) - 1)
        else:
            day_date = date(year, month, int(values.get("d", "1")) if "d" in values else 1)
        if "d" not in values and "D" not in values:
            raise EvaluationError(f"Text '{text}' could not be parsed: the pattern '{pattern}' has no day")
    except ValueError as exc:
        raise EvaluationError(f"Text '{text}' could not be parsed: {exc}") from exc
    has_time = any(k in values for k in "HhKk")
    hour = 0
    if "H" in values:
        hour = int(values["H"])
    elif "k" in values:
        hour = int(values["k"]) % 24
    elif "h" in values or "K" in values:
        hour = int(values.get("h") or values.get("K") or 0) % 12
        if values.get("a") == "PM":
            hour += 12
    nano = int(values["S"].ljust(9, "0")) if "S" in values else int(values.get("n", "0"))
    try:
        local = datetime.combine(
            day_date,
            time(hour, int(values.get("m", "0")), int(values.get("s", "0")), nano // 1000),
        )
    except ValueError as exc:
        raise EvaluationError(f"Text '{text}' could not be parsed: {exc}") from exc
    if not has_time:
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
        nano = 0
    offset_text = values.get("X") or values.get("x") or values.get("Z")
    if offset_text is not None:
        offset = _parse_offset(offset_text)
        if offset is None:
            raise EvaluationError(f"Text '{text}' could not be parsed: bad offset '{offset_text}'")
        return _moment(local, nano, _offset_zone(offset), offset)
    if "O" in values:
        offset = _parse_offset(values["O"][3:] or "Z")
        return _moment(local, nano, _offset_zone(offset or 0), offset or 0)
    if "V" in values:
        return _moment(local, nano, zone_of(values["V"]))
    if "z" in values:
        if values["z"] in ("UTC", "GMT", "UT", "Z"):
            return _moment(local, nano, zone_of(values["z"] if values["z"] != "Z" else "Z"))
        raise EvaluationError(f"Zone name '{values['z']}' cannot be parsed; use an offset or a zone id (VV)")
    return _moment(local, nano, zone)
