"""Flowable tasks, one module each; :data:`FLOWABLES` maps a canonical type to its step function.

A step function has the signature ``step(view, task, task_run, killed) -> Step`` and decides, for
one running task run of that flowable, which children to create and whether it is done.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.engine.flowables import sequential
from controlplane.engine.plan import Step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

StepFunction = Callable[[ExecutionView, Task, TaskRun, bool], Step]

FLOWABLES: dict[str, StepFunction] = {
    sequential.TYPE: sequential.step,
}
