"""``io.kestra.plugin.core.log.Log``: writes one or more log lines.

Kestra reference: ``io.kestra.plugin.core.log.Log`` (FEATURES.md §3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure, normalize_level
from worker_sdk.tasks._props import required, string_list

TYPE = "io.kestra.plugin.core.log.Log"


def log(ctx: TaskContext, props: Mapping[str, Any]) -> None:
    """Logs ``message`` at ``level``.

    Properties:
        message (str | list[str]): Required. A list logs one line per item.
        level (str): TRACE, DEBUG, INFO (default), WARN or ERROR.

    Returns:
        None: the task has no outputs.

    Raises:
        TaskFailure: ``message`` is missing, or ``level`` is not a known level.
    """
    messages = string_list(required(props, "message"), "message")
    level = level_of(props)
    for message in messages:
        ctx.log.log(level, message)
    return None


def level_of(props: Mapping[str, Any]) -> str:
    """Reads the ``level`` property (default INFO).

    Raises:
        TaskFailure: Unknown level.
    """
    try:
        return normalize_level(props.get("level") or "INFO")
    except ValueError as exc:
        raise TaskFailure(f"property 'level': {exc}") from None
