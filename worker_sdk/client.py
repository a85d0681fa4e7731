"""Typed, synchronous Python client of the Kestrel gRPC API.

One client for every consumer: the ``kestrel`` CLI, the dashboard and users' scripts::

    from worker_sdk.client import KestrelClient

    with KestrelClient("127.0.0.1:6570") as client:
        flow, created, warnings = client.deploy_flow(open("hello.yml").read())
        execution = client.start_execution(flow.namespace, flow.id, inputs={"user": "Ada"})
        final = client.wait_execution(execution.id, timeout=60)
        print(final.state.current, final.outputs)

Protobuf stops here: every method takes and returns plain Python values and the dataclasses of
:mod:`worker_sdk.types`; JSON-text fields are parsed; a failed call raises the
:class:`~worker_sdk.errors.RPCError` subclass for its gRPC status, carrying the server's message.
The client is thread-safe (one gRPC channel, shared).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from kestrel.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    flow_pb2,
    flow_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from worker_sdk.connection import Connection
from worker_sdk.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    KestrelError,
    ProtocolError,
    RPCError,
    RPCStatusCode,
    error_for_status,
)
from worker_sdk.storage import FilesAndKVClientMixin
from worker_sdk.types import (
    Attempt,
    DeployResult,
    Execution,
    ExecutionPage,
    Flow,
    FlowInput,
    LogEntry,
    LogLevel,
    State,
    StateHistory,
    StateInfo,
    TaskRun,
    ValidationIssue,
    ValidationResult,
    WorkerInfo,
)

__all__ = ["DEFAULT_SERVER", "KestrelClient"]

#: Address the client and the CLI use when none is given.
DEFAULT_SERVER = "127.0.0.1:6570"

# Large executions (many task runs with outputs) outgrow gRPC's 4 MiB default.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Page size used when the client itself walks all pages.
_WALK_PAGE_SIZE = 500
# Pause before re-watching when a watch stream closed before a terminal state.
_REWATCH_PAUSE_SECONDS = 0.5

_T = TypeVar("_T")


class KestrelClient(FilesAndKVClientMixin):
    """Synchronous client of the Kestrel control plane (flows, executions, logs; files and KV
    from :class:`worker_sdk.storage.FilesAndKVClientMixin`).

    Args:
        server: ``host:port`` of a control plane (any gRPC target string works, e.g.
            ``dns:///kestrel.internal:6570``).
        timeout: Deadline in seconds of each unary call. Streams (:meth:`watch_execution`,
            :meth:`tail_logs`) have no deadline unless one is given to them.
        token: API token sent on every call; default ``connection``'s, else ``KESTREL_TOKEN``.
        connection: Token and TLS files (:class:`worker_sdk.connection.Connection`); default
            from ``KESTREL_TOKEN`` and ``KESTREL_TLS_CA``/``_CERT``/``_KEY``.

    Raises:
        ValueError: ``server`` is empty or ``timeout`` is not positive.

    Use as a context manager or call :meth:`close`. Connecting is lazy: an unreachable server
    shows up as :class:`~worker_sdk.errors.UnavailableError` on the first call.
    """

    def __init__(
        self, server: str = DEFAULT_SERVER, *, timeout: float = 30.0, token: str | None = None,
        connection: Connection | None = None,
    ) -> None:
        if not server:
            raise ValueError("server address must not be empty")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.server = server
        self.timeout = timeout
        connection = connection if connection is not None else Connection.from_env()
        if token is not None:
            connection = dataclasses.replace(connection, token=token)
        self._channel = connection.channel(
            server,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ],
        )
        self._flows = flow_pb2_grpc.FlowServiceStub(self._channel)
        self._executions = execution_pb2_grpc.ExecutionServiceStub(self._channel)
        self._logs = log_pb2_grpc.LogServiceStub(self._channel)
        self._workers = worker_pb2_grpc.WorkerServiceStub(self._channel)
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel; open streams end. Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> KestrelClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KestrelClient({self.server!r}, timeout={self.timeout})"

    # -- flows -----------------------------------------------------------------------------

    def validate_flow(self, source: str, *, lenient_expressions: bool = False) -> ValidationResult:
        """Validates a flow's YAML source; nothing is stored.

        Args:
            source: The flow YAML.
            lenient_expressions: Report expression errors (syntax, unknown task, input or
                variable) as warnings, as Kestra would accept the flow and fail at run time.

        Returns:
            The verdict, with errors and warnings carrying YAML line and column when known.

        Raises:
            RPCError: The call failed (e.g. :class:`~worker_sdk.errors.UnavailableError`).
        """
        resp = self._unary(
            self._flows.ValidateFlow,
            flow_pb2.ValidateFlowRequest(source=source, lenient_expressions=lenient_expressions),
        )
        return ValidationResult(
            valid=resp.valid,
            errors=[_issue(i) for i in resp.errors],
            warnings=[_issue(i) for i in resp.warnings],
            namespace=resp.namespace or None,
            id=resp.id or None,
        )

    def deploy_flow(
        self, source: str, expected_revision: int = 0, *, lenient_expressions: bool = False
    ) -> DeployResult:
        """Stores a new revision of a flow (``FlowService.RegisterFlow``).

        Args:
            source: The flow YAML.
            expected_revision: The latest revision the caller knows of; the server refuses the
                change when it differs. 0 skips the check.
            lenient_expressions: As for :meth:`validate_flow`.

        Returns:
            ``DeployResult(flow, created, warnings)``: the latest revision, whether this call
            stored it (``False`` when the source was identical to the latest revision), and
            validation warnings.

        Raises:
            InvalidArgumentError: The source is not a valid flow; the message lists the problems.
            AbortedError: ``expected_revision`` is not the latest revision.
            RPCError: Any other failure.
        """
        resp = self._unary(
            self._flows.RegisterFlow,
            flow_pb2.RegisterFlowRequest(
                source=source, expected_revision=expected_revision, lenient_expressions=lenient_expressions
            ),
        )
        return DeployResult(_flow(resp.flow), resp.created_revision, [_issue(i) for i in resp.warnings])

    def get_flow(self, namespace: str, id: str, revision: int = 0) -> Flow:
        """Returns one flow revision.

        Args:
            namespace: The flow's namespace.
            id: The flow's id.
            revision: The revision; 0 for the latest.

        Raises:
            NotFoundError: No such flow or revision.
            RPCError: Any other failure.
        """
        resp = self._unary(
            self._flows.GetFlow, flow_pb2.GetFlowRequest(namespace=namespace, id=id, revision=revision)
        )
        return _flow(resp.flow)

    def list_flows(self, namespace: str = "", *, include_deleted: bool = False) -> list[Flow]:
        """Lists the latest revision of every flow, walking all pages.

        Args:
            namespace: Namespace prefix in the dotted hierarchy (``company`` matches
                ``company.team``); empty for all.
            include_deleted: Also list deleted flows.

        Returns:
            The flows in the server's order.

        Raises:
            RPCError: The call failed.
        """

        def page(token: str) -> tuple[list[Flow], str]:
            resp = self._unary(
                self._flows.ListFlows,
                flow_pb2.ListFlowsRequest(
                    namespace=namespace,
                    page_size=_WALK_PAGE_SIZE,
                    page_token=token,
                    include_deleted=include_deleted,
                ),
            )
            return [_flow(f) for f in resp.flows], resp.next_page_token

        return list(_walk_pages(page))

    def list_workers(self, state: str = "") -> list[WorkerInfo]:
        """Lists the registered workers (``WorkerService.ListWorkers``), ACTIVE ones first.

        Args:
            state: Only ``ACTIVE``, ``STOPPED`` or ``DEAD`` workers; empty for all.

        Raises:
            InvalidArgumentError: Unknown state. RPCError: The call failed.
        """
        resp = self._unary(self._workers.ListWorkers, worker_pb2.ListWorkersRequest(state=state))
        return [
            WorkerInfo(
                id=w.id, hostname=w.hostname, sdk=w.sdk, task_types=list(w.task_types),
                worker_group=w.worker_group, labels=_labels(w.labels), concurrency=w.concurrency,
                state=w.state, registered_at=_timestamp(w.registered_at, w.HasField("registered_at")),
                last_heartbeat_at=_timestamp(w.last_heartbeat_at, w.HasField("last_heartbeat_at")),
                running_task_runs=w.running_task_runs,
            )
            for w in resp.workers
        ]

    def list_flow_revisions(self, namespace: str, id: str) -> list[Flow]:
        """Lists every stored revision of one flow, oldest first.

        Raises:
            NotFoundError: No such flow.
            RPCError: Any other failure.
        """
        resp = self._unary(
            self._flows.ListFlowRevisions, flow_pb2.ListFlowRevisionsRequest(namespace=namespace, id=id)
        )
        return [_flow(f) for f in resp.flows]

    def delete_flow(self, namespace: str, id: str) -> None:
        """Deletes a flow: its executions stay readable, new ones are refused.

        Raises:
            NotFoundError: No such flow.
            RPCError: Any other failure.
        """
        self._unary(self._flows.DeleteFlow, flow_pb2.DeleteFlowRequest(namespace=namespace, id=id))

    # -- executions ------------------------------------------------------------------------

    def start_execution(
        self,
        namespace: str,
        flow_id: str,
        inputs: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        request_id: str | None = None,
        revision: int = 0,
    ) -> Execution:
        """Creates an execution of a flow.

        Args:
            namespace: The flow's namespace.
            flow_id: The flow's id.
            inputs: Input id -> value; any JSON-serialisable values. Strings are coerced by the
                server to the declared input type (as Kestra's form inputs), typed values are
                checked against it.
            labels: Execution labels; values are turned into strings.
            request_id: Idempotency key: a repeated key for the same flow returns the execution
                the first call created.
            revision: Flow revision to run; 0 for the latest.

        Returns:
            The new (or, for a repeated ``request_id``, the earlier) execution.

        Raises:
            InvalidArgumentError: An input is missing, unknown or of the wrong type (the message
                names it), or ``inputs`` is not JSON-serialisable (raised before sending).
            NotFoundError: No such flow or revision.
            FailedPreconditionError: The flow is deleted or disabled.
            RPCError: Any other failure.
        """
        try:
            inputs_json = json.dumps(dict(inputs)) if inputs else ""
        except (TypeError, ValueError) as err:
            raise InvalidArgumentError(
                f"inputs must be JSON-serialisable: {err}", server=self.server
            ) from None
        request = execution_pb2.StartExecutionRequest(
            namespace=namespace,
            flow_id=flow_id,
            revision=revision,
            inputs_json=inputs_json,
            labels=_labels_to_proto(labels),
            request_id=request_id or "",
        )
        resp = self._unary(self._executions.StartExecution, request)
        return _execution(resp.execution)

    def get_execution(self, id: str) -> Execution:
        """Returns one execution with its task runs.

        Raises:
            NotFoundError: No such execution.
            RPCError: Any other failure.
        """
        resp = self._unary(self._executions.GetExecution, execution_pb2.GetExecutionRequest(id=id))
        return _execution(resp.execution)

    def list_executions(
        self,
        namespace: str = "",
        flow_id: str = "",
        states: Iterable[State | str] = (),
        page_size: int = 50,
        page_token: str = "",
    ) -> ExecutionPage:
        """Returns ONE page of executions, newest first, without task runs.

        Pass ``page.next_page_token`` back as ``page_token`` for the next page; use
        :meth:`iter_executions` to walk every page.

        Args:
            namespace: Namespace prefix; empty for all.
            flow_id: Only this flow's executions; empty for all.
            states: Only executions in one of these states (names, case-insensitive); empty for
                all.
            page_size: Most executions in the page (the server may cap it).
            page_token: Token from the previous page; empty for the first.

        Raises:
            InvalidArgumentError: An unknown state name (raised before sending) or a bad token.
            RPCError: Any other failure.
        """
        request = execution_pb2.ListExecutionsRequest(
            namespace=namespace,
            flow_id=flow_id,
            states=[self._state_to_proto(s) for s in states],
            page_size=page_size,
            page_token=page_token,
        )
        resp = self._unary(self._executions.ListExecutions, request)
        return ExecutionPage(
            executions=[_execution(e) for e in resp.executions],
            next_page_token=resp.next_page_token or None,
        )

    def iter_executions(
        self,
        namespace: str = "",
        flow_id: str = "",
        states: Iterable[State | str] = (),
        page_size: int = 50,
    ) -> Iterator[Execution]:
        """Iterates executions like :meth:`list_executions`, fetching pages as it goes.

        Raises:
            InvalidArgumentError: An unknown state name.
            RPCError: A page could not be fetched (raised during iteration).
        """
        states = list(states)

        def page(token: str) -> tuple[list[Execution], str]:
            result = self.list_executions(namespace, flow_id, states, page_size, token)
            return result.executions, result.next_page_token or ""

        return _walk_pages(page)

    def kill_execution(self, id: str) -> Execution:
        """Kills an execution: not-started task runs become KILLED, running ones are asked to stop.

        Returns:
            The execution after the request (usually KILLING; KILLED once workers stopped).

        Raises:
            NotFoundError: No such execution.
            FailedPreconditionError: It has already terminated.
            RPCError: Any other failure.
        """
        resp = self._unary(self._executions.KillExecution, execution_pb2.KillExecutionRequest(id=id))
        return _execution(resp.execution)

    def resume_execution(self, id: str, inputs: Mapping[str, Any] | None = None) -> Execution:
        """Resumes a PAUSED execution; ``inputs`` answer its Pause's ``onResume`` inputs.

        Raises:
            NotFoundError: No such execution.
            FailedPreconditionError: It is not PAUSED.
            InvalidArgumentError: An ``onResume`` input is missing, of the wrong type or unknown.
            RPCError: Any other failure.
        """
        request = execution_pb2.ResumeExecutionRequest(id=id, inputs_json=json.dumps(dict(inputs or {})))
        return _execution(self._unary(self._executions.ResumeExecution, request).execution)

    def restart_execution(self, id: str) -> Execution:
        """Restarts a FAILED or KILLED execution in place (same id); failed task runs run again.

        Raises:
            NotFoundError: No such execution.
            FailedPreconditionError: It is not FAILED or KILLED ("No task found to restart").
            RPCError: Any other failure.
        """
        request = execution_pb2.RestartExecutionRequest(id=id)
        return _execution(self._unary(self._executions.RestartExecution, request).execution)

    def replay_execution(self, id: str, task_run_id: str) -> Execution:
        """Replays a terminated execution from one of its task runs; returns the new execution.

        Raises:
            NotFoundError: No such execution or task run.
            FailedPreconditionError: It has not terminated.
            RPCError: Any other failure.
        """
        request = execution_pb2.ReplayExecutionRequest(id=id, task_run_id=task_run_id)
        return _execution(self._unary(self._executions.ReplayExecution, request).execution)

    def set_execution_labels(self, id: str, labels: Mapping[str, Any]) -> Execution:
        """Replaces an execution's labels (its ``system.*`` labels are kept).

        Raises:
            NotFoundError: No such execution.
            InvalidArgumentError: A ``system.*`` label was given.
            RPCError: Any other failure.
        """
        request = execution_pb2.SetExecutionLabelsRequest(id=id, labels=_labels_to_proto(labels))
        return _execution(self._unary(self._executions.SetExecutionLabels, request).execution)

    def watch_execution(self, id: str, *, timeout: float | None = None) -> Iterator[Execution]:
        """Streams an execution: its current form at once, then each change.

        The server closes the stream after sending a terminal state. Stop iterating (or close the
        iterator) to cancel the stream early.

        Args:
            id: The execution id.
            timeout: Deadline of the whole stream in seconds; ``None`` for none.

        Yields:
            The execution, with its task runs, after each change.

        Raises:
            NotFoundError: No such execution.
            DeadlineExceededError: ``timeout`` passed.
            RPCError: Any other failure, e.g. the server went away mid-stream.
        """
        return self._stream(
            lambda: self._executions.WatchExecution(
                execution_pb2.WatchExecutionRequest(id=id), timeout=timeout
            ),
            lambda resp: [_execution(resp.execution)],
        )

    def wait_execution(self, id: str, timeout: float | None = None) -> Execution:
        """Waits until an execution terminates (via :meth:`watch_execution`) and returns it.

        A stream that closes before a terminal state is re-opened. A PAUSED execution is waited
        on like a running one.

        Args:
            id: The execution id.
            timeout: Longest wait in seconds; ``None`` waits for ever.

        Returns:
            The execution in its terminal state (see :attr:`State.is_terminal`), with task runs.

        Raises:
            NotFoundError: No such execution.
            DeadlineExceededError: It did not terminate within ``timeout``.
            RPCError: Any other failure.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                for execution in self.watch_execution(id, timeout=remaining):
                    if execution.is_terminal:
                        return execution
            except DeadlineExceededError:
                if deadline is None or time.monotonic() < deadline:
                    raise
                raise DeadlineExceededError(
                    f"execution {id} did not terminate within {timeout:g} s", server=self.server
                ) from None
            # The stream ended without a terminal state (e.g. a server replica went away).
            execution = self.get_execution(id)
            if execution.is_terminal:
                return execution
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    f"execution {id} did not terminate within {timeout:g} s", server=self.server
                )
            time.sleep(_REWATCH_PAUSE_SECONDS)

    # -- logs ------------------------------------------------------------------------------

    def list_logs(
        self,
        execution_id: str,
        task_run_id: str = "",
        min_level: LogLevel | str | None = None,
    ) -> list[LogEntry]:
        """Returns the stored log lines of an execution, in order, fetching every page.

        Args:
            execution_id: The execution.
            task_run_id: Only this task run's lines; empty for all.
            min_level: Only lines at or above this level (``"INFO"``, ``LogLevel.WARN``, ...);
                ``None`` for all.

        Raises:
            InvalidArgumentError: An unknown level name (raised before sending).
            RPCError: The call failed.
        """
        level = self._level_to_proto(min_level)
        entries: list[LogEntry] = []
        after = 0
        while True:
            resp = self._unary(
                self._logs.ListLogs,
                log_pb2.ListLogsRequest(
                    execution_id=execution_id,
                    task_run_id=task_run_id,
                    min_level=level,
                    after_sequence=after,
                    page_size=_WALK_PAGE_SIZE,
                ),
            )
            page = [_log_entry(e) for e in resp.entries]
            # ListLogs has no next-page token: keep asking after the last sequence until a page
            # comes back empty (or does not advance, which would otherwise loop for ever).
            if not page or page[-1].sequence <= after:
                return entries
            entries.extend(page)
            after = page[-1].sequence

    def tail_logs(
        self,
        execution_id: str,
        *,
        min_level: LogLevel | str | None = None,
        after_sequence: int = 0,
    ) -> Iterator[LogEntry]:
        """Streams an execution's log lines: the stored ones, then new ones as they arrive.

        The server ends the stream once the execution has terminated and its lines were sent.

        Args:
            execution_id: The execution.
            min_level: Only lines at or above this level; ``None`` for all.
            after_sequence: Only lines with a greater sequence number (resume a tail).

        Yields:
            Log lines in sequence order.

        Raises:
            InvalidArgumentError: An unknown level name.
            NotFoundError: No such execution.
            RPCError: Any other failure (raised during iteration).
        """
        level = self._level_to_proto(min_level)
        request = log_pb2.TailLogsRequest(
            execution_id=execution_id, min_level=level, after_sequence=after_sequence
        )
        return self._stream(
            lambda: self._logs.TailLogs(request),
            lambda resp: [_log_entry(e) for e in resp.entries],
        )

    # -- plumbing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise KestrelError("the client is closed")

    def _unary(self, method: Callable[..., _T], request: Any) -> _T:
        self._check_open()
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None

    def _stream(self, open_call: Callable[[], Any], convert: Callable[[Any], list[_T]]) -> Iterator[_T]:
        self._check_open()

        def generate() -> Iterator[_T]:
            call = open_call()
            try:
                for resp in call:
                    yield from convert(resp)
            except grpc.RpcError as err:
                raise self._error(err) from None
            finally:
                call.cancel()

        return generate()

    def _error(self, err: grpc.RpcError) -> RPCError:
        """Maps a gRPC failure to the :mod:`worker_sdk.errors` type for its status."""
        code = err.code() if isinstance(err, grpc.Call) else None
        details = err.details() if isinstance(err, grpc.Call) else None
        status = code.value[0] if isinstance(code, grpc.StatusCode) else RPCStatusCode.UNKNOWN
        return error_for_status(status, details or "", server=self.server)

    def _state_to_proto(self, state: State | str) -> common_pb2.State.ValueType:
        name = str(state).strip().upper()
        try:
            if name == State.UNSPECIFIED:
                raise ValueError(name)
            return common_pb2.State.Value(f"STATE_{name}")
        except ValueError:
            known = ", ".join(s.value for s in State if s is not State.UNSPECIFIED)
            raise InvalidArgumentError(f"unknown state {state!r}; expected one of {known}") from None

    def _level_to_proto(self, level: LogLevel | str | None) -> common_pb2.LogLevel.ValueType:
        if level is None:
            return common_pb2.LOG_LEVEL_UNSPECIFIED
        name = str(level).strip().upper()
        name = {"WARNING": "WARN"}.get(name, name)
        try:
            if name == LogLevel.UNSPECIFIED:
                raise ValueError(name)
            return common_pb2.LogLevel.Value(f"LOG_LEVEL_{name}")
        except ValueError:
            known = ", ".join(lv.value for lv in LogLevel if lv is not LogLevel.UNSPECIFIED)
            raise InvalidArgumentError(f"unknown log level {level!r}; expected one of {known}") from None


# -- paging --------------------------------------------------------------------------------


def _walk_pages(fetch: Callable[[str], tuple[list[_T], str]]) -> Iterator[_T]:
    """Yields the items of every page; ``fetch(token) -> (items, next_token)``, '' = last."""
    token = ""
    seen: set[str] = set()
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return
        if token in seen:
            raise ProtocolError(f"the server returned page token {token!r} twice")
        seen.add(token)


# -- proto -> dataclass --------------------------------------------------------------------
# The only place besides the request builders above where kestrel.v1 types are touched.


def _timestamp(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def _state(value: int) -> State:
    try:
        return State(common_pb2.State.Name(value).removeprefix("STATE_"))
    except ValueError:
        return State.UNSPECIFIED


def _level(value: int) -> LogLevel:
    try:
        return LogLevel(common_pb2.LogLevel.Name(value).removeprefix("LOG_LEVEL_"))
    except ValueError:
        return LogLevel.UNSPECIFIED


def _state_info(msg: common_pb2.StateInfo) -> StateInfo:
    return StateInfo(
        current=_state(msg.current),
        histories=[
            StateHistory(_state(h.state), _timestamp(h.date, h.HasField("date"))) for h in msg.histories
        ],
    )


def _json_value(text: str, what: str) -> Any:
    """Parses a JSON-text field; empty text is ``None``."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise ProtocolError(f"the server sent invalid JSON in {what}: {err}") from None


def _json_object(text: str, what: str) -> dict[str, Any] | None:
    value = _json_value(text, what)
    if value is not None and not isinstance(value, dict):
        raise ProtocolError(f"the server sent {type(value).__name__} JSON in {what}, expected an object")
    return value


def _labels(labels: Iterable[common_pb2.Label]) -> dict[str, str]:
    return {label.key: label.value for label in labels}


def _labels_to_proto(labels: Mapping[str, Any] | None) -> list[common_pb2.Label]:
    return [common_pb2.Label(key=str(k), value=str(v)) for k, v in (labels or {}).items()]


def _issue(msg: flow_pb2.ValidationIssue) -> ValidationIssue:
    return ValidationIssue(
        path=msg.path, message=msg.message, line=msg.line or None, column=msg.column or None
    )


def _flow_input(msg: flow_pb2.FlowInput, flow_uid: str) -> FlowInput:
    return FlowInput(
        id=msg.id,
        type=msg.type,
        required=msg.required,
        default=_json_value(msg.defaults_json, f"the default of input {msg.id!r} of flow {flow_uid}"),
        has_default=bool(msg.defaults_json),
        description=msg.description,
    )


def _flow(msg: flow_pb2.Flow) -> Flow:
    uid = f"{msg.namespace}.{msg.id}"
    return Flow(
        namespace=msg.namespace,
        id=msg.id,
        revision=msg.revision,
        source=msg.source,
        description=msg.description,
        labels=_labels(msg.labels),
        inputs=[_flow_input(i, uid) for i in msg.inputs],
        disabled=msg.disabled,
        deleted=msg.deleted,
        created=_timestamp(msg.created, msg.HasField("created")),
        task_count=msg.task_count,
    )


def _attempt(msg: execution_pb2.TaskRunAttempt) -> Attempt:
    return Attempt(
        attempt=msg.attempt,
        state=_state_info(msg.state),
        worker_id=msg.worker_id or None,
        start_date=_timestamp(msg.start_date, msg.HasField("start_date")),
        end_date=_timestamp(msg.end_date, msg.HasField("end_date")),
        reason=msg.reason or None,
        log_file=msg.log_file or None,
    )


def _task_run(msg: execution_pb2.TaskRun, namespace: str, flow_id: str) -> TaskRun:
    return TaskRun(
        id=msg.id,
        execution_id=msg.execution_id,
        namespace=namespace,
        flow_id=flow_id,
        task_id=msg.task_id,
        task_type=msg.task_type,
        parent_task_run_id=msg.parent_task_run_id or None,
        value=msg.value or None,
        state=_state_info(msg.state),
        attempts=[_attempt(a) for a in msg.attempts],
        outputs=_json_object(msg.outputs_json, f"the outputs of task run {msg.id} ({msg.task_id})"),
        error=msg.error or None,
    )


def _execution(msg: execution_pb2.Execution) -> Execution:
    return Execution(
        id=msg.id,
        namespace=msg.namespace,
        flow_id=msg.flow_id,
        flow_revision=msg.flow_revision,
        state=_state_info(msg.state),
        inputs=_json_object(msg.inputs_json, f"the inputs of execution {msg.id}"),
        outputs=_json_object(msg.outputs_json, f"the outputs of execution {msg.id}"),
        labels=_labels(msg.labels),
        task_runs=[_task_run(t, msg.namespace, msg.flow_id) for t in msg.task_runs],
        start_date=_timestamp(msg.start_date, msg.HasField("start_date")),
        end_date=_timestamp(msg.end_date, msg.HasField("end_date")),
        error=msg.error or None,
        parent_id=msg.parent_id or None,
        original_id=msg.original_id or None,
    )


def _log_entry(msg: log_pb2.LogEntry) -> LogEntry:
    return LogEntry(
        sequence=msg.sequence,
        execution_id=msg.execution_id,
        task_run_id=msg.task_run_id or None,
        task_id=msg.task_id or None,
        attempt=msg.attempt,
        level=_level(msg.level),
        message=msg.message,
        timestamp=_timestamp(msg.timestamp, msg.HasField("timestamp")),
    )
