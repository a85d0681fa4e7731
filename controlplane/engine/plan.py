"""Decisions about one execution, as pure functions of the flow and its task runs.

A flowable task (and the flow itself, which behaves as a Sequential over ``tasks`` with
``errors`` and ``finally``) answers one question each time the executor looks at it: which child
task runs to create now, and whether it is done (and in which state). This is the shape of
Kestra's ``FlowableTask.resolveNexts`` / ``resolveState``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.model import State, Task


@dataclass(frozen=True)
class NewTaskRun:
    """A task run to create: ``task`` under ``parent_id`` in child list ``branch``."""

    task: Task
    parent_id: str | None
    branch: str
    value: str | None = None


@dataclass
class Step:
    """What a flowable (or the flow) wants now.

    Attributes:
        create: Task runs to create, in order.
        done: The final state once every child is terminal and nothing is left to create.
    """

    create: list[NewTaskRun] = field(default_factory=list)
    done: State | None = None


def apply_allow_failure(task: Task, state: State) -> State:
    """Kestra's ``allowFailure``/``allowWarning`` on a task's own final state.

    FAILED becomes WARNING with ``allowFailure`` (SUCCESS with ``allowWarning`` too), and
    WARNING becomes SUCCESS with ``allowWarning``.
    """
    if state is State.FAILED and task.allow_failure:
        return State.SUCCESS if task.allow_warning else State.WARNING
    if state is State.WARNING and task.allow_warning:
        return State.SUCCESS
    return state
