"""How filters, functions and tests are called from templates.

Every callable is wrapped by :func:`pebble_callable`, which gives it Pebble's strict-variable
behaviour (an undefined argument is the usual "Unable to find" error, not a silent value), checks
the render deadline, and turns a wrong argument list into a clear message naming the filter or
function and its Pebble argument names (``The 'substringBefore' filter expects the arguments
(separator)``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from controlplane.expressions import limits
from controlplane.expressions.errors import EvaluationError
from controlplane.expressions.values import fail_if_undefined


def _describe(signature: inspect.Signature, skip_first: bool) -> str:
    names = [
        p.name + ("..." if p.kind is p.VAR_POSITIONAL else "")
        for p in signature.parameters.values()
        if p.kind is not p.VAR_KEYWORD
    ]
    return ", ".join(names[1:] if skip_first else names)


def pebble_callable(kind: str, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``func`` as the Pebble ``kind`` (``filter``, ``function``, ``test``) called ``name``.

    For filters and tests the first positional argument is the input.
    """
    signature = inspect.signature(func)
    skip_first = kind in ("filter", "test")

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        limits.check_deadline()
        for value in args:
            fail_if_undefined(value)
        for value in kwargs.values():
            fail_if_undefined(value)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise EvaluationError(
                f"The '{name}' {kind} expects the arguments ({_describe(signature, skip_first)}): {exc}"
            ) from None
        return func(*args, **kwargs)

    return call
