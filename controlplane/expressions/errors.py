"""Errors raised while evaluating an expression, before the engine names the template and place.

Filters, functions, tests and operators raise :class:`EvaluationError` with a Pebble-like
message ("The 'jq' filter expects an argument 'expression'."); the engine turns it into the
public :class:`controlplane.errors.ExpressionError`, adding the template text and where it was
(task and property), so callers only ever see ``ExpressionError``.
"""

from __future__ import annotations


class EvaluationError(Exception):
    """An expression could not be evaluated (bad argument, wrong type, unavailable service)."""


class LimitError(EvaluationError):
    """A sandbox limit was hit (time, string size, collection size, nesting); see ``limits``."""


class PebbleSyntaxError(EvaluationError):
    """The template is not valid Pebble syntax.

    Args:
        message: What is wrong.
        position: 0-based character offset in the template, when known.
    """

    def __init__(self, message: str, position: int | None = None, source: str | None = None) -> None:
        self.position = position
        if position is not None and source is not None:
            line = source.count("\n", 0, position) + 1
            message = f"{message} (line {line}, column {position - (source.rfind(chr(10), 0, position) + 1) + 1})"
        super().__init__(message)
