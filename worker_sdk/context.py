"""What a running task sees: its `TaskContext`, its logger, and the ways it reports an outcome.

A task function receives a `TaskContext` and the task's properties (already rendered by the
control plane) and either returns its outputs (a dict, a `TaskResult`, or None) or raises
(`TaskFailure` for an expected failure, any other exception for an unexpected one).

Log lines written through `TaskContext.log` go to a sink; inside a worker the sink is a
`LogBuffer`, which batches lines and hands them to a send function (the worker's gRPC call), so
this module never touches the wire.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = [
    "LEVELS",
    "LogBuffer",
    "LogRecord",
    "LogSink",
    "TaskContext",
    "TaskFailure",
    "TaskLogger",
    "TaskResult",
    "normalize_level",
]

_log = logging.getLogger("kestrel.worker")

LEVELS: Final[tuple[str, ...]] = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
"""Kestra log levels, most to least verbose."""

_LEVEL_SYNONYMS: Final[Mapping[str, str]] = {"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}


def normalize_level(level: str) -> str:
    """Returns the canonical Kestra name of a log level.

    Args:
        level: A level name in any case; ``WARNING`` is accepted for ``WARN`` and
            ``CRITICAL``/``FATAL`` for ``ERROR``.

    Returns:
        One of `LEVELS`.

    Raises:
        ValueError: The name is not a known level (the message lists the valid ones).
    """
    name = str(level).strip().upper()
    name = _LEVEL_SYNONYMS.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    return name


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line of a task-run attempt.

    Attributes:
        level: One of `LEVELS`.
        message: The text of the line.
        timestamp: When the line was written (timezone-aware, UTC).
    """

    level: str
    message: str
    timestamp: datetime


LogSink = Callable[[LogRecord], None]
"""Receives every line a task logs; must be safe to call from any thread."""


class TaskLogger:
    """The logger a task writes to (``ctx.log`` / ``ctx.logger``).

    Methods take a message and optional ``%``-style arguments, like the `logging` module.
    Safe to call from any thread.

    Args:
        sink: Where lines go. When omitted the lines are kept in `records` (handy in tests).
    """

    def __init__(self, sink: LogSink | None = None) -> None:
        self.records: list[LogRecord] = []
        self._sink: LogSink = sink if sink is not None else self.records.append

    def log(self, level: str, msg: object, *args: object) -> None:
        """Writes one line at ``level``.

        Raises:
            ValueError: ``level`` is not a known level.
        """
        text = str(msg) % args if args else str(msg)
        self._sink(LogRecord(normalize_level(level), text, datetime.now(UTC)))

    def trace(self, msg: object, *args: object) -> None:
        """Writes one TRACE line."""
        self.log("TRACE", msg, *args)

    def debug(self, msg: object, *args: object) -> None:
        """Writes one DEBUG line."""
        self.log("DEBUG", msg, *args)

    def info(self, msg: object, *args: object) -> None:
        """Writes one INFO line."""
        self.log("INFO", msg, *args)

    def warn(self, msg: object, *args: object) -> None:
        """Writes one WARN line."""
        self.log("WARN", msg, *args)

    warning = warn

    def error(self, msg: object, *args: object) -> None:
        """Writes one ERROR line."""
        self.log("ERROR", msg, *args)

    def messages(self, level: str | None = None) -> list[str]:
        """Returns the captured messages (only when no sink was given), optionally of one level."""
        wanted = normalize_level(level) if level is not None else None
        return [r.message for r in self.records if wanted is None or r.level == wanted]


