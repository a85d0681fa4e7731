"""Execution, task-run and attempt states and the one place that allows or refuses transitions.

States and their meaning follow Kestra's ``io.kestra.core.models.flows.State.Type``
(see conformance/kestra/FEATURES.md §6).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class State(enum.StrEnum):
    """A Kestra state, for executions, task runs and attempts alike."""

    CREATED = "CREATED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    RETRYING = "RETRYING"
    RESTARTED = "RESTARTED"
    KILLING = "KILLING"
    KILLED = "KILLED"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RETRIED = "RETRIED"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        """True for states nothing moves on from (except a restart)."""
        return self in TERMINAL

    @property
    def is_failed(self) -> bool:
        """True for FAILED and KILLED: states that stop a sequence of tasks (Kestra ``isFailed``)."""
        return self in (State.FAILED, State.KILLED)

    @property
    def is_running(self) -> bool:
        """True for RUNNING and KILLING (Kestra ``isRunning``)."""
        return self in (State.RUNNING, State.KILLING)


TERMINAL = frozenset(
    {State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.CANCELLED, State.RETRIED, State.SKIPPED}
)

# Allowed moves. A terminal state may only be left by a restart (-> RESTARTED).
_ALLOWED: dict[State, frozenset[State]] = {
    State.CREATED: frozenset(
        {State.QUEUED, State.RUNNING, State.KILLING, State.KILLED, State.CANCELLED, State.FAILED,
         State.SKIPPED, State.SUCCESS, State.WARNING}
    ),
    State.QUEUED: frozenset({State.RUNNING, State.KILLING, State.KILLED, State.CANCELLED, State.FAILED}),
    State.RUNNING: frozenset(
        {State.PAUSED, State.RETRYING, State.KILLING, State.KILLED, State.SUCCESS, State.WARNING,
         State.FAILED, State.CANCELLED, State.RETRIED}
    ),
    State.PAUSED: frozenset(
        {State.RUNNING, State.KILLING, State.KILLED, State.FAILED, State.SUCCESS, State.WARNING, State.CANCELLED}
    ),
    State.RETRYING: frozenset({State.RUNNING, State.KILLING, State.KILLED, State.FAILED, State.RETRIED}),
    State.RESTARTED: frozenset(
        {State.RUNNING, State.QUEUED, State.KILLING, State.KILLED, State.FAILED, State.CREATED, State.CANCELLED}
    ),
    State.KILLING: frozenset({State.KILLED}),
}


class IllegalTransitionError(ValueError):
    """Raised when a state change is not allowed by Kestra's state machine."""

    def __init__(self, source: State, target: State, what: str = "") -> None:
        self.source, self.target = source, target
        where = f" for {what}" if what else ""
        super().__init__(f"illegal state transition {source} -> {target}{where}")


def can_transition(source: State, target: State) -> bool:
    """Whether ``source -> target`` is a legal move (a terminal state can only be RESTARTED)."""
    if source in TERMINAL:
        return target is State.RESTARTED
    return target in _ALLOWED.get(source, frozenset())


def check_transition(source: State, target: State, what: str = "") -> None:
    """Raise :class:`IllegalTransitionError` unless ``source -> target`` is legal."""
    if not can_transition(source, target):
        raise IllegalTransitionError(source, target, what)


@dataclass(frozen=True)
class StateHistory:
    """One entry of a state history: the state entered and when (UTC)."""

    state: State
    date: datetime


def final_state(states: list[State]) -> State:
    """Kestra's final state of a group of task runs: KILLED > FAILED > WARNING > PAUSED > SUCCESS.

    SKIPPED counts as success. ``states`` empty -> SUCCESS (all children disabled).
    """
    for candidate in (State.KILLED, State.FAILED, State.WARNING, State.PAUSED):
        if candidate in states:
            return candidate
    return State.SUCCESS
