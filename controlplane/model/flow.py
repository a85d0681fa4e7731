"""A flow as the user wrote it, after parsing and validation (see ``controlplane.flows``).

Properties stay unrendered: expressions are rendered by the executor when a task run is created.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Task:
    """One task of a flow (Kestra's common task properties, FEATURES.md §2).

    Attributes:
        id: Unique within the flow.
        type: Canonical type name (legacy aliases are resolved by the parser).
        properties: Every other property as written (unrendered), without the ones below and
            without the task lists held in ``subtasks``.
        subtasks: Child task lists of a flowable task, keyed by property path: ``tasks``,
            ``errors``, ``finally``, ``then``, ``else``, ``defaults``, ``cases.<key>``.
        written_type: The type name as written in the YAML (may be a legacy alias).
        timeout: The task's ``timeout`` in seconds, or None.
        retry: The task's ``retry`` block as written, or None.
        run_if: The ``runIf`` expression, or None.
        line: 1-based YAML line of the task, 0 when unknown.
    """

    id: str
    type: str
    properties: dict[str, Any] = field(default_factory=dict)
    subtasks: dict[str, tuple[Task, ...]] = field(default_factory=dict)
    written_type: str = ""
    description: str | None = None
    disabled: bool = False
    timeout: float | None = None
    retry: dict[str, Any] | None = None
    allow_failure: bool = False
    allow_warning: bool = False
    run_if: str | None = None
    log_level: str | None = None
    worker_group: str | None = None
    line: int = 0

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The ``tasks`` child list (empty for runnable tasks)."""
        return self.subtasks.get("tasks", ())

    @property
    def errors(self) -> tuple[Task, ...]:
        """The flowable's local ``errors`` handlers."""
        return self.subtasks.get("errors", ())

    @property
    def finally_(self) -> tuple[Task, ...]:
        """The flowable's ``finally`` tasks."""
        return self.subtasks.get("finally", ())

    def walk(self) -> Iterator[Task]:
        """This task and every task nested under it, depth first, in YAML order."""
        yield self
        for children in self.subtasks.values():
            for child in children:
                yield from child.walk()


@dataclass(frozen=True)
class Input:
    """A declared flow input (Kestra ``inputs[]``, FEATURES.md §8).

    Attributes:
        id: Input name (``name`` is Kestra's deprecated alias).
        type: Kestra type name, upper case (STRING, INT, FLOAT, BOOLEAN, ...).
        required: Kestra's default is True.
        defaults: Default value as written, or None.
        extra: Type-specific settings as written (``validator``, ``min``, ``max``, ``values``...).
    """

    id: str
    type: str = "STRING"
    required: bool = True
    defaults: Any = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class Output:
    """A declared flow output (``outputs[]``): rendered when the execution ends."""

    id: str
    type: str
    value: Any
    description: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Flow:
    """A parsed, validated flow revision (Kestra's flow document, FEATURES.md §1).

    Attributes:
        labels: Label key -> value (Kestra's list form is converted to a map).
        variables: ``variables`` as written, exposed as ``vars`` (not rendered automatically).
        tasks / errors / finally_: The main task list and the flow-level handlers.
        triggers, concurrency, retry, plugin_defaults, sla: As written; the issues that
            implement them parse them further.
        source: The YAML source as registered.
    """

    id: str
    namespace: str
    tasks: tuple[Task, ...]
    revision: int = 0
    description: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Output, ...] = ()
    variables: dict[str, Any] = field(default_factory=dict)
    errors: tuple[Task, ...] = ()
    finally_: tuple[Task, ...] = ()
    triggers: tuple[dict[str, Any], ...] = ()
    retry: dict[str, Any] | None = None
    timeout: float | None = None
    concurrency: dict[str, Any] | None = None
    disabled: bool = False
    plugin_defaults: tuple[dict[str, Any], ...] = ()
    source: str = ""
    sla: tuple[dict[str, Any], ...] = ()

    def walk(self) -> Iterator[Task]:
        """Every task of the flow (main, errors, finally, nested), depth first."""
        for group in (self.tasks, self.errors, self.finally_):
            for task in group:
                yield from task.walk()

    def find_task(self, task_id: str) -> Task:
        """The task with ``task_id``; KeyError when the flow has none."""
        for task in self.walk():
            if task.id == task_id:
                return task
        raise KeyError(task_id)
