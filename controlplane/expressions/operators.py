"""Pebble's operators, where Jinja's/Python's differ (Pebble's ``OperatorUtils`` and expressions).

- ``+``: string concatenation when either side is a string (``'a' + 1`` is ``a1``), list append
  when the left side is a list, else numeric addition.
- ``- * / %``: numbers only (``'a' * 3`` is an error, so no string repetition). Integers follow
  Java ``long`` arithmetic: ``/`` truncates toward zero (``-7 / 2`` is ``-3``), ``%`` takes the sign
  of the dividend, results wrap at 64 bits. A float operand gives float arithmetic (division by
  zero gives ``Infinity``/``NaN`` as in Java).
- ``~``: concatenation of the Java strings of both sides (null prints as an empty string).
- ``==``/``equals``: numbers compare by value (``1 == 1.0``), a boolean never equals a number.
- ``<``, ``>``, ``<=``, ``>=``: numbers only; a null operand gives false.
- ``contains``: a list/map (keys)/string contains the right side (all items when it is a list).
- ``in`` / ``not in``: the left side is an item of the right side.
- ``..`` and ``range(start, end, step)``: inclusive, bounded to ``MAX_RANGE_SIZE`` items.

Every operator first checks the render deadline and raises the undefined-variable error for an
undefined operand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from controlplane.expressions import limits
from controlplane.expressions.errors import EvaluationError
from controlplane.expressions.values import (
    JAVA_LONG_MAX,
    JAVA_LONG_MIN,
    Entry,
    fail_if_undefined,
    is_number,
    java_string,
)

_OPERATION_NAMES = {"+": "ADD", "-": "SUBTRACT", "*": "MULTIPLICATION", "/": "DIVISION", "%": "MODULUS"}


def _wrap_long(value: int) -> int:
    """Java ``long`` overflow: keep the low 64 bits, signed."""
    if JAVA_LONG_MIN <= value <= JAVA_LONG_MAX:
        return value
    value &= (1 << 64) - 1
    return value - (1 << 64) if value > JAVA_LONG_MAX else value


def _numeric(operator: str, left: Any, right: Any) -> int | float:
    if not is_number(left) or not is_number(right):
        raise EvaluationError(
            f"invalid operands for mathematical operation [{_OPERATION_NAMES.get(operator, operator)}]: "
            f"{type(left).__name__} {operator} {type(right).__name__}"
        )
    if isinstance(left, float) or isinstance(right, float):
        a, b = float(left), float(right)
        if operator == "+":
            return a + b
        if operator == "-":
            return a - b
        if operator == "*":
            return a * b
        if operator == "/":
            if b == 0:
                return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
            return a / b
        if b == 0:
            return math.nan
        return math.fmod(a, b)
    a, b = int(left), int(right)
    if operator == "+":
        return _wrap_long(a + b)
    if operator == "-":
        return _wrap_long(a - b)
    if operator == "*":
        return _wrap_long(a * b)
    if b == 0:
        raise EvaluationError("/ by zero")
    quotient = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        quotient = -quotient
    if operator == "/":
        return _wrap_long(quotient)
    return _wrap_long(a - quotient * b)


def binary(operator: str, left: Any, right: Any) -> Any:
    """Pebble's ``+ - * / %`` (and a clear error for Jinja-only ``//`` and ``**``)."""
    limits.check_deadline()
    fail_if_undefined(left)
    fail_if_undefined(right)
    if operator == "+":
        if isinstance(left, str) or isinstance(right, str):
            return concat(left, right, null_text="null")
        if isinstance(left, list | tuple):
            extra = list(right) if isinstance(right, list | tuple) else [right]
            limits.check_collection_size(len(left) + len(extra))
            return [*left, *extra]
    if operator == "-" and isinstance(left, list | tuple):
        removed = list(right) if isinstance(right, list | tuple) else [right]
        if isinstance(right, list | tuple):
            return [item for item in left if item not in removed]
        result = list(left)
        if right in result:
            result.remove(right)
        return result
    if operator in _OPERATION_NAMES:
        return _numeric(operator, left, right)
    raise EvaluationError(f"operator '{operator}' does not exist in Pebble")


def unary(operator: str, operand: Any) -> Any:
    """Pebble's unary ``-`` and ``+`` (numbers only)."""
    limits.check_deadline()
    fail_if_undefined(operand)
    if not is_number(operand):
        raise EvaluationError(f"invalid operand for unary '{operator}': {type(operand).__name__}")
    if operator == "-":
        return _wrap_long(-operand) if isinstance(operand, int) else -operand
    return operand


