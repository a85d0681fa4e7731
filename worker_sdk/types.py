"""Domain types returned by the Kestrel API client (:mod:`worker_sdk.client`).

Plain dataclasses with no protobuf in them: the client converts every response at the boundary.
Conventions:

- states and log levels are :class:`State` / :class:`LogLevel`, string enums (``State.SUCCESS ==
  "SUCCESS"``), named as in Kestra;
- timestamps are timezone-aware UTC :class:`~datetime.datetime`, ``None`` when the server did not
  set them; durations are :class:`~datetime.timedelta`;
- fields the wire carries as JSON text (inputs, outputs, defaults) hold the parsed Python value,
  ``None`` when the server sent no text;
- an empty string on the wire (no parent, no worker, no error) is ``None`` here.

:meth:`Execution.to_kestra_json` renders an execution in the JSON shape of Kestra's API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "TERMINAL_STATES",
    "Attempt",
    "Execution",
    "ExecutionPage",
    "Flow",
    "FlowInput",
    "LogEntry",
    "LogLevel",
    "State",
    "StateHistory",
    "StateInfo",
    "TaskRun",
    "ValidationIssue",
    "ValidationResult",
    "format_iso_duration",
    "format_iso_instant",
]


class State(StrEnum):
    """State of an execution, a task run or an attempt (Kestra's ``State.Type``).

    ``UNSPECIFIED`` stands for a state the server did not set or this client does not know.
    """

    UNSPECIFIED = "UNSPECIFIED"
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
        """Whether nothing more happens in this state (Kestra's ``isTerminated()``)."""
        return self in TERMINAL_STATES

    @property
    def is_successful(self) -> bool:
        """Whether this state counts as success: SUCCESS or WARNING (the CLI exits 0 for both)."""
        return self in (State.SUCCESS, State.WARNING)


#: Kestra's terminated states.
TERMINAL_STATES: frozenset[State] = frozenset(
    {
        State.SUCCESS,
        State.WARNING,
        State.FAILED,
        State.KILLED,
        State.CANCELLED,
        State.RETRIED,
        State.SKIPPED,
    }
)


class LogLevel(StrEnum):
    """Log level, most to least verbose (Kestra/SLF4J names)."""

    UNSPECIFIED = "UNSPECIFIED"
    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def format_iso_instant(value: datetime | None) -> str | None:
    """Formats a timestamp as Java's ``Instant.toString()`` does (Kestra's JSON dates).

    UTC with a ``Z`` suffix; the fraction is omitted when zero and otherwise written with 3 or 6
    digits, e.g. ``2024-05-01T10:00:00Z``, ``2024-05-01T10:00:00.120Z``,
    ``2024-05-01T10:00:00.123456Z``. A naive datetime is taken to be UTC. ``None`` stays ``None``.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if value.microsecond == 0:
        spec = "seconds"
    elif value.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def format_iso_duration(value: timedelta | None) -> str | None:
    """Formats a duration as Java's ``Duration.toString()`` does (Kestra's JSON ``duration``).

    Hours, minutes and seconds only (days become hours), trailing zeros of the fraction dropped:
    ``PT0S``, ``PT1.5S``, ``PT2M3.004S``, ``PT26H``. Negative durations get a ``-`` on each part,
    as in Java. ``None`` stays ``None``.
    """
    if value is None:
        return None
    total_us = value // timedelta(microseconds=1)
    if total_us == 0:
        return "PT0S"
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    hours, rest = divmod(total_us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    out = "PT"
    if hours:
        out += f"{sign}{hours}H"
    if minutes:
        out += f"{sign}{minutes}M"
    if seconds or micros:
        text = f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") if micros else str(seconds)
        out += f"{sign}{text}S"
    return out


@dataclass(frozen=True)
class StateHistory:
    """One entry of a state history: the state entered and when.

    Attributes:
        state: The state entered.
        date: When it was entered (UTC); ``None`` if the server did not say.
    """

    state: State
    date: datetime | None = None


@dataclass(frozen=True)
class StateInfo:
    """A current state with the ordered history that led to it (Kestra's ``State``).

    Attributes:
        current: The current state.
        histories: Every state entered, oldest first; the last one is ``current``.
    """

    current: State = State.UNSPECIFIED
    histories: list[StateHistory] = field(default_factory=list)

    @property
    def start_date(self) -> datetime | None:
        """Date of the first history entry, ``None`` without history."""
        return self.histories[0].date if self.histories else None

    @property
    def end_date(self) -> datetime | None:
        """Date of the last history entry once :attr:`current` is terminal, else ``None``."""
        if not self.current.is_terminal or not self.histories:
            return None
        return self.histories[-1].date

    @property
    def duration(self) -> timedelta | None:
        """End minus start once terminal, else ``None``."""
        start, end = self.start_date, self.end_date
        return end - start if start is not None and end is not None else None

    def to_kestra_json(
        self, *, start_date: datetime | None = None, end_date: datetime | None = None
    ) -> dict[str, Any]:
        """Kestra's JSON form of a state.

        Args:
            start_date: Overrides :attr:`start_date` (e.g. the execution's own start date).
            end_date: Overrides :attr:`end_date`.

        Returns:
            ``{"current", "histories": [{"state", "date"}], "startDate", "endDate", "duration"}``
            with ISO-8601 dates (see :func:`format_iso_instant`); ``endDate`` and ``duration``
            (see :func:`format_iso_duration`) are ``None`` until the state is terminal.
        """
        start = start_date if start_date is not None else self.start_date
        end = end_date if end_date is not None else self.end_date
        if not self.current.is_terminal:
            end = None
        return {
            "current": str(self.current),
            "histories": [
                {"state": str(h.state), "date": format_iso_instant(h.date)} for h in self.histories
            ],
            "startDate": format_iso_instant(start),
            "endDate": format_iso_instant(end),
            "duration": format_iso_duration(end - start) if start is not None and end is not None else None,
        }


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a flow source.

    Attributes:
        path: Dotted path of the offending field, e.g. ``tasks[1].type``; empty when the problem
            is with the whole document.
        message: Human-readable message naming the flow, task and field.
        line: 1-based YAML line, ``None`` when unknown.
        column: 1-based YAML column, ``None`` when unknown.
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None


class DeployResult(NamedTuple):
    """Outcome of deploying a flow: the latest revision, whether this call stored it, and
    warnings (e.g. properties this version parses but does not apply yet)."""

    flow: Flow
    created: bool
    warnings: list[ValidationIssue]


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating a flow source (nothing is stored).

    Attributes:
        valid: Whether the flow has no errors (it may still have warnings).
        errors: Problems that make the flow invalid.
        warnings: Problems that do not.
        namespace: Namespace as parsed, ``None`` when it could not be read.
        id: Flow id as parsed, ``None`` when it could not be read.
    """

    valid: bool
    errors: list[ValidationIssue] = field(default_factory=list)
    warnings: list[ValidationIssue] = field(default_factory=list)
    namespace: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class FlowInput:
    """A declared flow input (Kestra ``inputs[]``).

    Attributes:
        id: Input id.
        type: Kestra input type name: ``STRING``, ``INT``, ``FLOAT``, ``BOOLEAN``, ...
        required: Whether an execution must give it (when there is no default).
        default: The default value, parsed from JSON; ``None`` when there is none (see
            :attr:`has_default` to tell a JSON ``null`` default apart).
        has_default: Whether the input declares a default.
        description: Free text, empty when none.
    """

    id: str
    type: str
    required: bool = False
    default: Any = None
    has_default: bool = False
    description: str = ""


@dataclass(frozen=True)
class Flow:
    """A stored flow revision.

    Attributes:
        namespace: Dotted namespace, e.g. ``company.team``.
        id: Flow id, unique in its namespace.
        revision: 1-based revision number.
        source: The YAML source exactly as registered.
        description: Flow description, empty when none.
        labels: Flow labels (a repeated key keeps its last value).
        inputs: Declared inputs, in source order.
        disabled: Whether the flow is disabled (its triggers do not fire).
        deleted: Whether the flow was deleted (only listed with ``include_deleted``).
        created: When this revision was stored (UTC).
        task_count: Number of tasks declared anywhere in the flow, nested and error tasks included.
    """

    namespace: str
    id: str
    revision: int
    source: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    inputs: list[FlowInput] = field(default_factory=list)
    disabled: bool = False
    deleted: bool = False
    created: datetime | None = None
    task_count: int = 0

    @property
    def uid(self) -> str:
        """``namespace.id``, how the CLI names a flow."""
        return f"{self.namespace}.{self.id}"


@dataclass(frozen=True)
class Attempt:
    """One attempt of a task run on a worker (Kestra's ``TaskRunAttempt``).

    Attributes:
        attempt: 1-based attempt number.
        state: State of this attempt.
        worker_id: Worker that ran it, ``None`` if none claimed it.
        start_date: When the worker claimed it (UTC).
        end_date: When it ended (UTC).
        reason: Why it ended when not by the task's own result (e.g. ``LEASE_EXPIRED``).
        log_file: ``kestra:///`` URI of the attempt's log lines (task ``logToFile``), else None.
    """

    attempt: int
    state: StateInfo = field(default_factory=StateInfo)
    worker_id: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    reason: str | None = None
    log_file: str | None = None

    def to_kestra_json(self) -> dict[str, Any]:
        """Kestra's JSON form: ``{"state": {...}, "workerId", "logFile"}`` (``logFile`` only when set)."""
        result = {
            "state": self.state.to_kestra_json(start_date=self.start_date, end_date=self.end_date),
            "workerId": self.worker_id,
        }
        if self.log_file:
            result["logFile"] = self.log_file
        return result


@dataclass(frozen=True)
class TaskRun:
    """One run of one task of an execution (Kestra's ``TaskRun``).

    Attributes:
        id: Task run id.
        execution_id: Id of the execution it belongs to.
        namespace: The execution's namespace (filled in by the client from the execution).
        flow_id: The execution's flow id (filled in by the client from the execution).
        task_id: Id of the task in the flow.
        task_type: Task type as written in the flow, empty when unknown.
        parent_task_run_id: The flowable task run this one runs under, ``None`` at top level.
        value: Loop value (Kestra ``taskrun.value``), ``None`` outside loops.
        state: Current state with history.
        attempts: Attempts in order.
        outputs: The task's outputs, ``None`` when it has none.
        error: The error that failed it, ``None`` if none.
    """

    id: str
    execution_id: str
    task_id: str
    state: StateInfo = field(default_factory=StateInfo)
    namespace: str = ""
    flow_id: str = ""
    task_type: str = ""
    parent_task_run_id: str | None = None
    value: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    outputs: dict[str, Any] | None = None
    error: str | None = None

    @property
    def duration(self) -> timedelta | None:
        """Time from the first to the last state once terminal, else ``None``."""
        return self.state.duration

    def to_kestra_json(self) -> dict[str, Any]:
        """Kestra's JSON form of a task run (see :meth:`Execution.to_kestra_json`)."""
        return {
            "id": self.id,
            "executionId": self.execution_id,
            "namespace": self.namespace or None,
            "flowId": self.flow_id or None,
            "taskId": self.task_id,
            "parentTaskRunId": self.parent_task_run_id,
            "value": self.value,
            "state": self.state.to_kestra_json(),
            "attempts": [a.to_kestra_json() for a in self.attempts] if self.attempts else None,
            "outputs": self.outputs,
        }


@dataclass(frozen=True)
class Execution:
    """An execution of a flow (Kestra's ``Execution``).

    Attributes:
        id: Execution id.
        namespace: The flow's namespace.
        flow_id: The flow's id.
        flow_revision: The flow revision it runs.
        state: Current state with history.
        inputs: Inputs after coercion to their declared types, ``None`` when the server sent none.
        outputs: Flow outputs, set once the execution ended; ``None`` before or when there are none.
        labels: Execution labels (a repeated key keeps its last value).
        task_runs: Task runs in creation order; empty in list results.
        start_date: When it started (UTC).
        end_date: When it ended (UTC), ``None`` while running.
        error: Why it failed outside any task (e.g. an executor error), ``None`` if it did not.
        parent_id: Parent execution (subflows), ``None`` if none.
        original_id: The execution this one replays, ``None`` if none.
    """

    id: str
    namespace: str
    flow_id: str
    flow_revision: int = 0
    state: StateInfo = field(default_factory=StateInfo)
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    task_runs: list[TaskRun] = field(default_factory=list)
    start_date: datetime | None = None
    end_date: datetime | None = None
    error: str | None = None
    parent_id: str | None = None
    original_id: str | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the execution has terminated (see :attr:`State.is_terminal`)."""
        return self.state.current.is_terminal

    @property
    def duration(self) -> timedelta | None:
        """End minus start once terminal, else ``None``."""
        start = self.start_date or self.state.start_date
        end = self.end_date or self.state.end_date
        if not self.is_terminal or start is None or end is None:
            return None
        return end - start

    def to_kestra_json(self) -> dict[str, Any]:
        """The execution in the JSON shape of Kestra's API (``GET /api/v1/executions/{id}``).

        Returns:
            A JSON-serialisable dict::

                {"id", "namespace", "flowId", "flowRevision",
                 "state": {"current", "histories": [{"state", "date"}], "startDate", "endDate",
                           "duration"},
                 "inputs", "outputs", "labels": [{"key", "value"}], "parentId", "originalId",
                 "taskRunList": [{"id", "executionId", "namespace", "flowId", "taskId",
                                  "parentTaskRunId", "value", "state": {...},
                                  "attempts": [{"state": {...}, "workerId"}], "outputs"}]}

            Dates are ISO-8601 UTC instants, ``duration`` an ISO-8601 duration (``PT1.5S``) set
            once terminal. Absent values are ``None`` (JSON ``null``), as Kestra returns them:
            ``inputs``/``outputs``/``parentId``/``originalId`` without a value, a task run's
            ``parentTaskRunId``/``value``/``outputs`` and ``attempts`` when it has none.
            ``labels`` and ``taskRunList`` are lists, possibly empty. Kestrel-only fields
            (``error``, ``task_type``) are not part of the shape.
        """
        return {
            "id": self.id,
            "namespace": self.namespace,
            "flowId": self.flow_id,
            "flowRevision": self.flow_revision,
            "state": self.state.to_kestra_json(start_date=self.start_date, end_date=self.end_date),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "labels": [{"key": k, "value": v} for k, v in self.labels.items()],
            "parentId": self.parent_id,
            "originalId": self.original_id,
            "taskRunList": [t.to_kestra_json() for t in self.task_runs],
        }


@dataclass(frozen=True)
class ExecutionPage:
    """One page of :meth:`KestrelClient.list_executions`.

    Attributes:
        executions: Executions, newest first, without task runs.
        next_page_token: Token for the next page, ``None`` on the last page.
    """

    executions: list[Execution]
    next_page_token: str | None = None


@dataclass(frozen=True)
class LogEntry:
    """One log line of an execution.

    Attributes:
        sequence: Server-assigned number, increasing within an execution.
        execution_id: The execution.
        task_run_id: The task run, ``None`` for execution-level lines.
        task_id: The task, ``None`` for execution-level lines.
        attempt: 1-based attempt number of the task run, 0 when not from an attempt.
        level: Log level.
        message: The line.
        timestamp: When it was logged (UTC).
    """

    sequence: int
    execution_id: str
    level: LogLevel
    message: str
    timestamp: datetime | None = None
    task_run_id: str | None = None
    task_id: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    """A worker registered with the control plane (``WorkerService.ListWorkers``).

    Attributes:
        id: Worker id.
        hostname: Host it runs on, as it announced.
        sdk: SDK name/version (``python/0.1.0``, ``node/0.1.0``).
        task_types: Task types it runs.
        worker_group: Its worker group (empty for the default group).
        labels: Its labels.
        concurrency: Task runs it may run at once.
        state: ``ACTIVE``, ``STOPPED`` (shut down) or ``DEAD`` (silent past the server's limit).
        registered_at: When it (last) registered (UTC).
        last_heartbeat_at: Its last heartbeat (UTC).
        running_task_runs: Attempts running on it now.
    """

    id: str
    hostname: str
    sdk: str
    task_types: list[str]
    worker_group: str
    labels: dict[str, str]
    concurrency: int
    state: str
    registered_at: datetime | None
    last_heartbeat_at: datetime | None
    running_task_runs: int
