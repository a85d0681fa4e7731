"""``io.kestra.plugin.core.flow.EachParallel`` (deprecated in Kestra): every task for every value at once.

As Kestra's ``EachParallel`` (``resolveParallelNexts`` over the values x tasks): ``value`` (a
list or JSON array text, rendered once at start) gives the values, and each task of each value
is started together, without order, even tasks of the same value (wrap them in a Sequential to
keep them in order). ``concurrent: N`` (N > 0) keeps at most N of those children unfinished at
once; 0 (the default) means no limit. Direct children carry the value. See ``flowables.loop``.
"""

from __future__ import annotations

from controlplane.engine.flowables.loop import resolve_values, stored_values
from controlplane.engine.flowables.props import as_count
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import concurrent_progress, group_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.EachParallel"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``value`` into the loop values, and ``concurrent``.

    Raises:
        FlowableError: ``value`` missing, not a list, or holding a null; a bad ``concurrent``.
    """
    if task.properties.get("value") is None:
        raise FlowableError(f"task '{task.id}': property 'value' is required")
    values = resolve_values(render(task.properties["value"], "value"), task_id=task.id, prop="value")
    concurrent = as_count(render(task.properties.get("concurrent"), "concurrent"),
                          task_id=task.id, prop="concurrent", default=0)
    return Prepared(properties={"values": values, "concurrent": concurrent})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Children to start now within the ``concurrent`` limit, or the final state."""
    properties = task_run.properties or {}
    items = [(t, value) for value in stored_values(properties) for t in task.tasks]
    progress = concurrent_progress(view, task_run.id, items, int(properties.get("concurrent") or 0))
    return group_step(view, task_run.id, progress, task.errors, task.finally_, killed=killed)
