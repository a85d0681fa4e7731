"""A read-only index over one execution's task runs, for the decision logic."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from controlplane.model import Execution, Flow, State, TaskRun

T = TypeVar("T")


@dataclass(frozen=True)
class ChildExecution:
    """A subflow execution started by a Subflow task run (read by the executor for the view)."""

    id: str
    state: State
    outputs: dict[str, Any] | None = None


class ExecutionView:
    """Task runs of one execution indexed by (parent task run id, branch, task id, loop value).

    Lookups by identity and by parent are constant time, so a loop over many values does not
    turn each decision into a scan of the whole execution.

    Args:
        flow: The flow revision the execution runs.
        execution: The execution, with ``task_runs`` in creation order.
    """

    def __init__(self, flow: Flow, execution: Execution) -> None:
        self.flow = flow
        self.execution = execution
        self._by_id: dict[str, TaskRun] = {}
        self._by_identity: dict[tuple[str | None, str, str, str | None, int], TaskRun] = {}
        self._by_parent: dict[str | None, list[TaskRun]] = defaultdict(list)
        self._ordered: list[TaskRun] = []
        self._sorted = True
        self._memo: dict[str, Any] = {}
        #: Subflow task run id -> its child execution (filled by the executor before deciding).
        self.subflows: dict[str, ChildExecution] = {}
        #: ForEachItem ``_items`` task run id -> its child executions counted by state name
        #: (filled by ``engine.for_each_item_runs`` before deciding).
        self.item_counts: dict[str, dict[str, int]] = {}
        for tr in execution.task_runs:
            self.add(tr)

    def add(self, tr: TaskRun) -> None:
        """Index a task run (also used for task runs created during this advance)."""
        self._by_id[tr.id] = tr
        self._by_identity.setdefault((tr.parent_id, tr.branch, tr.task_id, tr.value, tr.iteration), tr)
        siblings = self._by_parent[tr.parent_id]
        if siblings and siblings[-1].seq > tr.seq:
            siblings.append(tr)
            siblings.sort(key=lambda run: run.seq)
        else:
            siblings.append(tr)
        if self._ordered and self._ordered[-1].seq > tr.seq:
            self._sorted = False
        self._ordered.append(tr)
        if tr.outputs is not None:
            self._memo.clear()

    def get(self, task_run_id: str) -> TaskRun:
        """The task run with this id; KeyError when unknown."""
        return self._by_id[task_run_id]

    def child(
        self, parent_id: str | None, branch: str, task_id: str, value: str | None = None, iteration: int = 0
    ) -> TaskRun | None:
        """The task run of ``task_id`` under ``parent_id``/``branch`` with loop ``value``, if created."""
        return self._by_identity.get((parent_id, branch, task_id, value, iteration))

    def children(self, parent_id: str | None, branch: str | None = None) -> list[TaskRun]:
        """Task runs directly under ``parent_id`` (in one ``branch``, or all), creation order."""
        runs = self._by_parent.get(parent_id, [])
        if branch is None:
            return list(runs)
        return [tr for tr in runs if tr.branch == branch]

    def ancestors(self, tr: TaskRun) -> Iterator[TaskRun]:
        """The task runs ``tr`` runs under, closest first (its parent, grandparent…).

        ``tr`` itself need not be indexed yet (a task run being created).
        """
        parent_id = tr.parent_id
        while parent_id is not None:
            parent = self._by_id.get(parent_id)
            if parent is None:
                return
            yield parent
            parent_id = parent.parent_id

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` cached until a task run *with outputs* is added.

        For values derived from task-run outputs (the ``outputs`` variable) or fixed for one
        advance (the ``envs`` variable): a task run created without outputs (every runnable,
        most flowables) cannot change them, so creating the 10 000 children of a loop does not
        recompute them 10 000 times. The executor never changes the outputs of a task run
        already in the view during one advance; code that does must call :meth:`invalidate`.
        """
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def invalidate(self) -> None:
        """Drop :meth:`memo` values (after changing a task run's outputs in place)."""
        self._memo.clear()

    @property
    def all(self) -> list[TaskRun]:
        """Every task run, creation order."""
        if not self._sorted:
            self._ordered.sort(key=lambda tr: tr.seq)
            self._sorted = True
        return list(self._ordered)
