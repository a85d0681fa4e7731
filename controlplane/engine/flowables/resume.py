"""``io.kestra.plugin.core.execution.Resume``: resume another PAUSED execution, from a flow.

Kestra runs it on a worker, which calls the executor's resume; here it runs in the control plane
(no worker needed): when its task run starts, the executor resumes the execution named by
``executionId`` (rendered) with ``inputs`` (answers to that execution's ``onResume`` inputs) and
the task run ends SUCCESS, or FAILED with the reason (unknown execution, not PAUSED, bad inputs).
"""

from __future__ import annotations

from controlplane.engine.flowables.props import as_text
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task, TaskRun

TYPE = "io.kestra.plugin.core.execution.Resume"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``executionId`` (required) and ``inputs`` (a map, optional).

    Raises:
        FlowableError: ``executionId`` missing or empty, ``inputs`` not a map.
    """
    raw = task.properties.get("executionId")
    execution_id = as_text(render(raw, "executionId")) if raw is not None else None
    if not execution_id or not execution_id.strip():
        raise FlowableError(f"task '{task.id}': property 'executionId' is required")
    inputs = render(task.properties.get("inputs") or {}, "inputs")
    if not isinstance(inputs, dict):
        raise FlowableError(f"task '{task.id}': property 'inputs' must be a map of onResume input to value")
    return Prepared(properties={"executionId": execution_id.strip(), "inputs": inputs})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """The executor resumes the target when the task run starts; then it is done."""
    if killed:
        return Step(done=State.KILLED)
    return Step(done=State.SUCCESS)
