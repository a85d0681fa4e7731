"""The worker process: registers, long-polls the control plane, runs task runs and reports them.

This is the only module of the SDK runtime that talks gRPC: a `TaskAssignment` becomes a plain
`Assignment` at the boundary, log lines are turned into `LogEntry` messages here, and status codes
are handled here. Everything a task sees is plain Python (`worker_sdk.context`).

Protocol (``protos/kestrel/v1/worker.proto``):

1. ``RegisterWorker`` with every registered task type; retried with capped, jittered exponential
   backoff while the control plane is unreachable.
2. ``PollTaskRuns`` in a loop with ``max_task_runs`` = free slots, ``wait_seconds`` =
   `POLL_WAIT_SECONDS` and a client deadline `POLL_DEADLINE_MARGIN_SECONDS` longer.
   FAILED_PRECONDITION → register again; UNAVAILABLE and other errors → backoff.
3. Per task run: a fresh working directory, a `LogBuffer` sending ``LogService.AppendLogs`` with
   the task token, a heartbeat loop (``RecordTaskRunHeartbeat`` every
   ``heartbeat_interval_seconds``), the task's timeout, then exactly one ``CompleteTaskRun`` or
   ``FailTaskRun`` after the last log line was sent (a short task's last lines go in the
   ``CompleteTaskRun`` itself, ``logs``); a ``CompleteTaskRun`` asks for one more task
   run (``max_next_task_runs``, eager dispatch) and starts what it returns. ``cancel_requested`` → the task is stopped
   and failed with reason CANCELLED; NOT_FOUND from a heartbeat or a report → the lease was lost:
   the task is stopped and its result dropped (with a local warning).
4. ``WorkerHeartbeat`` at the same interval.
5. Stop (SIGTERM/SIGINT or `Worker.stop`): polling stops, running task runs get
   ``shutdown_grace_seconds`` to finish, the rest are stopped and handed back with FailTaskRun
   reason WORKER_SHUTDOWN, then ``ShutdownWorker``. A second signal (or ``stop(force=True)``)
   skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from enum import Enum
from importlib import metadata
from pathlib import Path
from time import monotonic
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from kestrel import logsetup
from kestrel.v1 import common_pb2, log_pb2, log_pb2_grpc, worker_pb2, worker_pb2_grpc
from worker_sdk.connection import Connection
from worker_sdk.context import LogBuffer, LogRecord, TaskContext, TaskFailure, TaskLogger, TaskResult
from worker_sdk.registry import TaskDefinition, TaskRegistry, UnknownTaskTypeError, default_registry
from worker_sdk.storage import TaskKV, TaskStorage
from worker_sdk.working_directories import WORKING_DIRECTORY_TYPE, WorkingDirectories, WorkingDirectoryGroup

__all__ = [
    "Assignment",
    "DEFAULT_SERVER",
    "FailureReason",
    "Worker",
    "WorkerError",
    "import_modules",
    "run_worker",
]

_log = logging.getLogger("kestrel.worker")
_task_log = logging.getLogger("kestrel.worker.task")

DEFAULT_SERVER = "127.0.0.1:6570"
POLL_WAIT_SECONDS = 20.0
"""How long the server may hold one PollTaskRuns call."""
POLL_DEADLINE_MARGIN_SECONDS = 10.0
"""The poll's client deadline is ``wait_seconds`` plus this."""
DEFAULT_SHUTDOWN_GRACE_SECONDS = 5.0
"""Default time running task runs may still finish after a stop request. Kept short so that a
supervisor's SIGKILL (``kestrel server local`` waits 10 s) comes after the hand-back."""
DEFAULT_HEARTBEAT_SECONDS = 5.0
"""Used when RegisterWorker answers no heartbeat interval."""
CANCEL_GRACE_SECONDS = 5.0
"""Time a stopped task gets to clean up (e.g. kill its processes) before it is reported."""
CANCEL_CHECK_SECONDS = 1.0
"""Longest gap between worker heartbeats while task runs are running (they carry kills)."""
RPC_TIMEOUT_SECONDS = 10.0
#: Largest gRPC message this worker accepts (poll responses), as the control plane allows.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REPORT_ATTEMPTS = 5
"""Attempts of short unary calls (ShutdownWorker, AppendLogs) on transient errors."""
REPORT_GRACE_SECONDS = 30.0
"""How long past its lease's last known expiry a worker keeps retrying a result report
(CompleteTaskRun/FailTaskRun) that fails with a transient error. A control plane that was down
reaps expired leases only once it is back, so a report arriving before that still wins;
after it, the report is refused with NOT_FOUND and the worker stops trying."""

LOGS_WITH_RESULT_MAX_BYTES = 256 * 1024
"""An attempt's last log lines go with its CompleteTaskRun when they total at most this many
bytes of text (else they are sent by AppendLogs first)..."""
LOGS_WITH_RESULT_MAX_OUTPUTS = 1024 * 1024
"""...and its outputs JSON is at most this long, so the completion stays far below the message limit."""
MAX_LOG_MESSAGE_CHARS = 256 * 1024
"""Longer log messages are cut (with a marker) so that every AppendLogs call stays small."""
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0

