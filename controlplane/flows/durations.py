"""ISO-8601 durations as Kestra reads them (``java.time.Duration.parse``).

Kestra types ``timeout``, retry intervals, ``Pause.delay``, DURATION inputs... as
``java.time.Duration``, whose text form is ``PnDTnHnMn.nS``: days, hours, minutes and seconds
only (no years, months or weeks), each part optionally signed, case-insensitive, fractions on
seconds only (up to 9 digits). ``isodate`` is not a dependency: this small parser covers exactly
that grammar.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_DURATION = re.compile(
    r"(?P<sign>[-+]?)P"
    r"(?:(?P<days>[-+]?[0-9]+)D)?"
    r"(?:T"
    r"(?:(?P<hours>[-+]?[0-9]+)H)?"
    r"(?:(?P<minutes>[-+]?[0-9]+)M)?"
    r"(?:(?P<seconds>[-+]?[0-9]+)(?:[.,](?P<fraction>[0-9]{0,9}))?S)?"
    r")?",
    re.IGNORECASE,
)


#: Longest duration accepted anywhere (100 years, in seconds): far beyond any real timeout or
#: retry, and far below what datetime arithmetic overflows on.
MAX_DURATION_SECONDS = 100 * 365 * 86400


def check_seconds(seconds: float, written: object) -> float:
    """A duration given as a bare number of seconds: finite and at most 100 years.

    Raises:
        ValueError: NaN, infinite or too long.
    """
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION_SECONDS:
        raise ValueError(f"{written!r} is not a usable number of seconds (finite, at most 100 years)")
    return seconds


def parse_duration(text: str) -> float:
    """Parse a Java ``Duration`` text (``PT5M``, ``PT0.250S``, ``P1DT2H``, ``-PT1S``) to seconds.

    Args:
        text: The duration as written.

    Returns:
        The duration in seconds (may be negative, like Java's).

    Raises:
        ValueError: ``text`` is not in ``PnDTnHnMn.nS`` form (e.g. ``P1M``, ``5m``, ``PT``).
    """
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or _empty(match, text):
        raise ValueError(f"'{text}' is not an ISO-8601 duration like PT5M, PT1.5S or P1DT2H")
    total = Decimal(0)
    for group, factor in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if match.group(group) is not None:
            total += Decimal(int(match.group(group)) * factor)
    if match.group("seconds") is not None:
        seconds = match.group("seconds")
        fraction = match.group("fraction") or ""
        value = Decimal(f"{seconds.lstrip('+-') or '0'}.{fraction or '0'}")
        total += -value if seconds.startswith("-") else value
    if match.group("sign") == "-":
        total = -total
    if abs(total) > MAX_DURATION_SECONDS:
        raise ValueError(f"'{text}' is longer than Kestrel accepts (at most 100 years)")
    return float(total)


def _empty(match: re.Match[str], text: str) -> bool:
    parts = ("days", "hours", "minutes", "seconds")
    if all(match.group(p) is None for p in parts):
        return True
    # "P1DT" (a T with nothing after it) is refused by Java.
    upper = text.strip().upper()
    return upper.endswith("T")


def format_duration(seconds: float) -> str:
    """Format seconds the way ``java.time.Duration.toString`` does (``PT1M30S``, ``PT0.25S``).

    Args:
        seconds: A duration in seconds.

    Returns:
        ``PT`` + hours, minutes and seconds (days are expressed as hours, as in Java).
    """
    value = Decimal(str(seconds))
    if value == 0:
        return "PT0S"
    sign = "-" if value < 0 else ""
    value = abs(value)
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{sign}{int(hours)}H"
    if minutes:
        out += f"{sign}{int(minutes)}M"
    if secs:
        text = format(secs.normalize(), "f")
        out += f"{sign}{text}S"
    return out
