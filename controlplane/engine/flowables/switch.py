"""``io.kestra.plugin.core.flow.Switch``: run the ``cases`` list matching ``value``, else ``defaults``.

As Kestra's ``Switch``: ``value`` is rendered once, when the Switch starts, to text (a boolean
renders ``true``/``false``, null the empty string); the case whose key equals it runs (YAML integer keys match their
string form), otherwise ``defaults``. Outputs: ``value`` (the rendered text) and ``defaults``
(true when no case matched). No matching case and no ``defaults`` fails the Switch task run.
The chosen list runs in order like a Sequential, with the Switch's ``errors`` and ``finally``.
Children of a case run in branch ``cases`` (task ids are unique in a flow, and the matched key,
which may be any length, is in the Switch's ``value`` output), those of ``defaults`` in
``defaults``.
"""

from __future__ import annotations

from controlplane.engine.flowables.props import as_text
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import killed_step, sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.Switch"

_CASE = "cases."


def case_branch(task: Task, value: str | None) -> str | None:
    """The child-list key that runs for ``value``: ``cases.<value>``, else ``defaults``, else None."""
    if value is not None and f"{_CASE}{value}" in task.subtasks:
        return f"{_CASE}{value}"
    if task.subtasks.get("defaults"):
        return "defaults"
    return None


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``value``; outputs ``value`` and ``defaults``.

    Raises:
        FlowableError: ``value`` is missing, or no case matches and there are no ``defaults``.
    """
    if task.properties.get("value") is None:
        raise FlowableError(f"task '{task.id}': property 'value' is required")
    value = as_text(render(task.properties["value"], "value")) or ""  # null prints as "" in Pebble
    chosen = case_branch(task, value)
    if chosen is None:
        cases = ", ".join(k[len(_CASE):] for k in task.subtasks if k.startswith(_CASE))
        raise FlowableError(
            f"task '{task.id}': no case matches value {value!r} (cases: {cases}) and there are no 'defaults'"
        )
    return Prepared(properties={"value": value}, outputs={"value": value, "defaults": chosen == "defaults"})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Next child of the chosen case, or the final state."""
    chosen = case_branch(task, (task_run.properties or {}).get("value"))
    if chosen is None:  # prepare refuses this; a task run without a decision cannot run
        return killed_step(view, task_run.id) if killed else Step(done=State.FAILED)
    branch = "defaults" if chosen == "defaults" else "cases"
    return sequence_step(
        view, task_run.id, task.subtasks[chosen], task.errors, task.finally_, killed=killed, branch=branch
    )
