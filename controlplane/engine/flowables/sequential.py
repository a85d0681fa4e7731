"""``io.kestra.plugin.core.flow.Sequential``: run ``tasks`` one after another (as Kestra's).

The state is the aggregate of the children (see ``engine.sequence``); a failing child stops the
list and runs the Sequential's own ``errors``, after which it still ends FAILED.
"""

from __future__ import annotations

from controlplane.engine.plan import Step
from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.Sequential"


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Next child of the Sequential task run, or its final state (see ``engine.sequence``)."""
    return sequence_step(view, task_run.id, task.tasks, task.errors, task.finally_, killed=killed)
