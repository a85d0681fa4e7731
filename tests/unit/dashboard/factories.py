"""Hand-built API data (the client's dataclasses) for the dashboard's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker_sdk.types import Attempt, Execution, State, StateHistory, StateInfo, TaskRun

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def state(*steps: tuple[State, float]) -> StateInfo:
    """A state history from ``(state, seconds after T0)`` steps; the last one is current."""
    return StateInfo(steps[-1][0], [StateHistory(s, at(t)) for s, t in steps])


def task_run(
    id: str,
    task_id: str,
    *steps: tuple[State, float],
    parent: str | None = None,
    value: str | None = None,
    attempts: list[Attempt] | None = None,
    task_type: str = "io.kestra.plugin.core.log.Log",
    error: str | None = None,
) -> TaskRun:
    return TaskRun(
        id=id,
        execution_id="ex",
        task_id=task_id,
        state=state(*steps),
        parent_task_run_id=parent,
        value=value,
        attempts=attempts or [],
        task_type=task_type,
        error=error,
    )


def attempt(n: int, worker: str, start: float, end: float | None, final: State = State.SUCCESS) -> Attempt:
    steps = [(State.RUNNING, start)] + ([(final, end)] if end is not None else [])
    return Attempt(
        attempt=n,
        state=state(*steps),
        worker_id=worker,
        start_date=at(start),
        end_date=at(end) if end is not None else None,
    )


def execution(task_runs: list[TaskRun], *steps: tuple[State, float], id: str = "ex", **kw) -> Execution:
    steps = steps or ((State.CREATED, 0), (State.RUNNING, 0.1), (State.SUCCESS, 10))
    info = state(*steps)
    return Execution(
        id=id,
        namespace=kw.pop("namespace", "company.team"),
        flow_id=kw.pop("flow_id", "flow"),
        state=info,
        task_runs=task_runs,
        start_date=info.start_date,
        end_date=info.end_date,
        **kw,
    )
