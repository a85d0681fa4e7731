"""``io.kestra.plugin.core.flow.AllowFailure``: a Sequential whose failure does not fail the flow.

As Kestra's ``AllowFailure.resolveState``: the children run one after another; when one fails
the AllowFailure's own ``errors`` still run, then the AllowFailure ends WARNING instead of
FAILED, so its parent carries on (allow-failure.yaml: only the local error task runs, the
flow's ``errors`` do not). A KILLED result stays KILLED. The task's own ``allowWarning`` (applied
by the executor afterwards) turns that WARNING into SUCCESS.
"""

from __future__ import annotations

from controlplane.engine.plan import Step
from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.AllowFailure"


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Next child, or the final state with FAILED turned into WARNING."""
    decided = sequence_step(view, task_run.id, task.tasks, task.errors, task.finally_, killed=killed)
    if decided.done is State.FAILED:
        decided.done = State.WARNING
    return decided
