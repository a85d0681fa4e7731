"""Kestra's state machine: the one place that allows or refuses a transition."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.model import Execution, IllegalTransitionError, State, change_state
from controlplane.model.state import TERMINAL, can_transition, final_state

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (State.CREATED, State.RUNNING),
        (State.RUNNING, State.SUCCESS),
        (State.RUNNING, State.KILLING),
        (State.KILLING, State.KILLED),
        (State.RUNNING, State.PAUSED),
        (State.PAUSED, State.RUNNING),
        (State.FAILED, State.RESTARTED),
        (State.CREATED, State.SKIPPED),
    ],
)
def test_legal_moves(source, target):
    assert can_transition(source, target)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_only_restart(terminal):
    for target in State:
        assert can_transition(terminal, target) == (target is State.RESTARTED)


def test_change_state_records_history_and_refuses_illegal_moves():
    ex = Execution(id="e", namespace="n", flow_id="f", flow_revision=1, state=State.CREATED)
    change_state(ex, State.RUNNING, NOW)
    change_state(ex, State.RUNNING, NOW)  # no-op: same state
    change_state(ex, State.SUCCESS, NOW)
    assert [h.state for h in ex.histories] == [State.RUNNING, State.SUCCESS]
    with pytest.raises(IllegalTransitionError, match="SUCCESS -> RUNNING for execution e"):
        change_state(ex, State.RUNNING, NOW, "execution e")
    assert ex.state is State.SUCCESS


def test_final_state_priority():
    assert final_state([]) is State.SUCCESS
    assert final_state([State.SUCCESS, State.SKIPPED]) is State.SUCCESS
    assert final_state([State.WARNING, State.PAUSED]) is State.WARNING
    assert final_state([State.FAILED, State.WARNING, State.KILLED]) is State.KILLED
