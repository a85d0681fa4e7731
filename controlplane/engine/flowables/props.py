"""Reading rendered flowable properties the way Kestra reads them.

Kestra renders a dynamic property to text with Pebble and then converts it; our renderer keeps
the type of a lone ``{{ expression }}`` (a bool, an int, a list), so these helpers first turn a
rendered value into the text Pebble would have printed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from controlplane.engine.plan import FlowableError

#: Rendered texts that are false for If / WaitFor conditions (Kestra's ``TruthUtils``).
FALSE_TEXTS = frozenset({"false", "0", "-0", ""})


def to_json(value: Any) -> str:
    """Compact JSON text, as Kestra's Jackson mapper writes it (``{"a":1}``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def as_text(value: Any) -> str | None:
    """The text Pebble prints for a rendered value: booleans lower case, maps and lists as
    JSON, numbers as written; None stays None (Kestra's null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        return to_json(value)
    return str(value)


def is_truthy(value: Any) -> bool:
    """Kestra's ``TruthUtils.isTruthy`` on the rendered text: not null, and not one of
    ``false``, ``0``, ``-0`` or the empty string once trimmed (case-sensitive, as Kestra)."""
    text = as_text(value)
    return text is not None and text.strip() not in FALSE_TEXTS


def as_count(value: Any, *, task_id: str, prop: str, default: int) -> int:
    """A non-negative integer property (``concurrent``, ``concurrencyLimit``); ``default`` when
    absent.

    Raises:
        FlowableError: not an integer, or negative (the message names task and property).
    """
    if value is None:
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+").isdigit():
        number = int(value.strip())
    if number is None or number < 0:
        raise FlowableError(f"task '{task_id}': property '{prop}' must be an integer >= 0, got {value!r}")
    return number
