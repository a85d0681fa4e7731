"""A unit of work: one database transaction plus the wake-ups to send once it has committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass
class Unit:
    """The open transaction (``conn``) and what changed in it.

    Attributes:
        tasks_queued: Task runs were put on the dispatch queue (wake polling workers).
        executions: Ids of executions that changed (wake their watchers).
        nested_starts: Subflow executions being started inside one another in this transaction
            (past a few, the executor sweep starts the deeper ones instead).
        log_files: Ended attempts of ``logToFile`` tasks whose log file is written once this
            transaction has committed (``controlplane.service.log_files.LogFileRequest``).
    """

    conn: AsyncConnection
    tasks_queued: bool = False
    executions: set[str] = field(default_factory=set)
    nested_starts: int = 0
    log_files: list[Any] = field(default_factory=list)
