"""Sandbox limits: every expression ends, with a clear error, in bounded time and memory.

The limits (module constants, read at call time so tests may lower them):

- ``RENDER_TIMEOUT_SECONDS`` (0.5 s): wall time for one top-level render, shared by nested
  ``render()`` calls. Checked on every attribute/item access, call, operator and loop iteration,
  so loops (including nested ones and recursive macros) stop within a few milliseconds of it.
- ``MAX_STRING_LENGTH`` (10 Mi characters): any string an operator or filter builds, and the
  rendered text. Checked *before* building where the size can be computed (``~``, ``+``,
  ``replace``, ``join``, ``indent``), so a doubling loop or a huge repeat never allocates.
- ``MAX_COLLECTION_SIZE`` (1,000,000 items): lists built by ``+``, ``merge``, ``flatten``,
  parsed YAML (aliases expanded).
- ``MAX_RANGE_SIZE`` (1,000,000 items): ``range()``/``..``, as Kestra's BoundedRangeFunction.
- ``MAX_NESTING`` (64): nesting of brackets/operators in one expression.
- ``MAX_TEMPLATE_TOKENS`` (10,000): tokens of one template (text runs, names, operators…),
  checked after lexing and before compiling, which cannot be interrupted by the deadline.
- Regular expressions (``replace(regexp=true)``, ``split``, ``date`` parsing) run on the
  ``regex`` module with the render's remaining time as timeout, so a backtracking pattern stops.
- ``MAX_JQ_PROGRAM_LENGTH`` (64 Ki characters) per jq program; ``yaml()`` checks the deadline
  for every node it composes and constructs.
- ``MAX_RENDER_DEPTH`` (8) nested ``render()`` calls and ``MAX_RENDER_ROUNDS`` (16) rounds of a
  recursive ``render()``.
- Integers follow Java ``long`` arithmetic (64-bit, wrapping), as Pebble's, so numbers stay small.
- ``jq`` programs other than plain paths run in a helper process with an empty environment, a
  1 GiB address-space limit and the render deadline as timeout (see ``jq.py``).
- Attribute access reaches map keys, list indexes and loop properties only; names starting with
  ``__`` are refused; only registered filters, functions and tests exist; ``*``, ``/``, ``%``
  take numbers only (no string repetition or ``%`` formatting); there is no ``**``.
"""

from __future__ import annotations

import time

from controlplane.expressions import state
from controlplane.expressions.errors import LimitError

RENDER_TIMEOUT_SECONDS = 0.5
MAX_STRING_LENGTH = 10 * 1024 * 1024
MAX_COLLECTION_SIZE = 1_000_000
MAX_RANGE_SIZE = 1_000_000
MAX_NESTING = 64
MAX_TEMPLATE_TOKENS = 10_000
MAX_JQ_PROGRAM_LENGTH = 64 * 1024
MAX_RENDER_DEPTH = 8
MAX_RENDER_ROUNDS = 16


def check_deadline() -> None:
    """Raise :class:`LimitError` when the render in progress is past its deadline."""
    current = state.current()
    if current is not None and time.monotonic() > current.deadline:
        raise LimitError(
            f"rendering took longer than the {RENDER_TIMEOUT_SECONDS:g} s limit (loop too long?)"
        )


def remaining_seconds(default: float = RENDER_TIMEOUT_SECONDS) -> float:
    """Seconds left before the deadline of the render in progress (``default`` outside one)."""
    current = state.current()
    if current is None:
        return default
    return max(0.0, current.deadline - time.monotonic())


def extend_deadline(seconds: float) -> None:
    """Move the deadline of the render in progress later by ``seconds`` (time spent on setup
    that is not the template's doing, e.g. starting the jq helper process)."""
    current = state.current()
    if current is not None:
        current.budget.deadline += seconds


def check_string_length(length: int, what: str = "string") -> None:
    """Raise when a string of ``length`` characters would exceed ``MAX_STRING_LENGTH``."""
    if length > MAX_STRING_LENGTH:
        raise LimitError(f"{what} would be {length} characters long, more than the limit of {MAX_STRING_LENGTH}")


def check_collection_size(size: int, what: str = "list") -> None:
    """Raise when a collection of ``size`` items would exceed ``MAX_COLLECTION_SIZE``."""
    if size > MAX_COLLECTION_SIZE:
        raise LimitError(f"{what} would have {size} items, more than the limit of {MAX_COLLECTION_SIZE}")


def regex_timeout() -> float:
    """Timeout (seconds) for one regular-expression operation of the render in progress: its
    remaining time, at least 1 ms (the ``regex`` module's ``timeout`` argument)."""
    return max(remaining_seconds(), 0.001)


def regex_timed_out(pattern: str) -> LimitError:
    """The error for a regular expression that ran out of time (catastrophic backtracking)."""
    return LimitError(
        f"regular expression '{pattern[:200]}' took longer than the {RENDER_TIMEOUT_SECONDS:g} s "
        "render limit (catastrophic backtracking?)"
    )
