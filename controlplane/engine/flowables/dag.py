"""``io.kestra.plugin.core.flow.Dag``: run ``tasks`` as their ``dependsOn`` edges allow.

As Kestra's ``Dag`` (``FlowableUtils.resolveDagNexts``): a task starts once every task it
depends on has ended (and since a failure stops the Dag, that means ended without failing);
tasks without dependencies start at once. ``concurrent: N`` (N > 0) keeps at most N children
unfinished; 0 (the default) means no limit. Unknown dependencies and cycles are refused when the
flow is registered (``controlplane.flows.parser``: "dag: Cyclic dependency detected: a, b",
"dag: Not existing task id in dependency: x"); the parser stores each item's ``dependsOn`` in
the child's ``properties["dependsOn"]``.
"""

from __future__ import annotations

from controlplane.engine.flowables.props import as_count
from controlplane.engine.plan import NewTaskRun, Prepared, Renderer, Step
from controlplane.engine.sequence import Progress, group_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.Dag"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``concurrent`` (a non-negative integer, default 0)."""
    concurrent = as_count(render(task.properties.get("concurrent"), "concurrent"),
                          task_id=task.id, prop="concurrent", default=0)
    return Prepared(properties={"concurrent": concurrent})


def dependencies(task: Task) -> list[str]:
    """The ids ``task`` depends on inside its Dag."""
    return [str(dep) for dep in task.properties.get("dependsOn") or ()]


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Children whose dependencies have ended, within the ``concurrent`` limit, or the final state."""
    concurrent = int((task_run.properties or {}).get("concurrent") or 0)
    runs: list[TaskRun] = []
    ended: set[str] = set()
    waiting: list[Task] = []
    for child in task.tasks:
        if child.disabled:
            ended.add(child.id)  # a disabled task never runs; its dependents need not wait
            continue
        tr = view.child(task_run.id, "tasks", child.id)
        if tr is None:
            waiting.append(child)
            continue
        runs.append(tr)
        if tr.state.is_terminal:
            ended.add(tr.task_id)
    ready = [NewTaskRun(c, task_run.id, "tasks") for c in waiting if all(d in ended for d in dependencies(c))]
    if concurrent > 0:
        running = sum(1 for tr in runs if not tr.state.is_terminal)
        ready = ready[: max(concurrent - running, 0)]
    progress = Progress(runs, ready, exhausted=not waiting)
    return group_step(view, task_run.id, progress, task.errors, task.finally_, killed=killed)
