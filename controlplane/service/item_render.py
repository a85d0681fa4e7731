"""Per-item expression rendering for the item tasks (``storage.FilterItems`` ``filterCondition``,
``storage.DeduplicateItems`` ``expr``), served to workers by ``WorkerService.RenderItems``.

Where the evaluation happens, and why: Kestra evaluates these expressions on its worker, where
its Pebble engine lives. Here the expression engine lives only in the control plane
(``controlplane/expressions``) and workers in other languages have none. The file itself stays
on the worker: the worker streams it, sends the items a batch at a time (at most
:data:`MAX_ITEMS` items, :data:`MAX_BYTES` bytes per call) and gets one rendered value per item.
So the control plane never holds the file, only one batch at a time, and a task in a Node
worker can use the same RPC. (Running the task in the control plane instead would block the
executor's event loop for the whole file and hold the execution's row lock meanwhile.)

Those two properties are not rendered when the task is dispatched:
they reach the worker as written and are rendered here per item
(``controlplane.flows.catalogue.UNRENDERED_PROPERTIES``).

Variables: those of the task run (``inputs``, ``outputs``, ``vars``, ``execution``…) plus the
item's fields at the top level (a field named like a variable hides it, as Kestra's additional
variables do). An item that is not a JSON map is an error for that item.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.engine.context import expression_context
from controlplane.engine.view import ExecutionView
from controlplane.errors import ExpressionError, InvalidArgumentError, NotFoundError
from controlplane.expressions import render
from controlplane.model import Flow
from controlplane.storage.scope import scope_for_token
from controlplane.store import repository as repo
from controlplane.tokens import TaskTokenSigner

#: Most items one call renders.
MAX_ITEMS = 1000
#: Most bytes of item JSON one call carries.
MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RenderedItem:
    """One item's result: ``value`` (JSON-ready) when ``error`` is None."""

    value: Any = None
    error: str | None = None


async def render_items(
    conn: AsyncConnection,
    signer: TaskTokenSigner,
    load_flow: Callable[[Any, str, str, int], Awaitable[Flow]],
    globals_: dict[str, Any],
    task_token: str,
    expression: str,
    items_json: Sequence[str],
) -> list[RenderedItem]:
    """Render ``expression`` once per item for the task run the token names.

    Args:
        conn: An open transaction (read only here).
        signer / load_flow / globals_: The control plane's token signer, flow loader and globals.
        task_token: The worker's token for a RUNNING attempt.
        expression: The template.
        items_json: One JSON text per item.

    Returns:
        One :class:`RenderedItem` per item, in order.

    Raises:
        InvalidArgumentError: a bad token, an empty or oversized batch, an expression that does
            not parse (naming ``expression``). NotFoundError: a stale token or a task run gone.
    """
    if not expression or not expression.strip():
        raise InvalidArgumentError("expression: required")
    if len(items_json) > MAX_ITEMS:
        raise InvalidArgumentError(f"items_json: at most {MAX_ITEMS} items per call, got {len(items_json)}")
    if sum(len(i) for i in items_json) > MAX_BYTES:
        raise InvalidArgumentError(f"items_json: at most {MAX_BYTES} bytes per call")
    scope = await scope_for_token(conn, signer, task_token, current=True)
    execution = await repo.get_execution(conn, scope.execution_id)
    if execution is None:
        raise NotFoundError(f"execution {scope.execution_id} not found")
    flow = await load_flow(conn, execution.namespace, execution.flow_id, execution.flow_revision)
    view = ExecutionView(flow, execution)
    task_run = view.get(scope.task_run_id)
    task = flow.find_task(task_run.task_id)
    base = expression_context(flow, execution, view, task, task_run, globals_)
    where = f"task '{task.id}' expression"
    results: list[RenderedItem] = []
    for index, text in enumerate(items_json):
        try:
            item = json.loads(text)
        except ValueError as exc:
            results.append(RenderedItem(error=f"item {index + 1} is not JSON: {exc}"))
            continue
        except RecursionError:
            results.append(RenderedItem(error="the item is nested too deeply to read"))
            continue
        if not isinstance(item, dict):
            results.append(RenderedItem(error=f"item {index + 1} is not a map, so it has no fields to read"))
            continue
        try:
            value = render(expression, {**base, **item}, where=where)
            json.dumps(value, allow_nan=False)
        except ExpressionError as exc:
            results.append(RenderedItem(error=str(exc)))
            continue
        except RecursionError:
            results.append(RenderedItem(error=f"{where} cannot be rendered: the item is nested too deeply"))
            continue
        except (TypeError, ValueError):
            value = str(value)
        results.append(RenderedItem(value=value))
    return results
