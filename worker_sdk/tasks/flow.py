"""``io.kestra.plugin.core.flow.Sleep``: waits for a duration, then succeeds.

Kestra reference: FEATURES.md §3.1 (``flow.Sleep`` is runnable: the worker waits).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import required

TYPE = "io.kestra.plugin.core.flow.Sleep"

_NUM = r"(\d+(?:[.,]\d+)?)"
_ISO_DURATION = re.compile(
    rf"^([-+])?P(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?$",
    re.IGNORECASE,
)


def parse_duration(value: Any) -> float:
    """Parses a Java/ISO-8601 duration (``PnDTnHnMn.nS``, days = 24 h) or a number of seconds.

    Returns:
        The duration in seconds (>= 0).

    Raises:
        ValueError: Not a duration, or negative.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        match = _ISO_DURATION.match(text)
        if match is None or text.upper() in ("P", "PT") or text.upper().endswith("T"):
            raise ValueError(f"not an ISO-8601 duration: {value!r}")
        sign, days, hours, minutes, secs = match.groups()
        parts = (days, hours, minutes, secs)
        factors = (86400.0, 3600.0, 60.0, 1.0)
        seconds = sum(float(p.replace(",", ".")) * f for p, f in zip(parts, factors, strict=True) if p)
        if sign == "-":
            seconds = -seconds
    if seconds < 0:
        raise ValueError(f"duration must not be negative: {value!r}")
    return seconds


async def sleep(ctx: TaskContext, props: Mapping[str, Any]) -> None:
    """Sleeps for ``duration``; cancelling the task ends the sleep at once.

    Properties:
        duration (str): Required; ISO-8601 duration such as ``PT1S`` (or a number of seconds).

    Raises:
        TaskFailure: ``duration`` is missing or invalid.
    """
    try:
        seconds = parse_duration(required(props, "duration"))
    except ValueError as exc:
        raise TaskFailure(f"property 'duration': {exc}") from None
    await asyncio.sleep(seconds)
    return None
