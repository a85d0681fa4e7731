"""Decisions about one execution, as pure functions of the flow and its task runs.

A flowable task (and the flow itself, which behaves as a Sequential over ``tasks`` with
``errors`` and ``finally``) answers one question each time the executor looks at it: which child
task runs to create now, and whether it is done (and in which state). This is the shape of
Kestra's ``FlowableTask.resolveNexts`` / ``resolveState``.

A flowable may also *prepare* itself once, when its task run is created: it renders the
properties its decisions depend on (If ``condition``, Switch ``value``, ForEach ``values``…) and
the executor stores them on the task run (:attr:`~controlplane.model.TaskRun.properties`, and
Kestra's flowable outputs in ``outputs``), so every later decision reads the same values. Kestra
re-renders them on every decision; rendering once is the safer choice (a condition that changes
while a branch runs cannot switch branches halfway).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane.model import State, Task

#: ``render(value, property_name)``: renders a property value with the task run's variables.
#: Raises :class:`~controlplane.errors.ExpressionError` when rendering fails.
Renderer = Callable[[Any, str], Any]


class FlowableError(ValueError):
    """A flowable cannot start with the properties it was given (after rendering).

    The executor fails the flowable's task run with this message (and logs it at ERROR), as
    Kestra fails a flowable whose ``resolveNexts`` throws. Messages name the task and property.
    """


@dataclass(frozen=True)
class NewTaskRun:
    """A task run to create: ``task`` under ``parent_id`` in child list ``branch``.

    Attributes:
        value: Loop value (``taskrun.value``) for the direct children of a loop iteration.
        iteration: WaitFor round of the direct children of a WaitFor (0 elsewhere).
    """

    task: Task
    parent_id: str | None
    branch: str
    value: str | None = None
    iteration: int = 0


@dataclass
class Step:
    """What a flowable (or the flow) wants now.

    Attributes:
        create: Task runs to create, in order.
        done: The final state once every child is terminal and nothing is left to create.
        pause: The flowable's task run is to be PAUSED now (Pause: the executor sets the state
            and the resume timer).
        check: A WaitFor round ended well: the executor renders the condition and decides
            (``engine.flowables.wait_for.after_round``).
    """

    create: list[NewTaskRun] = field(default_factory=list)
    done: State | None = None
    pause: bool = False
    check: bool = False


@dataclass(frozen=True)
class Prepared:
    """What a flowable rendered when it started.

    Attributes:
        properties: Rendered decision inputs, stored as the task run's ``properties`` and read
            back by the flowable's ``step`` (e.g. ``{"values": [...], "concurrencyLimit": 2}``).
        outputs: The flowable's Kestra outputs, visible as ``outputs.<id>`` and ``parent.outputs``
            (If ``evaluationResult``, Switch ``value``/``defaults``); None for flowables that
            have none (a loop with outputs would also shift ``parents[i]``, as in Kestra).
    """

    properties: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None


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
