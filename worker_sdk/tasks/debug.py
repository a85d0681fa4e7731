"""``io.kestra.plugin.core.debug.Return`` and the deprecated ``io.kestra.plugin.core.debug.Echo``.

Kestra reference: FEATURES.md §3.2 (``debug.Return``, ``debug.Echo``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker_sdk.context import TaskContext
from worker_sdk.tasks._props import required, to_text
from worker_sdk.tasks.log import level_of

RETURN_TYPE = "io.kestra.plugin.core.debug.Return"
ECHO_TYPE = "io.kestra.plugin.core.debug.Echo"


def return_(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``format`` as the output ``value``.

    Properties:
        format (str): The (already rendered) text to return.

    Returns:
        ``{"value": format}`` with ``format`` as text (Kestra's ``format`` is a String property,
        so ``{{ 6 * 7 }}`` returns ``"42"`` and an expression rendering null returns ``""``, as
        Pebble prints null); without ``format`` the value is null.
    """
    if "format" not in props:
        return {"value": None}
    value = props["format"]
    return {"value": "" if value is None else to_text(value)}


def echo(ctx: TaskContext, props: Mapping[str, Any]) -> None:
    """Logs ``format`` at ``level`` (deprecated in Kestra in favour of Log).

    Properties:
        format (str): Required. The text to log.
        level (str): TRACE, DEBUG, INFO (default), WARN or ERROR.

    Returns:
        None: the task has no outputs.

    Raises:
        TaskFailure: ``format`` is missing or ``level`` is unknown.
    """
    ctx.log.log(level_of(props), to_text(required(props, "format")))
    return None
