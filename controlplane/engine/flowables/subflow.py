"""``io.kestra.plugin.core.flow.Subflow`` (aliases ``io.kestra.core.tasks.flows.Subflow`` and
``…flows.Flow``): start an execution of another flow, in the control plane (no worker).

As Kestra's ``Subflow``:

- ``namespace``, ``flowId`` (required), ``revision`` (latest when absent), ``inputs`` and
  ``labels`` are rendered when the task run starts; the child execution is created at once with
  those inputs (validated against the child flow, a bad input fails the task run), the labels
  (plus the parent's own labels with ``inheritLabels: true``, and always the parent's
  ``system.correlationId``) and a ``trigger`` of type Subflow naming the parent execution.
- ``wait`` (default true): the task run ends when the child execution ends; with
  ``transmitFailed`` (default true) a FAILED or KILLED child fails it and a WARNING child makes it
  WARNING; otherwise it succeeds. ``wait: false``: it ends SUCCESS as soon as the child exists.
- Outputs: ``executionId`` at once; with ``wait`` also ``state`` and ``outputs`` (the child's
  flow outputs, or the deprecated task ``outputs`` map rendered in the child's context).
- Killing the parent kills the child (the executor does it).
- A ``retry`` policy that applies to the task (its own, an ancestor's or the flow's) retries a
  failed child as a new child execution, one attempt each (Kestra's RetryCaseTest#retrySubflow).
- ``scheduleDate`` (an ISO-8601 date-time with offset, rendered; a literal one is checked when the
  flow is registered): the child execution is created
  at once (its id is in the outputs) but stays CREATED until that date, then starts; a date in
  the past starts it at once. With ``wait`` the task run waits for it.
- ``restartBehavior`` (what restarting the failed parent execution does to a failed Subflow task
  run): ``RETRY_FAILED`` (default) restarts the same child execution in place (its failed task
  runs get a new attempt) and the task run waits for it again; ``NEW_EXECUTION`` starts a new
  child execution. A child that cannot be restarted (no failed task run) gets a new execution.

The decision logic here is pure: the executor supplies the child's state in the view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.engine.flowables.props import as_text, is_truthy
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.view import ExecutionView
from controlplane.model import State, Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.Subflow"

#: The Subflow's own properties (besides the common ones).
PROPERTIES = frozenset({
    "namespace", "flowId", "revision", "inputs", "labels", "wait", "transmitFailed", "inheritLabels",
    "outputs", "scheduleDate", "restartBehavior",
})


def _flag(value: Any, default: bool) -> bool:
    return default if value is None else is_truthy(value)


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render what the child execution is created from.

    Returns:
        ``properties``: ``{"namespace", "flowId", "revision" (0 = latest), "inputs": {...},
        "labels": {...}, "wait", "transmitFailed", "inheritLabels"}``.

    Raises:
        FlowableError: ``namespace``/``flowId`` missing or empty, ``revision`` not a positive
            integer, ``inputs`` not a map, ``labels`` neither a map nor a list of key/value.
    """
    props = task.properties
    rendered: dict[str, Any] = {}
    for key in ("namespace", "flowId"):
        value = as_text(render(props.get(key), key)) if props.get(key) is not None else None
        if not value or not value.strip():
            raise FlowableError(f"task '{task.id}': property '{key}' is required")
        rendered[key] = value.strip()
    revision = render(props["revision"], "revision") if props.get("revision") is not None else 0
    try:
        revision = int(as_text(revision) or 0)
    except ValueError:
        raise FlowableError(f"task '{task.id}': property 'revision' must be an integer >= 1, got {revision!r}") from None
    if revision < 0:
        raise FlowableError(f"task '{task.id}': property 'revision' must be an integer >= 1, got {revision}")
    rendered["revision"] = revision
    inputs = render(props.get("inputs") or {}, "inputs")
    if not isinstance(inputs, dict):
        raise FlowableError(f"task '{task.id}': property 'inputs' must be a map of input id to value")
    rendered["inputs"] = inputs
    rendered["labels"] = _labels(task, render(props.get("labels") or {}, "labels"))
    rendered["wait"] = _flag(props.get("wait"), True)
    rendered["transmitFailed"] = _flag(props.get("transmitFailed"), True)
    inherit = props.get("inheritLabels")
    rendered["inheritLabels"] = _flag(render(inherit, "inheritLabels") if inherit is not None else None, False)
    behavior = as_text(render(props["restartBehavior"], "restartBehavior")) if props.get("restartBehavior") else None
    behavior = (behavior or RETRY_FAILED).strip().upper()
    if behavior not in (RETRY_FAILED, NEW_EXECUTION):
        raise FlowableError(f"task '{task.id}': property 'restartBehavior' must be RETRY_FAILED or NEW_EXECUTION, "
                            f"got {behavior!r}")
    rendered["restartBehavior"] = behavior
    if props.get("scheduleDate") is not None:
        rendered["scheduleDate"] = schedule_date(task.id, render(props["scheduleDate"], "scheduleDate")).isoformat()
    return Prepared(properties=rendered)


