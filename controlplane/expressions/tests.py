"""Pebble and Kestra tests: ``x is <test>`` and ``x is not <test>``.

``defined`` is handled lazily by the preprocessor (``lazy.defined``) because it must not fail on
an undefined value; every other test receives an evaluated value (undefined is an error, as with
Pebble's strict variables).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from controlplane.expressions.errors import EvaluationError
from controlplane.expressions.values import is_empty, is_number


def test_null(value: Any, /) -> bool:
    """``null``: the value is null."""
    return value is None


def test_empty(value: Any, /) -> bool:
    """``empty``: null, a blank string, an empty list or map."""
    return is_empty(value)


def _integer(value: Any, test: str) -> int:
    if not is_number(value):
        raise EvaluationError(f'Can not pass non-numeric value to "{test}" test.')
    if isinstance(value, float) and not value.is_integer():
        raise EvaluationError(f'Can not pass a decimal value to "{test}" test.')
    return int(value)


def test_even(value: Any, /) -> bool:
    """``even``: an even integer."""
    return _integer(value, "even") % 2 == 0


def test_odd(value: Any, /) -> bool:
    """``odd``: an odd integer."""
    return _integer(value, "odd") % 2 != 0


def test_iterable(value: Any, /) -> bool:
    """``iterable``: a list (a Java ``Iterable``; maps and strings are not)."""
    return isinstance(value, list | tuple | set | frozenset)


def test_map(value: Any, /) -> bool:
    """``map``: a map."""
    return isinstance(value, Mapping)


def test_json(value: Any, /) -> bool:
    """Kestra's ``json``: a map or list, or a string holding valid JSON."""
    if isinstance(value, Mapping | list | tuple):
        return True
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


TESTS: dict[str, Callable[..., bool]] = {
    "null": test_null,
    "empty": test_empty,
    "even": test_even,
    "odd": test_odd,
    "iterable": test_iterable,
    "map": test_map,
    "json": test_json,
}
