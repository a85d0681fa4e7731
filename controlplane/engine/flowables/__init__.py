"""Flowable tasks, one module each; :data:`FLOWABLES` maps a canonical type to its :class:`Flowable`.

A flowable module exposes ``TYPE``, a pure ``step(view, task, task_run, killed) -> Step`` that
decides, for one running task run of that flowable, which children to create and whether it is
done, and, when its decisions depend on rendered properties, a pure
``prepare(task, render) -> Prepared`` that the executor calls once when the task run is created
(its result is stored on the task run and read back by ``step``). ``prepare`` raises
:class:`~controlplane.engine.plan.FlowableError` (or the renderer's ``ExpressionError``) to fail
the flowable's task run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controlplane.engine.flowables import (
    allow_failure,
    dag,
    each_parallel,
    each_sequential,
    for_each,
    for_each_item,
    if_,
    labels,
    parallel,
    pause,
    resume,
    sequential,
    subflow,
    switch,
    toggle,
    wait_for,
    working_directory,
)
from controlplane.engine.plan import Prepared, Renderer, Step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

StepFunction = Callable[[ExecutionView, Task, TaskRun, bool], Step]
PrepareFunction = Callable[[Task, Renderer], Prepared]


@dataclass(frozen=True)
class Flowable:
    """One flowable type as the executor sees it.

    Attributes:
        type: Canonical Kestra type name.
        step: Decides children and final state (pure).
        prepare: Renders the decision inputs once at start (pure given ``render``); None when
            the flowable's decisions depend on no rendered property.
    """

    type: str
    step: StepFunction
    prepare: PrepareFunction | None = None


def _flowable(module: object) -> Flowable:
    return Flowable(
        type=module.TYPE,  # type: ignore[attr-defined]
        step=module.step,  # type: ignore[attr-defined]
        prepare=getattr(module, "prepare", None),
    )


FLOWABLES: dict[str, Flowable] = {
    f.type: f
    for f in map(
        _flowable,
        (sequential, parallel, if_, switch, for_each, each_sequential, each_parallel, dag, allow_failure, pause,
         subflow, resume, wait_for, labels, toggle, working_directory),
    )
}
FLOWABLES.update({
    for_each_item.TYPE: Flowable(for_each_item.TYPE, for_each_item.step, for_each_item.prepare),
    for_each_item.ITEMS_TYPE: Flowable(for_each_item.ITEMS_TYPE, for_each_item.step_items,
                                       for_each_item.prepare_items),
    for_each_item.MERGE_TYPE: Flowable(for_each_item.MERGE_TYPE, for_each_item.step_merge),
})
