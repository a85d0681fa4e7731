"""Small readers for task properties that fail the task run with a message naming the field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker_sdk.context import TaskFailure

_MISSING = object()


def required(props: Mapping[str, Any], name: str) -> Any:
    """Returns ``props[name]``.

    Raises:
        TaskFailure: The property is missing or null.
    """
    value = props.get(name)
    if value is None:
        raise TaskFailure(f"property '{name}' is required")
    return value


def string_list(value: Any, name: str) -> list[str]:
    """Reads a list of strings; a single string is a list of one, scalars are stringified.

    A mapping or another scalar becomes its text (Kestra renders ``{{ map }}`` to JSON text).
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [item if isinstance(item, str) else to_text(item) for item in value]
    return [to_text(value)]


def boolean(props: Mapping[str, Any], name: str, default: bool) -> bool:
    """Reads a boolean property; accepts true/false and their string forms (any case).

    Raises:
        TaskFailure: The value is neither a boolean nor "true"/"false".
    """
    value = props.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TaskFailure(f"property '{name}' must be a boolean, got {value!r}")


def to_text(value: Any) -> str:
    """Renders a value as Kestra prints it: strings as is, booleans lower case, null as "",
    maps and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)
