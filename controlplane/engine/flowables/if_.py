"""``io.kestra.plugin.core.flow.If``: run ``then`` or ``else`` depending on ``condition``.

As Kestra's ``If``: the condition is rendered once, when the If starts, and is true unless the
rendered text is null or one of ``false``, ``0``, ``-0``, ``""`` (trimmed; Kestra's
``TruthUtils``). The If's output ``evaluationResult`` is that boolean. The chosen branch runs
in order like a Sequential (with the If's ``errors`` and ``finally``); a false condition with no
``else`` leaves only the If task run, SUCCESS. A condition that fails to render fails the If.
"""

from __future__ import annotations

from controlplane.engine.flowables.props import as_text, is_truthy
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.If"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``condition``; outputs ``evaluationResult``.

    Raises:
        FlowableError: ``condition`` is missing.
    """
    if task.properties.get("condition") is None:
        raise FlowableError(f"task '{task.id}': property 'condition' is required")
    rendered = render(task.properties["condition"], "condition")
    return Prepared(properties={"condition": as_text(rendered)}, outputs={"evaluationResult": is_truthy(rendered)})


def branch(task_run: TaskRun) -> str:
    """``then`` or ``else``, from the condition rendered when the If started."""
    return "then" if is_truthy((task_run.properties or {}).get("condition")) else "else"


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Next child of the chosen branch, or the final state."""
    chosen = branch(task_run)
    return sequence_step(
        view, task_run.id, task.subtasks.get(chosen, ()), task.errors, task.finally_, killed=killed, branch=chosen
    )
