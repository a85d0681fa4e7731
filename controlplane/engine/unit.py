"""A unit of work: one database transaction plus the wake-ups to send once it has committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.store import repository as repo


@dataclass
class Unit:
    """The open transaction (``conn``) and what changed in it.

    Attributes:
        tasks_queued: Task runs were put on the dispatch queue (wake every polling worker).
        queued: ``(task_type, worker_group)`` of each task run put on the dispatch queue (wake
            one matching polling worker per task run; cheaper than ``tasks_queued``).
        executions: Ids of executions that changed (wake their watchers).
        logs: Ids of executions that got new log lines (wake their log tails only).
        nested_starts: Subflow executions being started inside one another in this transaction
            (past a few, the executor sweep starts the deeper ones instead).
        log_files: Ended attempts of ``logToFile`` tasks whose log file is written once this
            transaction has committed (``controlplane.service.log_files.LogFileRequest``).
        sweep_soon: Executions were put on the executor queue to be advanced now (a subflow's
            caller, a child to start or kill...): wake this replica's executor sweep once the
            transaction has committed instead of at its next tick.
        savepoints: True: ``Executor.advance_safely`` advances inside a savepoint and keeps
            what was recorded before when the advance fails. False (a worker's result): no
            savepoint (two round trips fewer); a failing advance raises
            ``controlplane.engine.executor.AdvanceFailed`` and the caller runs the whole
            transaction again with savepoints.
    """

    conn: AsyncConnection
    tasks_queued: bool = False
    queued: list[tuple[str, str]] = field(default_factory=list)
    executions: set[str] = field(default_factory=set)
    logs: set[str] = field(default_factory=set)
    nested_starts: int = 0
    log_files: list[Any] = field(default_factory=list)
    sweep_soon: bool = False
    savepoints: bool = True

    async def advance_soon(self, execution_id: str) -> None:
        """Put ``execution_id`` on the executor queue, due now, and wake the executor sweep once
        this transaction has committed (:attr:`sweep_soon`)."""
        await repo.mark_execution_dirty(self.conn, execution_id)
        self.sweep_soon = True
