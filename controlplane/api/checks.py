"""Checks and clean-ups of request fields at the gRPC edge.

Every user-supplied field is checked here before it reaches the store, so a bad value is
INVALID_ARGUMENT naming the field rather than a database error. Data a task produced (log lines,
outputs, error messages) is kept, not refused: a NUL character, which Postgres text cannot hold,
is replaced by U+FFFD.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from controlplane.errors import InvalidArgumentError

NUL = "\x00"
REPLACEMENT = "\ufffd"

# Column sizes of the schema (controlplane/store/tables.py).
MAX_ID = 100
MAX_NAMESPACE = 150
MAX_EXECUTION_ID = 40
MAX_REQUEST_ID = 200
MAX_TASK_TYPE = 300
MAX_TASK_TYPES = 1000
MAX_LABEL_KEY = 200
MAX_LABEL_VALUE = 1000
MAX_LABELS = 100


def text_field(value: str, field: str, *, max_len: int, required: bool = False) -> str:
    """A request string field: no NUL, at most ``max_len`` characters, non-empty if required.

    Raises:
        InvalidArgumentError: naming ``field`` and the rule broken.
    """
    if required and not value:
        raise InvalidArgumentError(f"{field}: is required")
    if NUL in value:
        raise InvalidArgumentError(f"{field}: must not contain a NUL character")
    if len(value) > max_len:
        raise InvalidArgumentError(f"{field}: at most {max_len} characters, got {len(value)}")
    return value


def printable_field(value: str, field: str, *, max_len: int) -> str:
    """A name-like request field (worker hostname, SDK): :func:`text_field` rules and no control
    characters (escape sequences would reach operators' terminals through listings).

    Raises:
        InvalidArgumentError: naming ``field``.
    """
    text_field(value, field, max_len=max_len)
    if any(not char.isprintable() for char in value):
        raise InvalidArgumentError(f"{field}: must not contain control characters")
    return value


def clean_text(value: str) -> str:
    """Task-produced text made storable: NUL becomes U+FFFD."""
    return value.replace(NUL, REPLACEMENT) if NUL in value else value


def clean_json(value: Any) -> Any:
    """Task-produced JSON made storable: NUL in any string (keys included) becomes U+FFFD.

    Raises:
        InvalidArgumentError: a float is NaN or infinite (JSON and Postgres ``jsonb`` have none).
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"outputs: {value} is not a JSON number")
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    return value


def labels(pairs: dict[str, str], field: str = "labels") -> dict[str, str]:
    """User labels: non-empty keys, no NUL, bounded sizes, and no ``system.`` keys (reserved for
    Kestrel, as Kestra refuses them from users).

    Raises:
        InvalidArgumentError: naming the label.
    """
    if len(pairs) > MAX_LABELS:
        raise InvalidArgumentError(f"{field}: at most {MAX_LABELS} labels, got {len(pairs)}")
    for key, value in pairs.items():
        text_field(key, f"{field}[{key!r}].key", max_len=MAX_LABEL_KEY, required=True)
        text_field(value, f"{field}[{key!r}].value", max_len=MAX_LABEL_VALUE)
        if key.startswith("system."):
            raise InvalidArgumentError(f"{field}[{key!r}]: 'system.' labels are reserved and cannot be set")
    return pairs


def wait_seconds(value: float, field: str = "wait_seconds") -> float:
    """A poll wait: finite and >= 0 (0 = server default).

    Raises:
        InvalidArgumentError: NaN, infinite or negative.
    """
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{field}: must be a finite number of seconds >= 0, got {value}")
    return value


def page_size(value: int, default: int, maximum: int, field: str = "page_size") -> int:
    """A page size: 0 = ``default``; 1..``maximum`` otherwise.

    Raises:
        InvalidArgumentError: negative or above ``maximum``.
    """
    if value == 0:
        return default
    if value < 0 or value > maximum:
        raise InvalidArgumentError(f"{field}: must be between 1 and {maximum}, got {value}")
    return value


def timestamp(message: Any, field: str) -> datetime:
    """An aware UTC datetime from a ``google.protobuf.Timestamp`` request field.

    Raises:
        InvalidArgumentError: outside 0001-01-01 … 9999-12-31 or with bad nanos (naming ``field``).
    """
    try:
        return message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgumentError(
            f"{field}: not a valid timestamp (seconds {message.seconds}, nanos {message.nanos}; "
            "dates run from year 1 to 9999)"
        ) from None