RETRY_FAILED = "RETRY_FAILED"
NEW_EXECUTION = "NEW_EXECUTION"


def schedule_date(task_id: str, value: Any) -> datetime:
    """``scheduleDate`` as an aware UTC datetime (Kestra's ZonedDateTime; ``Z`` accepted). The
    flow parser applies it to a literal value at registration, the executor to the rendered one.

    Raises:
        FlowableError: not an ISO-8601 date-time, or without an offset (naming task and property).
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        text = (as_text(value) or "").strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FlowableError(f"task '{task_id}': property 'scheduleDate' must be an ISO-8601 date-time with "
                                f"an offset (e.g. 2026-01-01T10:00:00+01:00), got {text!r}") from None
    if parsed.tzinfo is None:
        raise FlowableError(f"task '{task_id}': property 'scheduleDate' needs a time zone offset, got {value!r}")
    return parsed.astimezone(UTC)


def scheduled_for(trigger: Any) -> datetime | None:
    """When a subflow execution created with ``scheduleDate`` may start (from its ``trigger``
    as the executor stored it), None when it was not scheduled."""
    if not isinstance(trigger, dict) or not trigger.get("scheduleDate"):
        return None
    return datetime.fromisoformat(trigger["scheduleDate"])


def _labels(task: Task, raw: Any) -> dict[str, str]:
    """Kestra's labels as a map or a list of ``{key, value}``; values become text."""
    if isinstance(raw, dict):
        return {str(k): as_text(v) or "" for k, v in raw.items()}
    if isinstance(raw, list):
        out: dict[str, str] = {}
        for item in raw:
            if not isinstance(item, dict) or "key" not in item:
                raise FlowableError(f"task '{task.id}': property 'labels': a list item must be {{key, value}}")
            out[str(item["key"])] = as_text(item.get("value")) or ""
        return out
    raise FlowableError(f"task '{task.id}': property 'labels' must be a map or a list of {{key, value}}")


def final_state(child: State, transmit_failed: bool) -> State:
    """The Subflow task run's state for a child execution that ended in ``child`` (Kestra's
    ``ExecutableUtils.guessState``; ``allowFailure`` is applied by the executor)."""
    if not transmit_failed:
        return State.SUCCESS
    if child in (State.FAILED, State.KILLED, State.CANCELLED):
        return State.FAILED
    if child is State.WARNING:
        return State.WARNING
    return State.SUCCESS


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Done when the child ended (or at once without ``wait``); KILLED when the parent is killed."""
    props = task_run.properties or {}
    if killed:
        return Step(done=State.KILLED)
    if task_run.state is State.RETRYING:
        return Step()  # a failed child is retried: the executor starts a new one at the retry date
    child = view.subflows.get(task_run.id)
    if child is None:
        return Step()  # the executor has not recorded the child yet
    if not props.get("wait", True):
        return Step(done=State.SUCCESS)
    if not child.state.is_terminal or child.state is State.RETRIED:
        return Step()  # still running, or retried as a new execution (CREATE_NEW_EXECUTION)
    return Step(done=final_state(child.state, bool(props.get("transmitFailed", True))))