def concat(left: Any, right: Any, null_text: str = "") -> str:
    """Pebble's ``~`` (and string ``+``): both sides as Java strings, bounded in length."""
    limits.check_deadline()
    fail_if_undefined(left)
    fail_if_undefined(right)
    texts = [null_text if v is None else java_string(v) for v in (left, right)]
    limits.check_string_length(len(texts[0]) + len(texts[1]), "concatenated string")
    return texts[0] + texts[1]


def equals(left: Any, right: Any) -> bool:
    """Pebble's ``==``: numbers by value, a boolean never equals a number, else Java ``equals``."""
    limits.check_deadline()
    fail_if_undefined(left)
    fail_if_undefined(right)
    if is_number(left) and is_number(right):
        return left == right
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    if type(left) is not type(right) and (is_number(left) or is_number(right)):
        return False
    return bool(left == right)


def compare(operator: str, left: Any, right: Any) -> bool:
    """Pebble's ``< > <= >=``: numbers only; null on either side gives false."""
    limits.check_deadline()
    fail_if_undefined(left)
    fail_if_undefined(right)
    if left is None or right is None:
        return False
    if not is_number(left) or not is_number(right):
        raise EvaluationError(
            f"invalid operands for mathematical comparison [{operator}]: {type(left).__name__} and {type(right).__name__}"
        )
    if operator == "<":
        return left < right
    if operator == ">":
        return left > right
    if operator == "<=":
        return left <= right
    return left >= right


def _contains_one(container: Any, item: Any) -> bool:
    if isinstance(container, Mapping):
        return item in container.keys()
    if isinstance(container, str):
        return java_string(item) in container
    return any(equals(element, item) for element in container)


def contains(container: Any, item: Any) -> bool:
    """Pebble's ``contains``: list item, map key or substring; a list on the right needs all."""
    limits.check_deadline()
    fail_if_undefined(container)
    fail_if_undefined(item)
    if container is None:
        return False
    if not isinstance(container, Mapping | list | tuple | str):
        raise EvaluationError(f"'contains' needs a list, map or string on its left, not {type(container).__name__}")
    if isinstance(item, list | tuple) and not isinstance(container, str):
        return all(_contains_one(container, element) for element in item)
    return _contains_one(container, item)


def is_in(item: Any, container: Any) -> bool:
    """Kestra's ``in``: ``item`` is an element of the list (a key of the map, part of the string)."""
    limits.check_deadline()
    fail_if_undefined(item)
    fail_if_undefined(container)
    if container is None:
        return False
    if not isinstance(container, Mapping | list | tuple | str):
        raise EvaluationError(f"'in' needs a list, map or string on its right, not {type(container).__name__}")
    return _contains_one(container, item)


def pebble_range(start: Any, end: Any, increment: Any = 1) -> list[Any]:
    """Pebble's inclusive ``range(start, end, increment)`` of numbers or single characters.

    Raises:
        EvaluationError: bad arguments, zero increment.
        LimitError: more than ``MAX_RANGE_SIZE`` items.
    """
    limits.check_deadline()
    for value in (start, end, increment):
        fail_if_undefined(value)
    if not is_number(increment):
        raise EvaluationError(f"The increment of the range function must be a number {increment}")
    step = int(increment)
    if step == 0:
        raise EvaluationError("The increment of the range function must be different than 0")
    if is_number(start) and is_number(end):
        first, last = int(start), int(end)
        chars = False
    elif isinstance(start, str) and isinstance(end, str):
        if len(start) != 1 or len(end) != 1:
            raise EvaluationError("Arguments of range function must be of type Number or String with a length of 1")
        first, last, chars = ord(start), ord(end), True
    else:
        raise EvaluationError("Arguments of range function must be of type Number or String with a length of 1")
    size = 0 if (step > 0 and first > last) or (step < 0 and first < last) else abs(last - first) // abs(step) + 1
    if size > limits.MAX_RANGE_SIZE:
        raise limits.LimitError(
            f"The range function cannot produce more than {limits.MAX_RANGE_SIZE} elements, "
            f"but this call would produce {size}."
        )
    stop = last + (1 if step > 0 else -1)
    numbers = range(first, stop, step)
    return [chr(n) for n in numbers] if chars else list(numbers)


def iterate(value: Any) -> Iterable[Any]:
    """What ``{% for x in value %}`` walks: a list's items, a map's entries; null is empty.

    Checks the render deadline at every step, so long and nested loops end in time.
    """
    fail_if_undefined(value)
    if value is None:
        items: Iterable[Any] = ()
    elif isinstance(value, Mapping):
        items = [Entry(key=k, value=v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise EvaluationError(f"Cannot iterate over a value of type {type(value).__name__}")
    return _checked(items)


def _checked(items: Iterable[Any]) -> Iterable[Any]:
    for item in items:
        limits.check_deadline()
        yield item
