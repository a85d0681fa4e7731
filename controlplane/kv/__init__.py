"""Kestra's namespace key-value store: typed values, optional expiry, reads inherited down the
dotted namespace hierarchy.

Kestra semantics (``KVStoreService``, ``KvFunction``, ``io.kestra.plugin.core.kv.*``):

- A key lives in one namespace. ``kv('k')`` without a namespace looks in the flow's namespace,
  then each ancestor (``a.b.c`` → ``a.b`` → ``a``), nearest first; with an explicit namespace
  it looks only there.
- A namespace may reach its own store and its ancestors' (it inherits them); any other
  namespace is refused (Kestra's allow-list is an Enterprise feature: we refuse).
- An expired key reads as missing (and is deleted when met).
- Types: STRING, NUMBER, BOOLEAN, DATETIME, DATE, DURATION, JSON.

Modules: this one (types and rules, no I/O) and :mod:`.store` (Postgres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controlplane.errors import InvalidArgumentError
from controlplane.flows.durations import format_duration, parse_duration
from controlplane.flows.inputs import InputValueError, format_datetime, parse_date, parse_datetime
from controlplane.storage.service import PermissionDeniedError

KV_TYPES: tuple[str, ...] = ("STRING", "NUMBER", "BOOLEAN", "DATETIME", "DATE", "DURATION", "JSON")
MAX_KEY = 255
#: Largest value (bytes of its JSON text).
MAX_VALUE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class KVEntry:
    """One stored key (``value`` is the typed JSON value)."""

    namespace: str
    key: str
    type: str
    value: Any
    expires_at: datetime | None = None
    updated_at: datetime | None = None


def ancestors(namespace: str) -> list[str]:
    """``a.b.c`` → ``["a.b.c", "a.b", "a"]`` (nearest first)."""
    parts = namespace.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def check_reach(target: str, from_namespace: str | None) -> None:
    """Refuse a store a caller of ``from_namespace`` may not reach (None = a client: any).

    Raises:
        PermissionDeniedError: ``target`` is neither ``from_namespace`` nor one of its ancestors
            (Kestra's message).
    """
    if from_namespace is None:
        return
    if target == from_namespace or from_namespace.startswith(target + "."):
        return
    raise PermissionDeniedError(
        f"Cannot access the KV store. Access to '{target}' namespace is not allowed from '{from_namespace}'."
    )


def check_key(key: str) -> str:
    """Kestra's key rule: letters, digits, ``-``, ``_``, ``.``, at most 255 characters.

    Raises:
        InvalidArgumentError: naming the field ``key``.
    """
    import re

    if not key or len(key) > MAX_KEY or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9._-]*", key):
        raise InvalidArgumentError(
            f"key: invalid KV key {key[:100]!r}: use letters, digits, '-', '_' or '.', at most {MAX_KEY} characters"
        )
    return key


def infer_type(value: Any) -> str:
    """The KV type of a JSON value stored without ``kvType``."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    return "JSON"


def typed_value(value: Any, kv_type: str | None) -> tuple[str, Any]:
    """Check and convert a value for its KV type (Kestra ``kv.Set`` ``kvType``).

    Args:
        value: A JSON value (strings are parsed for NUMBER, BOOLEAN, DATETIME, DATE, DURATION
            and JSON, as Kestra parses the rendered text).
        kv_type: One of :data:`KV_TYPES`, or None to infer it.

    Returns:
        (type, JSON-ready value): DATETIME as ``2024-01-01T00:00:00Z``, DATE ``YYYY-MM-DD``,
        DURATION ISO-8601 (``PT1H``).

    Raises:
        InvalidArgumentError: the value does not fit the type (field ``value``) or unknown type.
    """
    import json

    if value is None:
        raise InvalidArgumentError("value: a KV value must not be null")
    if kv_type is None:
        return infer_type(value), value
    kind = kv_type.upper()
    if kind not in KV_TYPES:
        raise InvalidArgumentError(f"kvType: unknown KV type {kv_type!r}; expected one of {', '.join(KV_TYPES)}")
    try:
        if kind == "STRING":
            return kind, value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else (
                str(value).lower() if isinstance(value, bool) else str(value))
        if kind == "NUMBER":
            if isinstance(value, bool):
                raise ValueError("a boolean is not a number")
            number = value if isinstance(value, int | float) else (
                int(value) if str(value).strip().lstrip("-").isdigit() else float(value))
            if isinstance(number, float) and not math.isfinite(number):
                raise ValueError("not finite")
            return kind, number
        if kind == "BOOLEAN":
            if isinstance(value, bool):
                return kind, value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return kind, value.strip().lower() == "true"
            raise ValueError("expected true or false")
        if kind == "DATETIME":
            return kind, format_datetime(parse_datetime(value))
        if kind == "DATE":
            return kind, parse_date(value).isoformat()
        if kind == "DURATION":
            return kind, format_duration(parse_duration(value))
        return kind, json.loads(value) if isinstance(value, str) else value
    except (ValueError, TypeError, InputValueError) as exc:
        raise InvalidArgumentError(f"value: {str(value)[:100]!r} is not a valid {kind}: {exc}") from None
