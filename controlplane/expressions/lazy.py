"""Pebble constructs that guard or delay evaluating their operands.

The compiler calls these with one thunk (zero-argument callable) per operand (see
``compiler.py``):

- ``a ?? b ?? c`` (:func:`coalesce`): the first operand that is defined and not null; an operand
  whose evaluation hits an undefined variable or attribute counts as undefined. The last operand
  is returned as is, so if it is undefined too the usual "Unable to find" error follows.
- ``a ??? b`` (:func:`undefined_coalesce`): falls back only when ``a`` is undefined (a null ``a``
  is kept), as Kestra's ``???``.
- ``a is defined`` (:func:`defined`): false when ``a`` is undefined or null (Pebble's
  ``DefinedTest`` is the negation of ``null``), never an error.
- ``a | default(b)`` (:func:`default`): ``b`` when ``a`` is undefined, null, a blank string or an
  empty collection (Pebble's ``DefaultFilter`` uses the ``empty`` test).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

from controlplane.expressions import limits
from controlplane.expressions.values import is_empty

_MISSING = object()


def _attempt(thunk: Callable[[], Any]) -> Any:
    """The operand's value, or ``_MISSING`` when it is undefined."""
    limits.check_deadline()
    try:
        value = thunk()
    except UndefinedError:
        return _MISSING
    return _MISSING if isinstance(value, Undefined) else value


def coalesce(*thunks: Callable[[], Any]) -> Any:
    """``??``: the first defined, non-null operand (the last one otherwise)."""
    for thunk in thunks[:-1]:
        value = _attempt(thunk)
        if value is not _MISSING and value is not None:
            return value
    return thunks[-1]()


def undefined_coalesce(*thunks: Callable[[], Any]) -> Any:
    """``???``: the first defined operand, null included (the last one otherwise)."""
    for thunk in thunks[:-1]:
        value = _attempt(thunk)
        if value is not _MISSING:
            return value
    return thunks[-1]()


def defined(thunk: Callable[[], Any]) -> bool:
    """``is defined``: neither undefined nor null."""
    value = _attempt(thunk)
    return value is not _MISSING and value is not None


def default(thunk: Callable[[], Any], fallback: Callable[[], Any]) -> Any:
    """``| default(x)``: ``x`` when the input is undefined or empty."""
    value = _attempt(thunk)
    if value is _MISSING or is_empty(value):
        return fallback()
    return value


LAZY: dict[str, Callable[..., Any]] = {
    "coalesce": coalesce,
    "undefcoalesce": undefined_coalesce,
    "defined": defined,
    "default": default,
}
