"""``io.kestra.plugin.core.execution.Labels``: add or override labels of the running execution.

As Kestra (which applies it in the executor): ``labels`` is a map (keys and values rendered), a
list of ``{key, value}``, or an expression rendering to either (e.g. a JSON input); values
become text (``42``, ``true``, ``3.14``). The labels are merged into the execution's, later
tasks see them as ``labels.*``; ``system.*`` labels cannot be set. The task run ends SUCCESS.
"""

from __future__ import annotations

import json
from typing import Any

from controlplane.engine.flowables.props import as_text
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task, TaskRun

TYPE = "io.kestra.plugin.core.execution.Labels"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``labels`` to a ``{key: text}`` map, stored as ``properties["labels"]``.

    Raises:
        FlowableError: ``labels`` missing, of another shape, with an empty key or a ``system.``
            key.
    """
    if task.properties.get("labels") is None:
        raise FlowableError(f"task '{task.id}': property 'labels' is required")
    raw: Any = render(task.properties["labels"], "labels")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise FlowableError(f"task '{task.id}': property 'labels' rendered to text that is not a JSON map or "
                                "list") from None
    labels: dict[str, str] = {}
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(item, dict) and "key" in item for item in raw):
        pairs = [(item["key"], item.get("value")) for item in raw]
    else:
        raise FlowableError(f"task '{task.id}': property 'labels' must be a map or a list of {{key, value}}")
    for key, value in pairs:
        name = as_text(key) or ""
        if not name.strip():
            raise FlowableError(f"task '{task.id}': property 'labels': a label key is empty")
        if name.startswith("system."):
            raise FlowableError(f"task '{task.id}': property 'labels': system label '{name}' cannot be set")
        labels[name] = as_text(value) or ""
    return Prepared(properties={"labels": labels})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """The executor applied the labels when the task run started: done."""
    return Step(done=State.KILLED if killed else State.SUCCESS)
