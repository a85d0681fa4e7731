"""``io.kestra.plugin.core.flow.WaitFor``: run ``tasks`` in rounds until ``condition`` is true.

As Kestra's WaitFor (the corpus's ``waitfor*.yaml`` flows):

- One round runs the child ``tasks`` in order (a failing child fails the WaitFor, after its
  ``errors``). Each round's children are new task runs (``iteration`` 1, 2, ...); outside the
  WaitFor, ``outputs.<child>`` is the latest round's.
- After a round that succeeded, ``condition`` is rendered (with the latest outputs) and, when
  truthy (Kestra's ``TruthUtils``), the loop exits SUCCESS. Otherwise, when
  ``checkFrequency.maxIterations`` (default 100) rounds ran or ``checkFrequency.maxDuration``
  (default 1 h, from the WaitFor's start) passed, it ends FAILED with ``failOnMaxReached: true``
  and SUCCESS without; else the next round starts after ``checkFrequency.interval`` (default
  1 s) - a durable timer (``task_runs.next_attempt_at``).
- Output ``iterationCount``: the current round, from 1.

The decision logic is pure: the executor renders the condition when ``step`` asks for a check
and applies :func:`after_round`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controlplane.engine.flowables.props import as_text, is_truthy
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import Progress, group_step, sequence_step, sequential_progress
from controlplane.engine.view import ExecutionView
from controlplane.flows.durations import parse_duration
from controlplane.model import State, Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.WaitFor"

DEFAULT_MAX_ITERATIONS = 100
DEFAULT_MAX_DURATION = 3600.0
DEFAULT_INTERVAL = 1.0


def _duration(task: Task, raw: Any, prop: str, default: float) -> float:
    text = as_text(raw)
    if text is None or not text.strip():
        return default
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise FlowableError(f"task '{task.id}': property 'checkFrequency.{prop}': {exc}") from None
    if seconds < 0:
        raise FlowableError(f"task '{task.id}': property 'checkFrequency.{prop}' must not be negative")
    return seconds


def prepare(task: Task, render: Renderer) -> Prepared:
    """Read ``checkFrequency`` and ``failOnMaxReached``; the condition stays unrendered.

    Returns:
        ``properties``: ``{"maxIterations": int, "maxDurationSeconds": float,
        "intervalSeconds": float, "failOnMaxReached": bool}``; ``outputs``:
        ``{"iterationCount": 1}``.

    Raises:
        FlowableError: ``condition`` missing, ``checkFrequency`` not a map, a bad duration or
            a ``maxIterations`` below 1.
    """
    if task.properties.get("condition") is None:
        raise FlowableError(f"task '{task.id}': property 'condition' is required")
    freq = task.properties.get("checkFrequency") or {}
    if not isinstance(freq, dict):
        raise FlowableError(f"task '{task.id}': property 'checkFrequency' must be a map")
    max_iterations = freq.get("maxIterations", DEFAULT_MAX_ITERATIONS)
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise FlowableError(
            f"task '{task.id}': property 'checkFrequency.maxIterations' must be an integer >= 1, got {max_iterations!r}"
        )
    fail = task.properties.get("failOnMaxReached")
    return Prepared(
        properties={
            "maxIterations": max_iterations,
            "maxDurationSeconds": _duration(task, freq.get("maxDuration"), "maxDuration", DEFAULT_MAX_DURATION),
            "intervalSeconds": _duration(task, freq.get("interval"), "interval", DEFAULT_INTERVAL),
            "failOnMaxReached": bool(fail is not None and is_truthy(render(fail, "failOnMaxReached"))),
        },
        outputs={"iterationCount": 1},
    )


def current_round(task_run: TaskRun) -> int:
    """The round running now (``iterationCount``), from 1."""
    return int((task_run.outputs or {}).get("iterationCount") or 1)


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Children of the current round in order; a check once the round succeeded; the end state
    once a check decided (after the WaitFor's ``finally``)."""
    if killed:
        return sequence_step(view, task_run.id, (), killed=True)
    props = task_run.properties or {}
    result = props.get("result")
    if result is not None:
        end = group_step(view, task_run.id, Progress(), (), task.finally_)
        if end.done is not None and result == "FAILED":
            end.done = State.FAILED
        return end
    if task_run.next_attempt_at is not None:
        return Step()  # waiting for the next round
    progress = sequential_progress(view, task_run.id, "tasks", task.tasks, iteration=current_round(task_run))
    if progress.finished and not progress.failed:
        return Step(check=True)
    return group_step(view, task_run.id, progress, task.errors, task.finally_)


@dataclass(frozen=True)
class RoundDecision:
    """What follows a successful round: ``result`` ("SUCCESS"/"FAILED": the loop is over) or
    the next round at ``next_round_at``."""

    result: str | None = None
    next_round_at: datetime | None = None
    reason: str = ""


def after_round(task_run: TaskRun, condition: Any, now: datetime) -> RoundDecision:
    """Decide after a successful round, given the rendered ``condition`` (an exit condition)."""
    props = task_run.properties or {}
    if is_truthy(condition):
        return RoundDecision(result="SUCCESS", reason="condition met")
    started = task_run.created_at or now
    max_duration = float(props.get("maxDurationSeconds", DEFAULT_MAX_DURATION))
    if current_round(task_run) >= int(props.get("maxIterations", DEFAULT_MAX_ITERATIONS)):
        reason = "Max iterations reached"
    elif now >= started + timedelta(seconds=max_duration):
        reason = "Max duration reached"
    else:
        return RoundDecision(next_round_at=now + timedelta(seconds=float(props.get("intervalSeconds", DEFAULT_INTERVAL))))
    return RoundDecision(result="FAILED" if props.get("failOnMaxReached") else "SUCCESS", reason=reason)