_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)
_FATAL_ON_REGISTER = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
_LOG_LEVELS: Mapping[str, int] = {
    "TRACE": common_pb2.LOG_LEVEL_TRACE,
    "DEBUG": common_pb2.LOG_LEVEL_DEBUG,
    "INFO": common_pb2.LOG_LEVEL_INFO,
    "WARN": common_pb2.LOG_LEVEL_WARN,
    "ERROR": common_pb2.LOG_LEVEL_ERROR,
}
_PY_LEVELS: Mapping[str, int] = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
}


def _sdk_version() -> str:
    try:
        return metadata.version("kestrel-orchestrator")
    except metadata.PackageNotFoundError:
        return "0.0.0"


SDK = f"python/{_sdk_version()}"
"""What the worker reports as its SDK in RegisterWorker."""


class WorkerError(RuntimeError):
    """The worker cannot run, e.g. the control plane refused its registration for good
    (INVALID_ARGUMENT, UNIMPLEMENTED, UNAUTHENTICATED, PERMISSION_DENIED)."""


class FailureReason(Enum):
    """Why an attempt is reported failed (mirrors the contract's ``FailureReason``)."""

    TASK_ERROR = worker_pb2.FAILURE_REASON_TASK_ERROR
    WORKER_SHUTDOWN = worker_pb2.FAILURE_REASON_WORKER_SHUTDOWN
    TIMEOUT = worker_pb2.FAILURE_REASON_TIMEOUT
    CANCELLED = worker_pb2.FAILURE_REASON_CANCELLED


@dataclass(frozen=True, slots=True)
class Assignment:
    """One task-run attempt handed to this worker (plain view of ``TaskAssignment``).

    Attributes:
        task_token: Opaque token for every call about this attempt.
        properties_json: JSON object text of the rendered task properties.
        value: Loop value, None outside loops.
        timeout_seconds: Attempt timeout in seconds, None for none.
        lease_expires_at: When the lease ends without a heartbeat (UTC), if sent.
        ready_at: When the task run became ready to dispatch (UTC), if sent.
        working_directory: The WorkingDirectory the task run belongs to, None outside one.
    """

    task_token: str
    task_run_id: str
    execution_id: str
    namespace: str
    flow_id: str
    flow_revision: int
    task_id: str
    task_type: str
    attempt: int
    properties_json: str
    idempotency_key: str
    value: str | None = None
    timeout_seconds: float | None = None
    lease_expires_at: datetime | None = None
    ready_at: datetime | None = None
    working_directory: WorkingDirectoryGroup | None = None

    @classmethod
    def from_proto(cls, msg: worker_pb2.TaskAssignment) -> Assignment:
        """Converts a ``TaskAssignment`` (empty strings and zero timeouts become None)."""
        return cls(
            task_token=msg.task_token,
            task_run_id=msg.task_run_id,
            execution_id=msg.execution_id,
            namespace=msg.namespace,
            flow_id=msg.flow_id,
            flow_revision=msg.flow_revision,
            task_id=msg.task_id,
            task_type=msg.task_type,
            attempt=msg.attempt or 1,
            properties_json=msg.properties_json,
            idempotency_key=msg.idempotency_key,
            value=msg.value or None,
            timeout_seconds=msg.timeout_seconds if msg.timeout_seconds > 0 else None,
            lease_expires_at=_dt(msg, "lease_expires_at"),
            ready_at=_dt(msg, "ready_at"),
            working_directory=(WorkingDirectoryGroup.from_proto(msg.working_directory)
                               if msg.HasField("working_directory") else None),
        )


def _dt(msg: Any, name: str) -> datetime | None:
    return getattr(msg, name).ToDatetime(tzinfo=UTC) if msg.HasField(name) else None


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


