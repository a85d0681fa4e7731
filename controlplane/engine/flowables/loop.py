"""What the loop flowables share: their values and how value groups start.

Kestra's ``FlowableUtils.resolveEachTasks`` / ``resolveValues`` and ``resolveConcurrentNexts``:

- ``values`` (ForEach) / ``value`` (EachSequential, EachParallel) is a YAML list or a string
  that renders to a JSON array. Items that are strings are kept as they are; other items become
  their compact JSON text (``1``, ``{"key":"a"}``); duplicates are dropped (first one kept); a
  null item fails the loop ("Found '1' null values on Each, with values=[…]").
- For each value the loop's ``tasks`` form a group; the *direct* children of the loop carry
  the value (``taskrun.value``), deeper tasks reach it through ``parent``/``parents``.
- Groups start in value order. Within a group the tasks run one after another; at most
  ``limit`` groups are in progress at once (0 = unlimited) and a new group starts as soon as
  one ends: a sliding window, not batches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from controlplane.engine.flowables.props import to_json
from controlplane.engine.plan import FlowableError
from controlplane.engine.sequence import Progress, sequential_progress
from controlplane.engine.view import ExecutionView
from controlplane.model import Task

MAX_LOOP_VALUES = 10_000
"""Most values one loop task may iterate over (each is a task run group tracked by the executor)."""
MAX_LOOP_VALUE_BYTES = 2048
"""Longest loop value (UTF-8 bytes): values are part of the task-run identity key in Postgres."""


def resolve_values(rendered: Any, *, task_id: str, prop: str) -> list[str]:
    """The loop values from a rendered ``values``/``value`` property.

    Args:
        rendered: The property after rendering: a list, or a string holding a JSON array.
        task_id / prop: For error messages.

    Returns:
        Distinct values as strings, in order.

    Raises:
        FlowableError: not a list or JSON array text, a null item, more than `MAX_LOOP_VALUES`
            values or a value longer than `MAX_LOOP_VALUE_BYTES`.
    """
    items = rendered
    if isinstance(rendered, str):
        try:
            items = json.loads(rendered)
        except json.JSONDecodeError as exc:
            raise FlowableError(
                f"task '{task_id}': property '{prop}' must be a list or a JSON array, got {rendered!r} ({exc.msg})"
            ) from None
    if isinstance(items, dict):
        raise FlowableError(f"task '{task_id}': property '{prop}': maps are not supported in values, give a list")
    if not isinstance(items, list | tuple):
        raise FlowableError(f"task '{task_id}': property '{prop}' must be a list or a JSON array, got {rendered!r}")
    nulls = sum(1 for item in items if item is None)
    if nulls:
        raise FlowableError(f"task '{task_id}': Found '{nulls}' null values on Each, with values={to_json(list(items))}")
    if len(items) > MAX_LOOP_VALUES:
        raise FlowableError(
            f"task '{task_id}': property '{prop}' has {len(items)} values, more than the limit of "
            f"{MAX_LOOP_VALUES}; use ForEachItem or subflows for larger batches"
        )
    values: list[str] = []
    seen: set[str] = set()
    for item in items:
        text = item if isinstance(item, str) else to_json(item)
        if len(text.encode("utf-8", "surrogatepass")) > MAX_LOOP_VALUE_BYTES:
            raise FlowableError(
                f"task '{task_id}': property '{prop}': a value is longer than {MAX_LOOP_VALUE_BYTES} bytes "
                f"({text[:60]!r}…); loop over keys or indexes and look the data up instead"
            )
        if text not in seen:
            seen.add(text)
            values.append(text)
    return values


def stored_values(properties: dict[str, Any] | None) -> list[str]:
    """The values a loop stored when it started (empty when it stored none)."""
    return list((properties or {}).get("values") or ())


def grouped_progress(
    view: ExecutionView, parent_id: str, tasks: Sequence[Task], values: Sequence[str], limit: int
) -> Progress:
    """One sequential group of ``tasks`` per value, at most ``limit`` groups in progress (0 = all).

    A group is in progress from its first task run until its last one ends; groups start in
    value order, so with ``limit`` 1 this is the whole loop run one task after another.
    """
    total = Progress()
    in_progress = 0
    pending: list[Progress] = []
    for value in values:
        group = sequential_progress(view, parent_id, "tasks", tasks, value)
        if not group.runs:
            if group.ready:
                pending.append(group)
                total.exhausted = False
            continue
        total.runs.extend(group.runs)
        total.ready.extend(group.ready)
        total.exhausted = total.exhausted and group.exhausted
        if not group.finished:
            in_progress += 1
    for group in pending:
        if limit and in_progress >= limit:
            break
        total.ready.extend(group.ready)
        in_progress += 1
    return total