class TaskFailure(Exception):
    """Raised by a task to fail its task run with a message of its own.

    Unlike any other exception, the message is reported as is (no ``ExcType:`` prefix).

    Args:
        message: Why the task failed; becomes the task run's error message.
        outputs: Outputs produced before the failure, kept on the failed task run.
    """

    def __init__(self, message: str, *, outputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.outputs: dict[str, Any] | None = dict(outputs) if outputs is not None else None


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a task may return instead of a plain dict, to end in WARNING.

    Attributes:
        outputs: The task's outputs (JSON-serialisable), or None for none.
        warning: True to end the task run in WARNING instead of SUCCESS.
    """

    outputs: Mapping[str, Any] | None = None
    warning: bool = False


def _fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="kestrel-task-"))


@dataclass(slots=True)
class TaskContext:
    """Everything a running task knows about itself.

    A worker builds one per attempt; tests build one directly (every field has a default, and
    without a sink the lines stay in ``ctx.log.records``).

    Attributes:
        execution_id: Id of the execution.
        task_run_id: Id of the task run.
        task_id: The task's ``id`` in the flow.
        task_type: The task's type name, as dispatched.
        attempt: 1-based attempt number.
        namespace: The flow's namespace.
        flow_id: The flow's id.
        flow_revision: The flow revision the execution runs.
        value: Loop value (Kestra ``taskrun.value``), None outside loops.
        idempotency_key: ``execution_id:task_run_id``, stable across attempts.
        timeout_seconds: The attempt's timeout in seconds, None for none (the worker enforces it).
        working_dir: A directory for this attempt only; the worker creates it empty and removes
            it after the attempt.
        cancelled: Set when the task should stop (execution killed, timeout, lease lost or worker
            shutdown). Sync tasks should check it (``ctx.cancelled.wait(s)`` is a cancellable
            sleep); async tasks are also cancelled with `asyncio.CancelledError`.
        log: The task's logger.
        storage: Internal storage for this task run (`worker_sdk.storage.TaskStorage`): upload
            output files (returns their ``kestra:///`` URI), download files by URI. None when
            the context was built without a worker (tests).
        kv: The namespace KV store (`worker_sdk.storage.TaskKV`), None without a worker.
    """

    execution_id: str = ""
    task_run_id: str = ""
    task_id: str = ""
    task_type: str = ""
    attempt: int = 1
    namespace: str = ""
    flow_id: str = ""
    flow_revision: int = 0
    value: str | None = None
    idempotency_key: str = ""
    timeout_seconds: float | None = None
    working_dir: Path = field(default_factory=_fresh_dir)
    cancelled: threading.Event = field(default_factory=threading.Event)
    log: TaskLogger = field(default_factory=TaskLogger)
    storage: Any = None
    kv: Any = None

    @property
    def logger(self) -> TaskLogger:
        """Same as `log`."""
        return self.log


SendLogs = Callable[[list[LogRecord]], Awaitable[None]]
"""Delivers a batch of lines. Returning means done (sent, or dropped for good); raising means
"try again later" and the batch is kept."""


class LogBuffer:
    """Batches one attempt's log lines and sends them in order.

    Lines are appended from any thread (`append` is the task logger's sink). A background flusher
    sends what is pending every ``flush_interval`` seconds, or sooner once ``max_batch`` lines are
    waiting; each send carries at most ``max_batch`` lines. A failed send keeps its lines for the
    next flush. At most ``max_pending`` lines are held: beyond that the oldest are dropped (and
    counted in `dropped`) so a task that floods its logs while the control plane is unreachable
    cannot exhaust memory.

    Usage: ``start()`` inside the event loop, ``append()`` from anywhere, ``await close()`` (or
    ``close_keeping_last()``, whose lines go with the result) before reporting the result so
    that every line precedes it.

    Args:
        send: Async function delivering one batch (see `SendLogs`).
        flush_interval: Seconds between periodic flushes.
        max_batch: Lines per send, and the backlog that triggers an early flush.
        max_batch_bytes: UTF-8 bytes of messages per send (a single longer line is sent alone),
            so that a batch stays well below gRPC's default 4 MiB message limit.
        max_pending: Most lines held while sends fail.
        close_attempts: Flush attempts made by `close` before the remaining lines are dropped.
    """

    def __init__(
        self,
        send: SendLogs,
        *,
        flush_interval: float = 0.2,
        max_batch: int = 100,
        max_batch_bytes: int = 1024 * 1024,
        max_pending: int = 10_000,
        close_attempts: int = 3,
    ) -> None:
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError("need 1 <= max_batch <= max_pending")
        self._send = send
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._max_pending = max_pending
        self._close_attempts = close_attempts
        self._pending: deque[LogRecord] = deque()
        self._lock = threading.Lock()
        self._send_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0
        """Lines dropped because the backlog was full or sends kept failing at close."""

    def start(self) -> None:
        """Starts the periodic flusher on the running event loop.

        Raises:
            RuntimeError: No event loop is running in this thread.
        """
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._flusher = self._loop.create_task(self._flush_loop(), name="kestrel-log-flusher")

    def append(self, record: LogRecord) -> None:
        """Queues one line; thread-safe. Lines appended after `close` are dropped."""
        with self._lock:
            if self._closed:
                self.dropped += 1
                return
            self._pending.append(record)
            overflow = len(self._pending) - self._max_pending
            for _ in range(max(0, overflow)):
                self._pending.popleft()
                self.dropped += 1
            full = len(self._pending) >= self._max_batch
        if full and self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # loop already closed
                pass

    @property
    def pending(self) -> int:
        """Number of lines not sent yet."""
        with self._lock:
            return len(self._pending)

    async def flush(self) -> bool:
        """Sends every pending line now, in batches of at most ``max_batch``.

        Returns:
            True when nothing is left pending, False when a send failed (its lines are kept).
        """
        lock = self._send_lock or asyncio.Lock()
        async with lock:
            while True:
                batch = self._take_batch()
                if not batch:
                    return True
                try:
                    await self._send(batch)
                except asyncio.CancelledError:
                    self._requeue(batch)
                    raise
                except Exception as exc:  # the sender signals "retry later" by raising
                    _log.debug("log batch of %d lines not sent yet: %s", len(batch), exc)
                    self._requeue(batch)
                    return False

    def _take_batch(self) -> list[LogRecord]:
        batch: list[LogRecord] = []
        size = 0
        with self._lock:
            while self._pending and len(batch) < self._max_batch:
                line_size = len(self._pending[0].message.encode("utf-8", errors="replace"))
                if batch and size + line_size > self._max_batch_bytes:
                    break
                batch.append(self._pending.popleft())
                size += line_size
        return batch

    def _requeue(self, batch: list[LogRecord]) -> None:
        with self._lock:
            self._pending.extendleft(reversed(batch))
            overflow = len(self._pending) - self._max_pending
            for _ in range(max(0, overflow)):
                self._pending.popleft()
                self.dropped += 1

    async def _stop_flusher(self) -> None:
        with self._lock:
            self._closed = True
        if self._flusher is not None:
            # Let the flusher end on its own: cancelling it in the middle of a send could resend
            # (duplicate) a batch the server already stored.
            assert self._wake is not None
            self._wake.set()
            await self._flusher
            self._flusher = None

    async def close_keeping_last(self, max_bytes: int) -> list[LogRecord]:
        """Like `close`, but when what is left fits in one batch of at most ``max_bytes`` bytes
        of messages (and ``max_batch`` lines) it is returned unsent, for the caller to send with
        the result (``CompleteTaskRunRequest.logs``): every earlier line is sent first.

        Returns:
            The lines to send with the result (empty when nothing is left, or when it did not
            fit and `close` sent it).
        """
        await self._stop_flusher()
        with self._lock:
            fits = len(self._pending) <= self._max_batch and sum(
                len(r.message.encode("utf-8", errors="replace")) for r in self._pending) <= max_bytes
            if fits:
                last = list(self._pending)
                self._pending.clear()
                return last
        await self.close()
        return []

    async def close(self) -> None:
        """Stops the flusher and sends what is left (a few attempts, then drops the rest)."""
        await self._stop_flusher()
        for attempt in range(max(1, self._close_attempts)):
            if await self.flush():
                return
            if attempt + 1 < self._close_attempts:
                await asyncio.sleep(self._flush_interval * (2**attempt))
        with self._lock:
            lost = len(self._pending)
            self._pending.clear()
            self.dropped += lost
        if lost:
            _log.warning("dropped %d log lines that could not be delivered", lost)

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closed:
                return
            if not await self.flush():
                await asyncio.sleep(self._flush_interval)  # back off while sends fail
