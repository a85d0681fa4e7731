"""Executions, task runs and attempts: what happened when a flow ran.

These are plain snapshots loaded by the store and read by the executor; changes go back through
the store so every transition is checked (``controlplane.model.state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.model.state import State, StateHistory, check_transition


@dataclass
class Attempt:
    """One attempt of a runnable task run on a worker (1-based ``number``)."""

    number: int
    state: State
    histories: list[StateHistory] = field(default_factory=list)
    worker_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    error: str | None = None
    log_file: str | None = None  # internal-storage URI of its log lines (task ``logToFile``)
    log_bytes: int = 0  # UTF-8 bytes of log text stored for it so far, as read (the log budget)


@dataclass
class TaskRun:
    """One run of one task in an execution (Kestra's TaskRun).

    Attributes:
        parent_id: The flowable task run this one runs under, None at the top level.
        value: Loop value (``taskrun.value``), None outside loops.
        branch: Which child list of the parent it belongs to (``tasks``, ``errors``,
            ``finally``, ``then``...); ``tasks`` at the top level for main tasks.
        seq: Creation order within the execution.
        attempt: Current attempt number (0 before the first dispatch).
        outputs: Task outputs (JSON-compatible), None when the task produced none.
        properties: Rendered properties: what a runnable was dispatched with, or the decision
            inputs a flowable rendered once when it started (ForEach ``values``, If
            ``condition``...), so later decisions reuse them instead of rendering again.
        next_attempt_at: When the executor starts the next attempt (renders the properties
            again and dispatches it): the retry date of a RETRYING task run; for a RETRIED one
            (retry ``behavior: CREATE_NEW_EXECUTION``), when the new execution is created.
            None when nothing is scheduled.
        iteration: The WaitFor round (1, 2, ...) a child of a WaitFor belongs to; 0 elsewhere.
    """

    id: str
    execution_id: str
    task_id: str
    task_type: str
    state: State
    histories: list[StateHistory] = field(default_factory=list)
    parent_id: str | None = None
    value: str | None = None
    branch: str = "tasks"
    seq: int = 0
    attempt: int = 0
    lease_epoch: int = 0
    worker_id: str | None = None
    outputs: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    redeliveries: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    next_attempt_at: datetime | None = None
    iteration: int = 0


@dataclass
class Execution:
    """One execution of a flow revision (Kestra's Execution).

    Attributes:
        original_id: The first execution of a chain of retries (``CREATE_NEW_EXECUTION``) or
            of a replay.
        attempt_number: 1 for a first execution; n for the n-th execution of a chain created
            by a ``CREATE_NEW_EXECUTION`` retry (Kestra's ``metadata.attemptNumber``).
        original_created_at: Creation date of the chain's first execution (Kestra's
            ``metadata.originalCreatedDate``; the origin of ``maxDuration``); None = its own.
        caller_execution_id / caller_task_run_id: The execution and its Subflow task run that
            started this one (a subflow execution); None otherwise. ``trigger`` holds the same
            link the way Kestra shows it (``type`` Subflow, ``variables.executionId``...).
        concurrency_slot: Holds one of the flow's ``concurrency.limit`` slots.
    """

    id: str
    namespace: str
    flow_id: str
    flow_revision: int
    state: State
    histories: list[StateHistory] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    parent_id: str | None = None
    original_id: str | None = None
    trigger: dict[str, Any] | None = None
    error: str | None = None
    kill_requested: bool = False
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    task_runs: list[TaskRun] = field(default_factory=list)
    attempt_number: int = 1
    original_created_at: datetime | None = None
    caller_execution_id: str | None = None
    caller_task_run_id: str | None = None
    concurrency_slot: bool = False


def change_state(obj: Execution | TaskRun | Attempt, state: State, at: datetime, what: str = "") -> None:
    """Move an execution, task run or attempt to ``state`` at ``at``, appending to its history.

    The one place state changes happen; it refuses moves Kestra's state machine does not allow.

    Raises:
        IllegalTransitionError: ``obj.state -> state`` is not a legal move.
    """
    if obj.state is state:
        return
    check_transition(obj.state, state, what)
    obj.state = state
    obj.histories.append(StateHistory(state, at))
