"""``io.kestra.plugin.core.flow.EachSequential`` (deprecated in Kestra): ForEach with limit 1.

As Kestra's ``EachSequential``: ``value`` (a list or JSON array text, rendered once at start)
gives the values; for each value in turn the ``tasks`` run one after another, the direct
children carrying the value (``taskrun.value``). See ``flowables.loop``.
"""

from __future__ import annotations

from controlplane.engine.flowables.loop import grouped_progress, resolve_values, stored_values
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import group_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.EachSequential"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``value`` into the loop values.

    Raises:
        FlowableError: ``value`` missing, not a list, or holding a null.
    """
    if task.properties.get("value") is None:
        raise FlowableError(f"task '{task.id}': property 'value' is required")
    values = resolve_values(render(task.properties["value"], "value"), task_id=task.id, prop="value")
    return Prepared(properties={"values": values})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """The next child, value after value, or the final state."""
    progress = grouped_progress(view, task_run.id, task.tasks, stored_values(task_run.properties), 1)
    return group_step(view, task_run.id, progress, task.errors, task.finally_, killed=killed)
