"""``io.kestra.plugin.core.flow.Parallel``: start ``tasks`` together, ``concurrent`` at most.

As Kestra's ``FlowableUtils.resolveParallelNexts``: every child (nested flowables too) starts
at once; with ``concurrent: N`` (N > 0) at most N children are unfinished at any time and the
next one, in YAML order, starts when one ends; ``0`` (the default) means no limit. When a child
fails nothing more starts, the Parallel's ``errors`` run, and it ends FAILED once the children
already running have ended.
"""

from __future__ import annotations

from controlplane.engine.flowables.props import as_count
from controlplane.engine.plan import Prepared, Renderer, Step
from controlplane.engine.sequence import concurrent_progress, group_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.Parallel"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``concurrent`` (a non-negative integer, default 0)."""
    concurrent = as_count(render(task.properties.get("concurrent"), "concurrent"),
                          task_id=task.id, prop="concurrent", default=0)
    return Prepared(properties={"concurrent": concurrent})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Children to start now within the ``concurrent`` limit, or the final state."""
    concurrent = int((task_run.properties or {}).get("concurrent") or 0)
    progress = concurrent_progress(view, task_run.id, [(t, None) for t in task.tasks], concurrent)
    return group_step(view, task_run.id, progress, task.errors, task.finally_, killed=killed)
