"""``io.kestra.plugin.core.execution.Fail``: fails the task run, optionally on a condition.

Kestra reference: ``io.kestra.plugin.core.execution.Fail`` and ``TruthUtils`` (FEATURES.md §3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import to_text

TYPE = "io.kestra.plugin.core.execution.Fail"
DEFAULT_MESSAGE = "Task failure"
_FALSE_VALUES = frozenset({"false", "0", "-0", ""})


def is_truthy(value: Any) -> bool:
    """Kestra's truthiness of a rendered value: null, "false", "0", "-0" and "" are false.

    Non-strings are compared by their printed form (``False`` → "false", ``0`` → "0").
    The comparison is exact, as in Kestra (no trimming, case-sensitive).
    """
    return value is not None and to_text(value) not in _FALSE_VALUES


def fail(ctx: TaskContext, props: Mapping[str, Any]) -> None:
    """Fails with ``errorMessage``, unconditionally or when ``condition`` is truthy.

    Properties:
        condition (str | bool | number): Optional; when present (not null) the task fails only
            if it is truthy (see `is_truthy`), otherwise it succeeds.
        errorMessage (str): The failure message; default "Task failure".

    Returns:
        None when the condition is falsy.

    Raises:
        TaskFailure: Always when there is no condition, else when the condition is truthy.
            Kestra fails a conditional Fail with "Fail on a condition" and logs ``errorMessage``;
            we fail with ``errorMessage`` itself (more useful, and the worker logs it too).
    """
    message = props.get("errorMessage")
    message = DEFAULT_MESSAGE if message is None else to_text(message)
    condition = props.get("condition")
    if condition is not None and not is_truthy(condition):
        return None
    raise TaskFailure(message)