class _Backoff:
    """Capped exponential backoff with jitter: the n-th delay is uniform in [d/2, d],
    d = min(cap, base * 2**n)."""

    def __init__(self, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> None:
        self._base, self._cap, self._n = base, cap, 0

    def next(self) -> float:
        delay = min(self._cap, self._base * (2 ** min(self._n, 30)))
        self._n += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._n = 0


class _Stop(Enum):
    CANCELLED = "cancelled"
    LEASE_LOST = "lease lost"
    WORKER_SHUTDOWN = "worker shutdown"


@dataclass(slots=True)
class _Outcome:
    success: bool
    outputs_json: str = ""
    warning: bool = False
    message: str = ""
    reason: FailureReason = FailureReason.TASK_ERROR
    drop: bool = False
    group_outputs_json: str = ""


class _TaskRun:
    """Book-keeping of one running attempt (event-loop side only)."""

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        self.stop_event = asyncio.Event()
        self.stop_reason: _Stop | None = None
        self.reported = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.lease_deadline = _monotonic_deadline(assignment.lease_expires_at)
        """`monotonic()` value at which the lease ends unless extended (last known)."""

    def request_stop(self, reason: _Stop) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_event.set()

    def __str__(self) -> str:
        a = self.assignment
        return f"{a.execution_id}/{a.task_id} (task run {a.task_run_id}, attempt {a.attempt})"


class Worker:
    """A worker: runs the task types of a registry for one control plane.

    Run it blocking with `run` (installs SIGTERM/SIGINT handlers when in the main thread), or
    ``await run_async()`` inside an event loop; `stop` ends it from any thread.

    Args:
        server: ``HOST:PORT`` of the control plane's gRPC API.
        concurrency: Most task runs executed at once (>= 1).
        worker_group: Worker group key (Kestra ``workerGroup.key``); "" = default group.
        labels: Labels sent with the registration.
        worker_id: Stable id of this worker; default ``<hostname>-<pid>-<random>``.
        registry: Task types to run; default `worker_sdk.registry.default_registry` (the
            built-ins plus every ``@task`` function imported so far).
        hostname: Reported host name; default `socket.gethostname`.
        shutdown_grace_seconds: On stop, how long running task runs may still finish before
            they are handed back (WORKER_SHUTDOWN).
        poll_wait_seconds: ``wait_seconds`` of each PollTaskRuns call (the server caps it).
        connection: API token and TLS files (`worker_sdk.connection.Connection`); default from
            ``KESTREL_TOKEN`` and ``KESTREL_TLS_*``.

    Raises:
        ValueError: ``concurrency`` < 1 or negative durations.
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        concurrency: int = 4,
        worker_group: str = "",
        labels: Mapping[str, str] | None = None,
        worker_id: str | None = None,
        registry: TaskRegistry | None = None,
        hostname: str | None = None,
        shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS,
        poll_wait_seconds: float = POLL_WAIT_SECONDS,
        connection: Connection | None = None,
    ) -> None:
        self.connection = connection if connection is not None else Connection.from_env()
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if shutdown_grace_seconds < 0 or poll_wait_seconds < 0:
            raise ValueError("durations must not be negative")
        self.server = server
        self.concurrency = concurrency
        self.worker_group = worker_group
        self.labels: dict[str, str] = dict(labels or {})
        self.hostname = hostname or socket.gethostname()
        self.registry = registry if registry is not None else default_registry
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.poll_wait_seconds = poll_wait_seconds
        self._worker_id = worker_id or f"{self.hostname}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.heartbeat_interval_seconds = DEFAULT_HEARTBEAT_SECONDS
        self.lease_seconds = 0.0

        # Thread-safe state (read/written from any thread).
        self._state_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._force_requested = False
        self._ready = threading.Event()

        # Event-loop state (created in run_async).
        self._stop_event: asyncio.Event | None = None
        self._force_event: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._register_lock: asyncio.Lock | None = None
        self._registration = 0
        self._in_use = 0
        self._runs: dict[str, _TaskRun] = {}
        self._channel: grpc.aio.Channel | None = None
        self._workers: worker_pb2_grpc.WorkerServiceStub | None = None
        self._logs: log_pb2_grpc.LogServiceStub | None = None
        self._directories = WorkingDirectories()

    # ------------------------------------------------------------------ public API

    @property
    def worker_id(self) -> str:
        """This worker's id (the server's choice once registered, if it chose another)."""
        return self._worker_id

    def run(self, *, handle_signals: bool = True) -> None:
        """Runs the worker until it is stopped; blocks.

        Args:
            handle_signals: Install SIGTERM/SIGINT handlers (only possible in the main thread):
                the first signal drains, a second one stops at once.

        Raises:
            WorkerError: The control plane refused the registration for good.
        """
        asyncio.run(self.run_async(handle_signals=handle_signals))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Runs the worker in the current event loop until it is stopped.

        Args:
            handle_signals: As in `run`; ignored outside the main thread.

        Raises:
            WorkerError: The control plane refused the registration for good.
        """
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._force_event = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._register_lock = asyncio.Lock()
        with self._state_lock:
            self._loop = loop
            if self._stop_requested:
                self._stop_event.set()
            if self._force_requested:
                self._force_event.set()
        signals = self._install_signal_handlers(loop) if handle_signals else []
        self._channel = self.connection.aio_channel(
            self.server,
            # An assignment carries up to 1 MiB of rendered properties; a poll returns several.
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        )
        self._workers = worker_pb2_grpc.WorkerServiceStub(self._channel)
        self._logs = log_pb2_grpc.LogServiceStub(self._channel)
        try:
            if await self._register_until_ok():
                self._ready.set()
                await self._serve()
        finally:
            self._ready.clear()
            for sig in signals:
                loop.remove_signal_handler(sig)
            leftovers = [run.task for run in self._runs.values() if run.task is not None]
            for task in leftovers:  # normally only runs waiting for a thread that ignores cancellation
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            self._directories.close()
            await self._channel.close(grace=None)
            with self._state_lock:
                self._loop = None

    def stop(self, *, force: bool = False) -> None:
        """Asks the worker to stop; returns at once; safe from any thread, also before `run`.

        Args:
            force: Skip the grace period: hand running task runs back right away.
        """
        with self._state_lock:
            self._stop_requested = True
            self._force_requested = self._force_requested or force
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._request_stop, force)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Blocks until the worker is registered and polling (from any thread).

        Args:
            timeout: Seconds to wait at most; None waits forever.

        Returns:
            True when ready, False on timeout.
        """
        return self._ready.wait(timeout)

    # ------------------------------------------------------------------ lifecycle

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        assert self._stop_event is not None
        force = self._stop_event.is_set()
        if force:
            _log.warning("%s again: handing running task runs back now", sig.name)
        else:
            _log.info("%s: draining (a second signal stops at once)", sig.name)
        self._request_stop(force)

    def _request_stop(self, force: bool) -> None:
        assert self._stop_event is not None and self._force_event is not None
        if force:
            self._force_event.set()
        self._stop_event.set()

    async def _serve(self) -> None:
        assert self._stop_event is not None
        heartbeat = asyncio.create_task(self._worker_heartbeat_loop(), name="kestrel-worker-heartbeat")
        poller = asyncio.create_task(self._poll_loop(), name="kestrel-poll")
        stop = asyncio.create_task(self._stop_event.wait())
        try:
            await asyncio.wait({poller, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not poller.done():
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
        error = None if poller.cancelled() else poller.exception()
        try:
            await self._drain()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self._shutdown()
        if error is not None:
            raise error

    async def _drain(self) -> None:
        assert self._force_event is not None
        pending = [run for run in self._runs.values() if not run.reported.is_set()]
        if not pending:
            return
        if not self._force_event.is_set() and self.shutdown_grace_seconds > 0:
            _log.info(
                "waiting up to %.0f s for %d running task run(s) to finish",
                self.shutdown_grace_seconds,
                len(pending),
            )
            all_reported = asyncio.ensure_future(asyncio.gather(*(run.reported.wait() for run in pending)))
            force = asyncio.ensure_future(self._force_event.wait())
            await asyncio.wait(
                {all_reported, force},
                timeout=self.shutdown_grace_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for future in (all_reported, force):
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await future  # retrieve the cancellation: no "never retrieved" warning
        remaining = [run for run in pending if not run.reported.is_set()]
        if not remaining:
            return
        _log.warning("handing %d task run(s) back to the control plane", len(remaining))
        for run in remaining:
            run.request_stop(_Stop.WORKER_SHUTDOWN)
        reports = [asyncio.ensure_future(run.reported.wait()) for run in remaining]
        _, late = await asyncio.wait(reports, timeout=CANCEL_GRACE_SECONDS + 2 * RPC_TIMEOUT_SECONDS)
        for fut in late:
            fut.cancel()

    async def _shutdown(self) -> None:
        assert self._workers is not None
        request = worker_pb2.ShutdownWorkerRequest(worker_id=self._worker_id)
        try:
            response = await self._call(self._workers.ShutdownWorker, request, attempts=2, timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            _log.warning("ShutdownWorker failed (%s): %s", exc.code().name, exc.details())
            return
        # Task runs this worker handed back itself were re-queued by their FailTaskRun
        # (WORKER_SHUTDOWN); the server re-queues here only the ones that were never reported.
        if response.requeued_task_runs:
            _log.info("worker %s stopped; the control plane re-queued %d unreported task run(s)",
                      self._worker_id, response.requeued_task_runs)
        else:
            _log.info("worker %s stopped", self._worker_id)

    # ------------------------------------------------------------------ registration and polling

    async def _register_until_ok(self) -> bool:
        """Registers, retrying with backoff; False when stopped before succeeding."""
        assert self._workers is not None and self._stop_event is not None
        request = worker_pb2.RegisterWorkerRequest(
            worker_id=self._worker_id,
            hostname=self.hostname,
            sdk=SDK,
            task_types=[*self.registry.task_types(), WORKING_DIRECTORY_TYPE],
            worker_group=self.worker_group,
            labels=[common_pb2.Label(key=k, value=v) for k, v in sorted(self.labels.items())],
            concurrency=self.concurrency,
        )
        backoff = _Backoff()
        failures = 0
        while not self._stop_event.is_set():
            try:
                response = await self._workers.RegisterWorker(request, timeout=RPC_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _FATAL_ON_REGISTER:
                    raise WorkerError(f"RegisterWorker refused: {exc.code().name}: {exc.details()}") from exc
                failures += 1
                level = logging.WARNING if failures in (1, 10) or failures % 50 == 0 else logging.DEBUG
                _log.log(level, "control plane %s not reachable (%s); retrying", self.server, exc.code().name)
                await self._sleep_or_stop(backoff.next())
                continue
            self._worker_id = response.worker_id or self._worker_id
            self.heartbeat_interval_seconds = response.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
            self.lease_seconds = response.lease_seconds
            self._registration += 1
            _log.info(
                "worker %s registered with %s (%d task types, concurrency %d)",
                self._worker_id,
                self.server,
                len(request.task_types),
                self.concurrency,
            )
            return True
        return False

    async def _reregister(self, seen: int) -> bool:
        """Registers again unless someone already did since registration ``seen``."""
        assert self._register_lock is not None
        async with self._register_lock:
            if self._registration != seen:
                return True
            _log.info("control plane does not know worker %s: registering again", self._worker_id)
            return await self._register_until_ok()

    async def _poll_loop(self) -> None:
        assert self._workers is not None
        backoff = _Backoff()
        while True:
            free = await self._free_slots()
            seen = self._registration
            request = worker_pb2.PollTaskRunsRequest(
                worker_id=self._worker_id, max_task_runs=free, wait_seconds=self.poll_wait_seconds
            )
            try:
                response = await self._workers.PollTaskRuns(
                    request, timeout=self.poll_wait_seconds + POLL_DEADLINE_MARGIN_SECONDS
                )
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    if not await self._reregister(seen):
                        return
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # the server held the poll longer than asked; poll again
                if code in _FATAL_ON_REGISTER:
                    raise WorkerError(f"PollTaskRuns refused: {code.name}: {exc.details()}") from exc
                delay = backoff.next()
                _log.warning(
                    "PollTaskRuns failed (%s: %s); retrying in %.1f s", code.name, exc.details(), delay
                )
                await self._sleep_or_stop(delay)
                continue
            backoff.reset()
            for message in response.assignments:
                self._start(Assignment.from_proto(message))

    async def _free_slots(self) -> int:
        assert self._slot_freed is not None
        while self._in_use >= self.concurrency:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        return self.concurrency - self._in_use

    async def _worker_heartbeat_loop(self) -> None:
        """Keeps the worker alive and learns which running task runs were killed: while task
        runs are running it beats every ``CANCEL_CHECK_SECONDS`` (at most), so a kill stops them
        within about a second instead of at their own (slower) task-run heartbeat."""
        assert self._workers is not None
        last = monotonic()
        while True:
            await asyncio.sleep(min(self.heartbeat_interval_seconds, CANCEL_CHECK_SECONDS))
            if not self._runs and monotonic() - last < self.heartbeat_interval_seconds:
                continue
            last = monotonic()
            seen = self._registration
            try:
                response = await self._workers.WorkerHeartbeat(
                    worker_pb2.WorkerHeartbeatRequest(worker_id=self._worker_id,
                                                      working_directory_ids=self._directories.ids()),
                    timeout=max(self.heartbeat_interval_seconds, 1.0),
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    await self._reregister(seen)
                else:
                    _log.debug("WorkerHeartbeat failed: %s", exc.code().name)
                continue
            in_use = {r.assignment.working_directory.id for r in self._runs.values() if r.assignment.working_directory}
            self._directories.remove([g for g in response.ended_working_directory_ids if g not in in_use])
            cancelled = set(response.cancel_task_run_ids)
            for run in list(self._runs.values()):
                if run.assignment.task_run_id in cancelled:
                    _log.info("%s: execution killed, cancelling", run)
                    run.request_stop(_Stop.CANCELLED)

    async def _sleep_or_stop(self, seconds: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=seconds)

    async def _call(
        self,
        method: Callable[..., Awaitable[Any]],
        request: Any,
        *,
        attempts: int = REPORT_ATTEMPTS,
        timeout: float = RPC_TIMEOUT_SECONDS,
    ) -> Any:
        """Calls a unary RPC, retrying transient errors with a short backoff."""
        backoff = _Backoff(base=0.2, cap=5.0)
        for attempt in range(1, attempts + 1):
            try:
                return await method(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _TRANSIENT or attempt == attempts:
                    raise
                await asyncio.sleep(backoff.next())
        raise AssertionError("unreachable")

    async def _call_until(
        self,
        method: Callable[..., Awaitable[Any]],
        request: Any,
        deadline: float,
        *,
        timeout: float = RPC_TIMEOUT_SECONDS,
    ) -> Any:
        """Calls a unary RPC, retrying transient errors (backoff 0.2 s doubling to 5 s) until the
        `time.monotonic` ``deadline``; then raises the last error. Used for result reports, which
        carry the same task token each time, so a retry the server already applied is harmless."""
        backoff = _Backoff(base=0.2, cap=5.0)
        while True:
            try:
                return await method(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                pause = backoff.next()
                if exc.code() not in _TRANSIENT or monotonic() + pause > deadline:
                    raise
                _log.debug("report failed (%s); retrying in %.1f s", exc.code().name, pause)
                await asyncio.sleep(pause)

    # ------------------------------------------------------------------ one task run

    def _start(self, assignment: Assignment) -> None:
        assert self._loop is not None
        if assignment.task_token in self._runs:
            return  # the same attempt delivered twice: it is already running
        run = _TaskRun(assignment)
        self._runs[assignment.task_token] = run
        self._in_use += 1
        run.task = asyncio.create_task(self._run_task(run), name=f"kestrel-task-{assignment.task_run_id}")

    async def _run_task(self, run: _TaskRun) -> None:
        a = run.assignment
        group = a.working_directory
        # A WorkingDirectory's children share the group's directory (opened below, once the
        # context with its storage client exists); an inline built-in (Log, Return…) needs none;
        # any other attempt gets a fresh one.
        inline = group is None and self._inline(a.task_type)
        if inline:
            workdir = Path(tempfile.gettempdir()) / f"kestrel-inline-{_safe(a.task_run_id)}-not-created"
        else:
            workdir = Path(tempfile.mkdtemp(prefix=f"kestrel-{_safe(a.task_id)}-"))
        buffer = LogBuffer(lambda records: self._send_logs(a.task_token, records))
        ctx = TaskContext(
            execution_id=a.execution_id,
            task_run_id=a.task_run_id,
            task_id=a.task_id,
            task_type=a.task_type,
            attempt=a.attempt,
            namespace=a.namespace,
            flow_id=a.flow_id,
            flow_revision=a.flow_revision,
            value=a.value,
            idempotency_key=a.idempotency_key,
            timeout_seconds=a.timeout_seconds,
            working_dir=workdir,
            log=TaskLogger(_log_sink(buffer, a)),
            storage=TaskStorage(self._channel, a.task_token, asyncio.get_running_loop()),
            kv=TaskKV(self._channel, a.task_token, asyncio.get_running_loop()),
        )
        finished: asyncio.Future[Any] | None = None
        _log.debug("running %s [%s]", run, a.task_type)
        try:
            buffer.start()
            heartbeat = asyncio.create_task(self._task_heartbeat_loop(run))
            outcome: _Outcome | None = None
            try:
                if group is None:
                    outcome, finished = await self._execute(run, ctx)
                else:
                    outcome, finished = await self._execute_in_group(run, ctx, group, workdir)
            finally:
                heartbeat.cancel()
                # Every log line precedes the result: the last ones go with a completion that has
                # room for them (one AppendLogs call fewer), the rest is sent now.
                tail: list[LogRecord] = []
                if (outcome is not None and outcome.success and not outcome.drop
                        and len(outcome.outputs_json) <= LOGS_WITH_RESULT_MAX_OUTPUTS):
                    tail = await buffer.close_keeping_last(LOGS_WITH_RESULT_MAX_BYTES)
                else:
                    await buffer.close()
            await self._report(run, outcome, tail)
            run.reported.set()
            if finished is not None and not finished.done():
                _log.warning("%s ignores cancellation; its slot stays busy until it returns", run)
                await finished
        except asyncio.CancelledError:
            ctx.cancelled.set()
            raise
        except Exception:
            _log.exception("internal error while running %s", run)
        finally:
            run.reported.set()
            self._runs.pop(a.task_token, None)
            self._in_use -= 1
            assert self._slot_freed is not None
            self._slot_freed.set()
            if not inline:
                shutil.rmtree(workdir, ignore_errors=True)

    def _inline(self, task_type: str) -> bool:
        """Whether ``task_type`` is registered as inline (`TaskDefinition.inline`)."""
        try:
            return self.registry.get(task_type).inline
        except UnknownTaskTypeError:
            return False

    async def _execute_in_group(
        self, run: _TaskRun, ctx: TaskContext, group: WorkingDirectoryGroup, own_dir: Path
    ) -> tuple[_Outcome, asyncio.Future[Any] | None]:
        """Runs a WorkingDirectory child in the group's directory; after the group's last child
        succeeded, uploads its ``outputFiles`` (sent with the completion) and deletes it."""
        try:
            ctx.working_dir = await self._directories.open(group, ctx)
        except TaskFailure as exc:
            return _failure(ctx, exc.message), None
        shutil.rmtree(own_dir, ignore_errors=True)
        outcome, finished = await self._execute(run, ctx)
        if group.last and outcome.success:
            try:
                outputs = await self._directories.upload_outputs(group, ctx)
            except TaskFailure as exc:
                return _failure(ctx, exc.message), finished
            outcome.group_outputs_json = _dump(outputs) if outputs else ""
            self._directories.remove([group.id])
        return outcome, finished

    async def _execute(self, run: _TaskRun, ctx: TaskContext) -> tuple[_Outcome, asyncio.Future[Any] | None]:
        """Runs the task function; returns the outcome and a future done when the function has
        really returned (a thread may outlive a cancellation)."""
        a = run.assignment
        try:
            definition = self.registry.get(a.task_type)
        except UnknownTaskTypeError:
            return _failure(
                ctx, f"Task type {a.task_type!r} is not registered on worker {self._worker_id}"
            ), None
        try:
            props = json.loads(a.properties_json) if a.properties_json else {}
        except ValueError as exc:
            return _failure(ctx, f"Invalid properties JSON: {exc}"), None
        if not isinstance(props, dict):
            return _failure(ctx, f"Properties must be a JSON object, got {type(props).__name__}"), None

        try:
            result, finished = _invoke(definition, ctx, props)
        except Exception as exc:  # an async function that raised before returning its coroutine
            return _error_outcome(ctx, exc), None
        stop_wait = asyncio.ensure_future(run.stop_event.wait())
        try:
            await asyncio.wait(
                {result, stop_wait}, timeout=a.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop_wait.cancel()

        if run.stop_reason is _Stop.LEASE_LOST:
            await _cancel(ctx, result, finished)
            return _Outcome(success=False, drop=True), finished
        if result.done():
            return _outcome_of(ctx, definition, result), finished
        await _cancel(ctx, result, finished)
        if run.stop_reason is _Stop.CANCELLED:
            message = "Task run cancelled: the execution was killed"
            ctx.log.warn(message)
            return _failure(ctx, message, FailureReason.CANCELLED, log=False), finished
        if run.stop_reason is _Stop.WORKER_SHUTDOWN:
            message = f"Worker {self._worker_id} is shutting down; the task run is handed back"
            ctx.log.warn(message)
            return _failure(ctx, message, FailureReason.WORKER_SHUTDOWN, log=False), finished
        assert a.timeout_seconds is not None
        return _failure(ctx, f"Timeout after {a.timeout_seconds:g} seconds", FailureReason.TIMEOUT), finished

    async def _task_heartbeat_loop(self, run: _TaskRun) -> None:
        assert self._workers is not None
        request = worker_pb2.RecordTaskRunHeartbeatRequest(task_token=run.assignment.task_token)
        while True:
            await asyncio.sleep(self.heartbeat_interval_seconds)
            try:
                response = await self._workers.RecordTaskRunHeartbeat(
                    request, timeout=max(self.heartbeat_interval_seconds, 1.0)
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    _log.warning("lease of %s lost; stopping it and dropping its result", run)
                    run.request_stop(_Stop.LEASE_LOST)
                    return
                _log.debug("heartbeat of %s failed: %s", run, exc.code().name)
                continue
            if response.HasField("lease_expires_at"):
                run.lease_deadline = _monotonic_deadline(_dt(response, "lease_expires_at"))
            if response.cancel_requested:
                _log.info("%s: execution killed, cancelling", run)
                run.request_stop(_Stop.CANCELLED)
                return

    async def _report(self, run: _TaskRun, outcome: _Outcome, tail: list[LogRecord] | None = None) -> None:
        """Report ``outcome``; ``tail``: the attempt's last log lines, sent with a completion
        (``CompleteTaskRunRequest.logs``) or, if the result becomes a failure, before it."""
        assert self._workers is not None
        token = run.assignment.task_token
        tail = tail or []
        if outcome.drop:
            return
        method: Callable[..., Awaitable[Any]]
        if outcome.success:
            state = common_pb2.STATE_WARNING if outcome.warning else common_pb2.STATE_SUCCESS
            # Eager dispatch: this run's slot is about to be free, so ask for one task run in the
            # same call (none while stopping: a draining worker takes no new work).
            eager = 0 if self._stop_event is None or self._stop_event.is_set() else 1
            request: Any = worker_pb2.CompleteTaskRunRequest(
                task_token=token, outputs_json=outcome.outputs_json, state=state,
                working_directory_outputs_json=outcome.group_outputs_json, max_next_task_runs=eager,
                logs=_log_entries(tail),
            )
            method = self._workers.CompleteTaskRun
        else:
            request = worker_pb2.FailTaskRunRequest(
                task_token=token,
                error_message=outcome.message,
                reason=outcome.reason.value,
                outputs_json=outcome.outputs_json,
            )
            method = self._workers.FailTaskRun
        deadline = max(run.lease_deadline, monotonic()) + REPORT_GRACE_SECONDS
        try:
            try:
                response = await self._call_until(method, request, deadline)
                for message in getattr(response, "assignments", ()):  # eager dispatch (CompleteTaskRun)
                    await self._start_or_hand_back(Assignment.from_proto(message))
            except grpc.aio.AioRpcError as exc:
                if not (outcome.success and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED):
                    raise
                # The outputs exceed the server's message limit: the task run fails instead
                # (Kestra does the same with results over its queue's message limit).
                message = f"Task outputs are too large to report ({len(outcome.outputs_json)} bytes): {exc.details()}"
                _log.error("%s: %s", run, message)
                if tail:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await self._send_logs(token, tail)  # they were to go with the completion
                request = worker_pb2.FailTaskRunRequest(
                    task_token=token, error_message=message, reason=FailureReason.TASK_ERROR.value
                )
                await self._call_until(self._workers.FailTaskRun, request, deadline)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                _log.warning("lease of %s lost before its result was reported; result dropped", run)
            else:
                _log.error(
                    "could not report %s (%s: %s); the control plane will retry it when the lease expires",
                    run,
                    exc.code().name,
                    exc.details(),
                )
            return
        _log.debug("%s reported: %s", run, "success" if outcome.success else outcome.reason.name)

    async def _start_or_hand_back(self, assignment: Assignment) -> None:
        """Start an eagerly dispatched task run, or, when the worker began stopping while the
        report was in flight (the drain only waits for runs it already knew), hand it straight
        back (FailTaskRun WORKER_SHUTDOWN: re-queued, no retry consumed) without running it."""
        assert self._stop_event is not None and self._workers is not None
        if not self._stop_event.is_set():
            self._start(assignment)
            return
        request = worker_pb2.FailTaskRunRequest(
            task_token=assignment.task_token, error_message="worker stopping: handed back unstarted",
            reason=FailureReason.WORKER_SHUTDOWN.value,
        )
        try:
            await self._call(self._workers.FailTaskRun, request, attempts=2)
        except grpc.aio.AioRpcError as exc:  # its lease expires and it is re-dispatched anyway
            _log.warning("could not hand back task run %s (%s)", assignment.task_run_id, exc.code().name)

    async def _send_logs(self, token: str, records: list[LogRecord]) -> None:
        """Sends one batch; raises on transient errors so that the buffer keeps it."""
        assert self._logs is not None
        request = log_pb2.AppendLogsRequest(task_token=token, entries=_log_entries(records))
        try:
            await self._call(self._logs.AppendLogs, request, attempts=2)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _TRANSIENT:
                raise
            _log.warning(
                "AppendLogs refused (%s: %s): %d line(s) dropped",
                exc.code().name,
                exc.details(),
                len(records),
            )


# ---------------------------------------------------------------------- task invocation helpers


def _log_entries(records: Iterable[LogRecord]) -> list[log_pb2.LogEntry]:
    return [log_pb2.LogEntry(level=_LOG_LEVELS[r.level], message=r.message, timestamp=_timestamp(r.timestamp))
            for r in records]


def _monotonic_deadline(expires_at: datetime | None) -> float:
    """The `time.monotonic` value of a UTC lease expiry (now when unknown or already past)."""
    now = monotonic()
    if expires_at is None:
        return now
    return now + max((expires_at - datetime.now(UTC)).total_seconds(), 0.0)


def _log_sink(buffer: LogBuffer, a: Assignment) -> Callable[[LogRecord], None]:
    def sink(record: LogRecord) -> None:
        if len(record.message) > MAX_LOG_MESSAGE_CHARS:
            cut = len(record.message) - MAX_LOG_MESSAGE_CHARS
            record = replace(
                record, message=f"{record.message[:MAX_LOG_MESSAGE_CHARS]}… [{cut} characters cut]"
            )
        buffer.append(record)
        if _task_log.isEnabledFor(logging.DEBUG):
            _task_log.log(
                logging.DEBUG, "[%s %s] %s %s", a.execution_id, a.task_id, record.level, record.message
            )

    return sink


def _invoke(
    definition: TaskDefinition, ctx: TaskContext, props: dict[str, Any]
) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
    """Starts the task function: a coroutine on the loop, an inline one (`TaskDefinition.inline`)
    called right here, any other sync function in a daemon thread of its own. Returns (result,
    finished): finished is done once the function has really returned."""
    if definition.is_async:
        task = asyncio.ensure_future(definition.fn(ctx, props))  # type: ignore[arg-type]
        return task, task
    if definition.inline:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            done.set_result(definition.fn(ctx, props))
        except Exception as exc:
            done.set_exception(exc)
        except SystemExit as exc:  # raised by the task itself: a failure, as in a thread
            done.set_exception(TaskFailure(f"{type(exc).__name__}: {exc}"))
        return done, done

    loop = asyncio.get_running_loop()
    result: asyncio.Future[Any] = loop.create_future()
    finished: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def deliver(value: Any, error: BaseException | None) -> None:
        if not result.done():
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(value)
        if not finished.done():
            finished.set_result(None)

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(definition.fn, ctx, props)
        except Exception as exc:
            error = exc
        except BaseException as exc:  # SystemExit, KeyboardInterrupt raised by the task itself
            error = TaskFailure(f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(RuntimeError):  # the loop is gone: the worker has stopped
            loop.call_soon_threadsafe(deliver, value, error)

    threading.Thread(target=target, name=f"kestrel-task-{ctx.task_id}", daemon=True).start()
    return result, finished


async def _cancel(ctx: TaskContext, result: asyncio.Future[Any], finished: asyncio.Future[Any]) -> None:
    """Signals cancellation and gives the task `CANCEL_GRACE_SECONDS` to end."""
    ctx.cancelled.set()
    result.cancel()
    await asyncio.wait({finished}, timeout=CANCEL_GRACE_SECONDS)
    if finished.done() and not finished.cancelled():
        finished.exception()  # mark any exception as retrieved


def _outcome_of(ctx: TaskContext, definition: TaskDefinition, result: asyncio.Future[Any]) -> _Outcome:
    if result.cancelled():
        return _failure(ctx, "Task was cancelled")
    error = result.exception()
    if error is not None:
        return _error_outcome(ctx, error)
    value = result.result()
    warning = False
    if isinstance(value, TaskResult):
        outputs, warning = value.outputs, value.warning
    elif value is None or isinstance(value, Mapping):
        outputs = value
    else:
        return _failure(
            ctx,
            f"TypeError: task {definition.type} returned {type(value).__name__}; "
            "expected a dict, a TaskResult or None",
        )
    try:
        outputs_json = _dump(outputs)
    except (TypeError, ValueError) as exc:
        return _failure(ctx, f"{type(exc).__name__}: outputs are not JSON-serialisable: {exc}")
    return _Outcome(success=True, outputs_json=outputs_json, warning=warning)


def _error_outcome(ctx: TaskContext, error: BaseException) -> _Outcome:
    if isinstance(error, TaskFailure):
        return _failure(ctx, error.message, outputs=error.outputs)
    message = f"{type(error).__name__}: {error}"
    details = "".join(traceback.format_exception(error)).rstrip()
    ctx.log.error(f"{message}\n{details}")
    return _failure(ctx, message, log=False)


def _failure(
    ctx: TaskContext,
    message: str,
    reason: FailureReason = FailureReason.TASK_ERROR,
    *,
    outputs: Mapping[str, Any] | None = None,
    log: bool = True,
) -> _Outcome:
    if log:
        ctx.log.error(message)
    try:
        outputs_json = _dump(outputs)
    except (TypeError, ValueError):
        outputs_json = ""
    return _Outcome(success=False, message=message, reason=reason, outputs_json=outputs_json)


def _dump(outputs: Mapping[str, Any] | None) -> str:
    if outputs is None:
        return ""
    return json.dumps(dict(outputs), default=_json_default, ensure_ascii=False, allow_nan=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40] or "task"


# ---------------------------------------------------------------------- entry points


def import_modules(modules: Iterable[str]) -> None:
    """Imports modules so that their ``@task`` functions register.

    The current directory is put on ``sys.path`` first (console scripts do not have it).

    Raises:
        ImportError: A module cannot be imported.
    """
    modules = list(modules)
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        importlib.import_module(name)


def run_worker(
    server: str,
    concurrency: int = 4,
    worker_group: str = "",
    labels: dict[str, str] | None = None,
    modules: list[str] | None = None,
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS,
    connection: Connection | None = None,
) -> None:
    """Runs a worker until SIGTERM/SIGINT (what ``kestrel worker`` calls); blocks.

    Configures INFO logging to stderr when the application configured none.

    Args:
        server: ``HOST:PORT`` of the control plane.
        concurrency: Most task runs at once.
        worker_group: Worker group key; "" = default group.
        labels: Worker labels.
        modules: Python modules to import first, so that their ``@task`` functions register.
        shutdown_grace_seconds: On SIGTERM, how long running task runs may still finish before
            they are handed back.
        connection: API token and TLS files; default from the environment (``KESTREL_TOKEN``…).

    Raises:
        ImportError: A module of ``modules`` cannot be imported.
        WorkerError: The control plane refused the registration for good.
    """
    logsetup.configure(logging.INFO)
    import_modules(modules or [])
    Worker(
        server,
        concurrency=concurrency,
        worker_group=worker_group,
        labels=labels,
        shutdown_grace_seconds=shutdown_grace_seconds,
        connection=connection,
    ).run()
