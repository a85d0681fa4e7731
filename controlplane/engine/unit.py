"""A unit of work: one database transaction plus the wake-ups to send once it has committed."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass
class Unit:
    """The open transaction (``conn``) and what changed in it.

    Attributes:
        tasks_queued: Task runs were put on the dispatch queue (wake polling workers).
        executions: Ids of executions that changed (wake their watchers).
        nested_starts: Subflow executions being started inside one another in this transaction
            (past a few, the executor sweep starts the deeper ones instead).
    """

    conn: AsyncConnection
    tasks_queued: bool = False
    executions: set[str] = field(default_factory=set)
    nested_starts: int = 0
