"""Walk a parsed flow's tasks together with their YAML paths (``tasks[1].then[0]``)."""

from __future__ import annotations

from collections.abc import Iterator

from controlplane.flows.catalogue import task_type_info
from controlplane.model.flow import Flow, Task


def walk_with_paths(flow: Flow) -> Iterator[tuple[str, Task]]:
    """Every task of ``flow`` (main, errors, finally, nested), depth first, in YAML order.

    Paths follow the YAML: ``tasks[2]``, ``errors[0]``, ``tasks[1].tasks[0]``,
    ``tasks[0].cases.FIRST[0]`` (Switch), ``tasks[0].tasks[3].task`` (Dag item).

    Args:
        flow: A parsed flow.

    Yields:
        ``(path, task)`` pairs.
    """
    for key, group in (("tasks", flow.tasks), ("errors", flow.errors), ("finally", flow.finally_)):
        for index, task in enumerate(group):
            yield from walk_task(task, f"{key}[{index}]")


def walk_task(task: Task, path: str) -> Iterator[tuple[str, Task]]:
    """``task`` and its descendants with their paths, ``path`` being the task's own path."""
    yield path, task
    info = task_type_info(task.type)
    dag = info is not None and info.dag_tasks
    for key, children in task.subtasks.items():
        for index, child in enumerate(children):
            if dag and key == "tasks":
                child_path = f"{path}.tasks[{index}].task"
            else:
                child_path = f"{path}.{key}[{index}]"
            yield from walk_task(child, child_path)
