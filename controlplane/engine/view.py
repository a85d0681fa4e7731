"""A read-only index over one execution's task runs, for the decision logic."""

from __future__ import annotations

from collections import defaultdict

from controlplane.model import Execution, Flow, TaskRun


class ExecutionView:
    """Task runs of one execution indexed by (parent task run id, branch, task id).

    Args:
        flow: The flow revision the execution runs.
        execution: The execution, with ``task_runs`` in creation order.
    """

    def __init__(self, flow: Flow, execution: Execution) -> None:
        self.flow = flow
        self.execution = execution
        self._children: dict[tuple[str | None, str], dict[str, list[TaskRun]]] = defaultdict(dict)
        self._by_id: dict[str, TaskRun] = {}
        for tr in execution.task_runs:
            self.add(tr)

    def add(self, tr: TaskRun) -> None:
        """Index a task run (also used for task runs created during this advance)."""
        self._by_id[tr.id] = tr
        self._children[(tr.parent_id, tr.branch)].setdefault(tr.task_id, []).append(tr)

    def get(self, task_run_id: str) -> TaskRun:
        """The task run with this id; KeyError when unknown."""
        return self._by_id[task_run_id]

    def child(self, parent_id: str | None, branch: str, task_id: str, value: str | None = None) -> TaskRun | None:
        """The task run of ``task_id`` under ``parent_id``/``branch`` with loop ``value``, if created."""
        for tr in self._children.get((parent_id, branch), {}).get(task_id, ()):
            if tr.value == value:
                return tr
        return None

    def children(self, parent_id: str | None, branch: str | None = None) -> list[TaskRun]:
        """Task runs directly under ``parent_id`` (in one ``branch``, or all), creation order."""
        found = [
            tr
            for (pid, br), by_task in self._children.items()
            if pid == parent_id and (branch is None or br == branch)
            for runs in by_task.values()
            for tr in runs
        ]
        return sorted(found, key=lambda tr: tr.seq)

    @property
    def all(self) -> list[TaskRun]:
        """Every task run, creation order."""
        return sorted(self._by_id.values(), key=lambda tr: tr.seq)
