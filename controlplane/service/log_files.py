"""Task ``logToFile`` (Kestra's ``logToFile: true``): an ended attempt's log lines, also kept as a
file in internal storage, its URI on the attempt (Kestra's ``TaskRunAttempt.logFile``).

The executor records the request in the result's transaction (:attr:`Unit.log_files`); the file
is written after that transaction commits (the worker's report is not held up by it), one line
per log entry: ``<ISO-8601 timestamp, ms> <LEVEL> <message>``, lines already masked as stored.
If the control plane stops between the two, the attempt keeps no ``log_file``: its lines are
still in the execution's logs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.storage import InternalStorage
from controlplane.storage.uris import task_file_uri
from controlplane.store import tables as t

log = logging.getLogger("kestrel.logfiles")

_CHUNK = 256 * 1024  # bytes per upload chunk (below the storage service's chunk limit)


@dataclass(frozen=True)
class LogFileRequest:
    """Which attempt's lines to write, and where they belong (the URI's owner)."""

    namespace: str
    flow_id: str
    execution_id: str
    task_id: str
    task_run_id: str
    attempt: int


async def write_log_file(
    begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
    storage: InternalStorage,
    request: LogFileRequest,
) -> str:
    """Write the attempt's log lines to ``.../tasks/<task>/<task run>/attempt-<n>.log`` and set
    the attempt's ``log_file``; the lines are streamed (constant memory for any log size).

    Args:
        begin: Opens a transaction (``engine.begin``).

    Returns:
        The file's ``kestra:///`` URI.
    """
    uri = task_file_uri(request.namespace, request.flow_id, request.execution_id, request.task_id,
                        request.task_run_id, f"attempt-{request.attempt}.log")

    async def chunks() -> AsyncIterator[bytes]:
        buffer = bytearray()
        async with begin() as conn:
            rows = await conn.stream(
                select(t.logs.c.timestamp, t.logs.c.level, t.logs.c.message)
                .where(t.logs.c.execution_id == request.execution_id, t.logs.c.task_run_id == request.task_run_id,
                       t.logs.c.attempt == request.attempt)
                .order_by(t.logs.c.seq)
                .execution_options(yield_per=500)
            )
            async for when, level, message in rows:
                stamp = when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                buffer += f"{stamp} {level} {message}\n".encode("utf-8", "replace")
                if len(buffer) >= _CHUNK:
                    yield bytes(buffer)
                    buffer.clear()
        if buffer:
            yield bytes(buffer)

    owner = (request.namespace, request.flow_id, request.execution_id, request.task_run_id)
    await storage.upload(begin, uri, owner, chunks())
    async with begin() as conn:
        await conn.execute(
            update(t.task_run_attempts)
            .where(t.task_run_attempts.c.task_run_id == request.task_run_id,
                   t.task_run_attempts.c.attempt == request.attempt)
            .values(log_file=uri)
        )
    return uri
