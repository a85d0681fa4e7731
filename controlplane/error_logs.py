"""``errorLogs()`` in expressions: the ERROR-level log lines of the current execution.

As Kestra's ``ErrorLogsFunction`` (used in ``errors`` handlers to report what failed): a list of
log entries, oldest first, each a map with ``taskId``, ``taskRunId``, ``attemptNumber``,
``level``, ``message``, ``timestamp`` (ISO-8601), ``executionId``, ``namespace`` and ``flowId``.

Like ``read()``/``kv()``, it runs inside a synchronous render and reads Postgres through the small
synchronous pool of :mod:`controlplane.storage.render` (one indexed query, at most
`MAX_ERROR_LOGS` rows, 2 s statement timeout).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from controlplane.expressions.errors import EvaluationError
from controlplane.storage import render as storage_render
from controlplane.store import tables as t

MAX_ERROR_LOGS = 1000
"""Most entries ``errorLogs()`` returns (the oldest ones)."""


def error_logs(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``errorLogs()``: the ERROR log lines of the execution being rendered (``context`` is the
    render's variables).

    Raises:
        EvaluationError: no execution in the render context, or no control plane running here.
    """
    execution = context.get("execution") or {}
    flow = context.get("flow") or {}
    execution_id = execution.get("id") if isinstance(execution, Mapping) else None
    if not isinstance(execution_id, str) or not execution_id:
        raise EvaluationError("The 'errorLogs()' function needs an execution in the context")
    lookups = storage_render.current("errorLogs")
    query = (
        select(t.logs.c.task_id, t.logs.c.task_run_id, t.logs.c.attempt, t.logs.c.level,
               t.logs.c.message, t.logs.c.timestamp)
        .where(t.logs.c.execution_id == execution_id, t.logs.c.level == "ERROR")
        .order_by(t.logs.c.seq)
        .limit(MAX_ERROR_LOGS)
    )
    with lookups.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "taskId": row.task_id,
            "taskRunId": row.task_run_id,
            "attemptNumber": row.attempt,
            "level": row.level,
            "message": row.message,
            "timestamp": row.timestamp.isoformat().replace("+00:00", "Z"),
            "executionId": execution_id,
            "namespace": flow.get("namespace") if isinstance(flow, Mapping) else None,
            "flowId": flow.get("id") if isinstance(flow, Mapping) else None,
        }
        for row in rows
    ]

