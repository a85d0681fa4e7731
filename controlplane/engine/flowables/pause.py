"""``io.kestra.plugin.core.flow.Pause``: hold the execution until it is resumed (as Kestra's).

Kestra's semantics (``Pause.resolveNexts``/``resolveState`` and the executor's delays):

- The Pause task run starts RUNNING and is PAUSED at once (the executor then shows the execution
  PAUSED while nothing else runs). Nothing downstream starts while it is PAUSED.
- It leaves PAUSED when it is resumed through the API (``ResumeExecution``, always RUNNING, the
  ``onResume`` inputs validated and exposed as its output ``onResume``), or automatically:
  after ``pauseDuration`` (deprecated alias ``delay``) by its ``behavior`` — RESUME (RUNNING),
  WARN (RUNNING, then WARNING instead of SUCCESS), FAIL (FAILED) or CANCEL (the execution ends
  CANCELLED); with only a ``timeout`` (no duration) it FAILS when the timeout is reached.
  Without duration and timeout it waits for a manual resume forever.
- Once running again (its history holds PAUSED, so it never pauses twice, even after a restart),
  its deprecated child ``tasks`` run in order like a Sequential, with ``errors``/``finally``;
  without children it ends SUCCESS (WARNING with ``behavior: WARN``).

The timer is durable: the executor stores the resume date in ``task_runs.next_attempt_at``.
"""

from __future__ import annotations

from typing import Any

from controlplane.engine.flowables.props import as_text
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.flows.durations import parse_duration
from controlplane.model import Input, State, Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.Pause"

#: Kestra's ``Pause.Behavior`` values.
BEHAVIORS = ("RESUME", "WARN", "FAIL", "CANCEL")

#: The Pause's own properties (besides the common ones and its child lists).
PROPERTIES = frozenset({"delay", "pauseDuration", "behavior", "onResume"})


def _seconds(value: Any, task: Task, prop: str) -> float | None:
    """A rendered duration property in seconds (None when absent or empty).

    Raises:
        FlowableError: not an ISO-8601 duration, or negative.
    """
    text = as_text(value)
    if text is None or not text.strip():
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise FlowableError(f"task '{task.id}': property '{prop}': {exc}") from None
    if seconds < 0:
        raise FlowableError(f"task '{task.id}': property '{prop}' must not be negative, got '{text}'")
    return seconds


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render ``pauseDuration`` (or ``delay``), ``timeout`` and ``behavior`` once.

    Returns:
        ``properties``: ``{"pauseSeconds": float | None, "timeoutSeconds": float | None,
        "behavior": "RESUME" | "WARN" | "FAIL" | "CANCEL"}``.

    Raises:
        FlowableError: a duration that is not ISO-8601 (or negative), or an unknown behavior.
    """
    props = task.properties
    key = "pauseDuration" if props.get("pauseDuration") is not None else "delay"
    pause = _seconds(render(props[key], key), task, key) if props.get(key) is not None else None
    timeout = task.timeout
    if props.get("timeout") is not None:  # an expression timeout (a literal one is task.timeout)
        timeout = _seconds(render(props["timeout"], "timeout"), task, "timeout")
    behavior = "RESUME"
    if props.get("behavior") is not None:
        behavior = (as_text(render(props["behavior"], "behavior")) or "").strip().upper()
        if behavior not in BEHAVIORS:
            raise FlowableError(
                f"task '{task.id}': property 'behavior' must be one of {', '.join(BEHAVIORS)}, got {behavior!r}"
            )
    return Prepared(properties={"pauseSeconds": pause, "timeoutSeconds": timeout, "behavior": behavior})


def resume_after(task_run: TaskRun) -> tuple[float, State] | None:
    """When a just-paused task run resumes by itself: (seconds from now, the state it then takes).

    ``pauseDuration`` applies its behavior (RESUME/WARN -> RUNNING, FAIL -> FAILED, CANCEL ->
    CANCELLED); a ``timeout`` alone fails it (Kestra). None: wait for a manual resume.
    """
    props = task_run.properties or {}
    if props.get("pauseSeconds") is not None:
        behavior = props.get("behavior") or "RESUME"
        target = {"FAIL": State.FAILED, "CANCEL": State.CANCELLED}.get(behavior, State.RUNNING)
        return float(props["pauseSeconds"]), target
    if props.get("timeoutSeconds") is not None:
        return float(props["timeoutSeconds"]), State.FAILED
    return None


def was_paused(task_run: TaskRun) -> bool:
    """Whether the task run has already been PAUSED once (Kestra's ``needPause`` is its negation)."""
    return any(h.state is State.PAUSED for h in task_run.histories)


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """PAUSED first; once resumed, the child ``tasks`` in order, then the final state."""
    if killed:
        return sequence_step(view, task_run.id, (), killed=True)
    if task_run.state is State.PAUSED:
        return Step()
    if task_run.state is State.RUNNING and not was_paused(task_run):
        return Step(pause=True)
    result = sequence_step(view, task_run.id, task.tasks, task.errors, task.finally_)
    if result.done is State.SUCCESS and (task_run.properties or {}).get("behavior") == "WARN" \
            and _resumed_by_timer(task_run):
        result.done = State.WARNING
    return result


def _resumed_by_timer(task_run: TaskRun) -> bool:
    """``behavior: WARN`` applies only when the duration ran out (a manual resume succeeds)."""
    return bool((task_run.properties or {}).get("resumedByTimer"))


def on_resume_inputs(task: Task) -> tuple[Input, ...]:
    """The ``onResume`` inputs declared on the Pause, as flow inputs (Kestra: they work like
    flow inputs). Entries that are not mappings with an ``id`` (or ``name``) are skipped; the
    catalogue refuses them at registration."""
    declared: list[Input] = []
    for raw in task.properties.get("onResume") or ():
        if not isinstance(raw, dict):
            continue
        ident = raw.get("id", raw.get("name"))
        if not isinstance(ident, str):
            continue
        extra = {k: v for k, v in raw.items() if k not in ("id", "name", "type", "required", "defaults", "description")}
        declared.append(Input(
            id=ident,
            type=str(raw.get("type", "STRING")).upper(),
            required=bool(raw.get("required", True)),
            defaults=raw.get("defaults"),
            description=raw.get("description"),
            extra=extra,
        ))
    return tuple(declared)
