"""``io.kestra.plugin.core.trigger.Toggle``: enable or disable a trigger of a flow.

As Kestra's Toggle (which the executor applies): ``namespace`` and ``flowId`` default to the
running flow's, ``trigger`` (required) names the trigger id, ``enabled`` (default false) is the
state to set. The control plane changes the trigger's row in the same transaction that starts
the task run (re-enabling a schedule resumes from now: missed ticks are not fired); an unknown
flow or trigger fails the task run with the reason. The task run then ends SUCCESS.
"""

from __future__ import annotations

from controlplane.engine.flowables.props import as_text, is_truthy
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task, TaskRun

TYPE = "io.kestra.plugin.core.trigger.Toggle"


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render the target: ``{"namespace", "flowId", "trigger", "enabled"}`` (namespace and flow
    id empty when not given: the executor fills in the running flow's).

    Raises:
        FlowableError: ``trigger`` missing or empty.
    """
    props = task.properties
    trigger = as_text(render(props["trigger"], "trigger")) if props.get("trigger") is not None else None
    if not trigger:
        raise FlowableError(f"task '{task.id}': property 'trigger' is required (the id of the trigger to toggle)")
    namespace = as_text(render(props["namespace"], "namespace")) if props.get("namespace") is not None else ""
    flow_id = as_text(render(props["flowId"], "flowId")) if props.get("flowId") is not None else ""
    enabled = is_truthy(render(props["enabled"], "enabled")) if props.get("enabled") is not None else False
    return Prepared(properties={"namespace": namespace or "", "flowId": flow_id or "", "trigger": trigger,
                                "enabled": enabled})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """The executor toggled the trigger when the task run started: done."""
    return Step(done=State.KILLED if killed else State.SUCCESS)
