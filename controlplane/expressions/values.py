"""How Kestra (Java) sees Python values: printing, string conversion, JSON, truthiness, types.

Kestra's context holds Jackson values (``String``, ``Integer``/``Long``, ``Double``, ``Boolean``,
``LinkedHashMap``, ``ArrayList``, ``null``); ours holds the Python equivalents. These helpers give
them Java's meaning where it shows: ``true``/``false`` rather than ``True``/``False``, ``1.0E20``
rather than ``1e+20``, ``{a=1}`` for ``Map.toString()``, and so on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from jinja2 import Undefined

from controlplane.expressions.errors import EvaluationError

JAVA_INT_MIN, JAVA_INT_MAX = -(2**31), 2**31 - 1
JAVA_LONG_MIN, JAVA_LONG_MAX = -(2**63), 2**63 - 1


class Entry(dict):  # type: ignore[type-arg]
    """A map entry seen by ``{% for entry in map %}``: ``entry.key`` and ``entry.value``; prints
    as Java's ``Map.Entry`` does (``key=value``)."""


class JavaFloat(float):
    """A number the ``number`` filter parsed as a Java ``Float`` (for ``className``)."""


class JavaLong(int):
    """A number the ``number`` filter parsed as a Java ``Long``."""


class JavaBigInteger(int):
    """A number the ``number`` filter parsed as a Java ``BigInteger``."""


class JavaBigDecimal(float):
    """A number the ``number`` filter parsed as a Java ``BigDecimal``; prints its exact digits."""

    text: str

    def __new__(cls, text: str) -> JavaBigDecimal:
        number = super().__new__(cls, text)
        number.text = format(Decimal(text), "f") if "e" not in text.lower() else str(Decimal(text))
        return number


_JAVA_MARKERS = {
    JavaFloat: "java.lang.Float",
    JavaLong: "java.lang.Long",
    JavaBigInteger: "java.math.BigInteger",
    JavaBigDecimal: "java.math.BigDecimal",
}


def fail_if_undefined(value: Any) -> None:
    """Raise the undefined-variable error when ``value`` is an undefined placeholder."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()


def is_number(value: Any) -> bool:
    """A Java ``Number``: int or float, not bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def java_double(value: float) -> str:
    """Java's ``Double.toString``: ``1.0``, ``0.001``, ``1.0E7``, ``1.5E-4``, ``NaN``, ``Infinity``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return f"{sign}0.0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = list(digit_tuple)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1  # type: ignore[operator]
    text = "".join(map(str, digits))
    scientific = len(digits) - 1 + int(exponent)
    if 1e-3 <= abs(value) < 1e7:
        if scientific >= 0:
            whole = text[: scientific + 1].ljust(scientific + 1, "0")
            fraction = text[scientific + 1 :] or "0"
        else:
            whole, fraction = "0", "0" * (-scientific - 1) + text
        return f"{sign}{whole}.{fraction}"
    return f"{sign}{text[0]}.{text[1:] or '0'}E{scientific}"


def java_string(value: Any) -> str:
    """Java's ``String.valueOf(value)``: ``null``, ``true``, ``1.5``, ``{a=1, b=x}``, ``[1, 2]``."""
    fail_if_undefined(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, JavaBigDecimal):
        return value.text
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Entry):
        return f"{java_string(value.get('key'))}={java_string(value.get('value'))}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{java_string(k)}={java_string(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def print_value(value: Any) -> str:
    """How ``{{ value }}`` prints inside text, as Kestra prints it.

    null prints as an empty string, booleans lower case, maps and lists as JSON (Kestra's
    output writer), floats as Java doubles; anything else as its Java string.
    """
    fail_if_undefined(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Entry):
        return java_string(value)
    if isinstance(value, Mapping | list | tuple):
        return to_json(value)
    return java_string(value)


def _jsonable(value: Any) -> Any:
    fail_if_undefined(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"value of type {type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    """Compact JSON text, as Jackson writes it (``{"a":1,"b":[true,null]}``; non-ASCII kept)."""
    fail_if_undefined(value)
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_jsonable, allow_nan=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EvaluationError(f"Unable to transform to json value of type '{class_name(value)}': {exc}") from exc


def from_json(text: Any, what: str = "fromJson") -> Any:
    """Parse JSON text into Python values (maps keep their key order)."""
    if text is None:
        return None
    fail_if_undefined(text)
    if not isinstance(text, str):
        raise EvaluationError(f"The '{what}' function expects an argument 'json' with type string.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EvaluationError(f"Invalid json: {exc}") from exc


def is_empty(value: Any) -> bool:
    """Pebble's ``empty`` test: null, a blank string, an empty collection or map."""
    fail_if_undefined(value)
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return len(value) == 0
    return False


def to_bool(value: Any) -> bool:
    """Truth of a condition (``if``, ternary, ``and``/``or``/``not``).

    Pebble wants booleans there; we also accept other values the safe way: null is false, a
    string is false when it is ``""``, ``"false"``, ``"0"`` or ``"-0"`` (Kestra's rule for
    rendered conditions), a number when zero, a collection when empty.
    """
    fail_if_undefined(value)
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "-0")
    if is_number(value):
        return value != 0
    if isinstance(value, Mapping | list | tuple):
        return len(value) > 0
    return True


def class_name(value: Any) -> str | None:
    """The Java class Kestra would report for a value of this Python type (``className``)."""
    fail_if_undefined(value)
    if value is None:
        return None
    if type(value) in _JAVA_MARKERS:
        return _JAVA_MARKERS[type(value)]
    if isinstance(value, bool):
        return "java.lang.Boolean"
    if isinstance(value, int):
        if JAVA_INT_MIN <= value <= JAVA_INT_MAX:
            return "java.lang.Integer"
        if JAVA_LONG_MIN <= value <= JAVA_LONG_MAX:
            return "java.lang.Long"
        return "java.math.BigInteger"
    if isinstance(value, float):
        return "java.lang.Double"
    if isinstance(value, str):
        return "java.lang.String"
    if isinstance(value, Mapping):
        return "java.util.LinkedHashMap"
    if isinstance(value, list | tuple):
        return "java.util.ArrayList"
    if isinstance(value, datetime):
        return "java.time.ZonedDateTime" if value.tzinfo else "java.time.LocalDateTime"
    if isinstance(value, date):
        return "java.time.LocalDate"
    return f"python.{type(value).__name__}"


def plain(value: Any) -> Any:
    """A JSON-like copy of an expression's typed result: tuples become lists, map subclasses
    (loop entries) plain dicts; undefined raises."""
    fail_if_undefined(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
