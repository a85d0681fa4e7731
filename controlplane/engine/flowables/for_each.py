"""``io.kestra.plugin.core.flow.ForEach``: run ``tasks`` once per value of ``values``.

As Kestra's ``ForEach`` (see ``flowables.loop`` for values and groups): ``values`` is rendered
once when the ForEach starts; ``concurrencyLimit`` (default 1) is how many value groups may be
in progress at once: 1 runs every group after the previous one, 0 runs all groups at once, N
keeps N groups going and starts the next as soon as one ends (a sliding window, not batches).
Tasks inside a group always run one after another. An empty list ends SUCCESS with no child;
a null value fails the ForEach. When a child fails nothing new starts, the ForEach's ``errors``
run, and it ends FAILED once the running groups have stopped.
"""

from __future__ import annotations

from controlplane.engine.flowables.loop import grouped_progress, resolve_values, stored_values
from controlplane.engine.flowables.props import as_count
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import group_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.ForEach"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``values`` and ``concurrencyLimit``.

    Raises:
        FlowableError: ``values`` missing, not a list, or holding a null; a bad limit.
    """
    if task.properties.get("values") is None:
        raise FlowableError(f"task '{task.id}': property 'values' is required")
    values = resolve_values(render(task.properties["values"], "values"), task_id=task.id, prop="values")
    limit = as_count(render(task.properties.get("concurrencyLimit"), "concurrencyLimit"),
                     task_id=task.id, prop="concurrencyLimit", default=1)
    return Prepared(properties={"values": values, "concurrencyLimit": limit})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Next children within the concurrency window, or the final state."""
    properties = task_run.properties or {}
    limit = int(properties.get("concurrencyLimit", 1))
    progress = grouped_progress(view, task_run.id, task.tasks, stored_values(properties), limit)
    return group_step(view, task_run.id, progress, task.errors, task.finally_, killed=killed)
