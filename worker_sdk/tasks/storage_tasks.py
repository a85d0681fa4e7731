"""``io.kestra.plugin.core.storage.*`` tasks and ``io.kestra.plugin.core.log.Fetch``, on internal
storage through the task's token (its execution's files and its namespace's).

Kestra reference: ``io.kestra.plugin.core.storage.{Concat,Split,Size,Delete,Reverse,LocalFiles,
PurgeCurrentExecutionFiles}`` and ``log.Fetch`` (FEATURES.md §3). Files are processed in a
streaming way (1 MiB chunks or line by line) in the attempt's working directory.

``FilterItems`` and ``DeduplicateItems`` are in ``worker_sdk.tasks.item_tasks``. ``log.Fetch``
writes JSON lines (one log entry per line) where Kestra writes Ion.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from kestrel.v1 import common_pb2, log_pb2, log_pb2_grpc
from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import boolean, required, string_list, to_text
from worker_sdk.tasks.scripts import upload_output_files, write_input_files

_CORE = "io.kestra.plugin.core."
_CHUNK = 1024 * 1024


def _storage(ctx: TaskContext):
    if ctx.storage is None:
        raise TaskFailure("internal storage is only reachable on a worker")
    return ctx.storage


def _uri(props: Mapping[str, Any], name: str) -> str:
    value = required(props, name)
    if not isinstance(value, str) or not value.startswith("kestra:///"):
        raise TaskFailure(f"property '{name}' must be a kestra:/// URI, got {str(value)[:200]!r}")
    return value


def _refused(exc: Exception, what: str) -> TaskFailure:
    if isinstance(exc, grpc.aio.AioRpcError):
        return TaskFailure(f"{what}: {exc.details() or exc.code().name}")
    return TaskFailure(f"{what}: {type(exc).__name__}: {exc}")


async def _fetch(ctx: TaskContext, uri: str, name: str) -> Path:
    try:
        return await _storage(ctx).download(uri, ctx.working_dir / "in" / name)
    except Exception as exc:
        raise _refused(exc, f"cannot read {uri}") from None


async def _store(ctx: TaskContext, path: Path, name: str) -> str:
    try:
        return await _storage(ctx).upload(path, name)
    except Exception as exc:
        raise _refused(exc, f"cannot store {name}") from None


async def size(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.Size``: ``from``* (URI). Output ``size`` in bytes."""
    uri = _uri(props, "from")
    try:
        info = await _storage(ctx).info(uri)
    except Exception as exc:
        raise _refused(exc, f"cannot read {uri}") from None
    return {"size": info.size}


async def delete(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.Delete``: ``uri``*, ``errorOnMissing`` (false). Outputs ``uri``, ``deleted``."""
    uri = _uri(props, "uri")
    try:
        deleted = await _storage(ctx).delete(uri)
    except Exception as exc:
        raise _refused(exc, f"cannot delete {uri}") from None
    if not deleted and boolean(props, "errorOnMissing", False):
        raise TaskFailure(f"Unable to find file '{uri}'")
    return {"uri": uri, "deleted": deleted}


def _uri_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise TaskFailure(f"property '{name}' must be a list of URIs") from None
    uris = string_list(value, name)
    for uri in uris:
        if not uri.startswith("kestra:///"):
            raise TaskFailure(f"property '{name}': {uri[:200]!r} is not a kestra:/// URI")
    return uris


async def concat(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.Concat``: ``files``* (URIs, or their JSON list), ``separator``, ``extension``
    (default ``.tmp``). Output ``uri``."""
    uris = _uri_list(required(props, "files"), "files")
    separator = to_text(props.get("separator")) if props.get("separator") is not None else ""
    extension = to_text(props.get("extension") or ".tmp")
    out = ctx.working_dir / f"concat{extension}"
    with open(out, "wb") as target:
        for i, uri in enumerate(uris):
            part = await _fetch(ctx, uri, f"part-{i}")
            if i and separator:
                target.write(separator.encode())
            with open(part, "rb") as source:
                while chunk := source.read(_CHUNK):
                    target.write(chunk)
            part.unlink()
    return {"uri": await _store(ctx, out, out.name)}


async def reverse(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.Reverse``: ``from``* (URI), ``separator`` (``\\n``). The file's lines in
    reverse order (in memory). Output ``uri``."""
    uri = _uri(props, "from")
    separator = to_text(props.get("separator") if props.get("separator") is not None else "\n")
    source = await _fetch(ctx, uri, "reverse-in")
    text = source.read_text(encoding="utf-8")
    lines = text.split(separator)
    if lines and lines[-1] == "":
        lines.pop()
    name = uri.rsplit("/", 1)[-1]
    out = ctx.working_dir / f"reversed-{name}"
    out.write_text("".join(line + separator for line in reversed(lines)), encoding="utf-8")
    return {"uri": await _store(ctx, out, out.name)}


def _parse_bytes(value: Any) -> int:
    text = to_text(value).strip().upper()
    units = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].strip().isdigit():
            return int(text[: -len(unit)].strip()) * factor
    if text.isdigit():
        return int(text)
    raise TaskFailure(f"property 'bytes': not a size: {value!r} (e.g. 10MB)")


async def split(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.Split``: ``from``* (URI) and one of ``bytes`` (``10MB``), ``lines``/``rows``
    (lines per part) or ``partitions`` (number of parts, by lines); ``separator`` (``\\n``).
    Output ``uris`` (in order)."""
    uri = _uri(props, "from")
    chosen = [k for k in ("bytes", "lines", "rows", "partitions") if props.get(k) is not None]
    if len(chosen) != 1:
        raise TaskFailure("storage.Split needs exactly one of 'bytes', 'lines', 'rows' or 'partitions'")
    separator = to_text(props.get("separator") if props.get("separator") is not None else "\n").encode()
    source = await _fetch(ctx, uri, "split-in")
    base = uri.rsplit("/", 1)[-1]
    parts: list[Path] = []

    def new_part() -> Any:
        path = ctx.working_dir / f"{base}-{len(parts)}"
        parts.append(path)
        return open(path, "wb")

    kind = chosen[0]
    if kind == "bytes":
        limit = _parse_bytes(props["bytes"])
        with open(source, "rb") as handle:
            while chunk := handle.read(limit):
                with new_part() as out:
                    out.write(chunk)
    else:
        records = source.read_bytes().split(separator)
        if records and records[-1] == b"":
            records.pop()
        if kind == "partitions":
            count = max(1, int(props["partitions"]))
            per = max(1, -(-len(records) // count))
        else:
            per = max(1, int(props[kind]))
        for start in range(0, len(records), per):
            with new_part() as out:
                out.write(b"".join(r + separator for r in records[start:start + per]))
    uris = [await _store(ctx, path, path.name) for path in parts]
    return {"uris": uris}


async def local_files(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.LocalFiles`` (deprecated in Kestra): ``inputs`` (path → content or URI) written
    to the working directory, ``outputs`` (globs) uploaded. Output ``uris`` (path → URI), as
    Kestra's. Inside a ``WorkingDirectory`` the directory is the group's, so a LocalFiles can
    export what an earlier task of the group wrote; elsewhere the files live for this task run."""
    await write_input_files(ctx, props.get("inputs"))
    files = await upload_output_files(ctx, props.get("outputs"), ctx.working_dir / ".no-output-dir")
    return {"uris": files}


async def purge_current_execution_files(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.PurgeCurrentExecutionFiles``: delete every file of this execution (inputs
    uploaded before it started are kept). Output ``uris`` (the deleted ones)."""
    storage = _storage(ctx)
    try:
        files = await storage.list_execution_files()
        deleted = [f.uri for f in files if await storage.delete(f.uri)]
    except Exception as exc:
        raise _refused(exc, "cannot purge the execution's files") from None
    return {"uris": deleted}


_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")


async def log_fetch(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``log.Fetch``: ``executionId`` (default: this one; must be of the same namespace),
    ``tasksId`` (only these tasks), ``level`` (minimum, default INFO). Writes the lines as JSON
    lines to storage. Outputs ``uri`` and ``size`` (number of lines). ``namespace``/``flowId``
    are accepted; the execution id alone names the execution here.

    The logs are read with the task token, and the server applies the rule
    (:func:`controlplane.api.access.log_reader`): another execution must be of this task's
    namespace, and under a worker API token (authentication on) only this task's own
    execution is readable."""
    storage = _storage(ctx)
    execution_id = to_text(props.get("executionId") or ctx.execution_id)
    task_ids = set(string_list(props["tasksId"], "tasksId")) if props.get("tasksId") is not None else None
    level = to_text(props.get("level") or "INFO").upper()
    if level not in _LEVELS:
        raise TaskFailure(f"property 'level' must be one of {', '.join(_LEVELS)}, got {level!r}")
    logs = log_pb2_grpc.LogServiceStub(storage.channel)
    min_level = getattr(common_pb2, f"LOG_LEVEL_{level}")
    out = ctx.working_dir / "logs.jsonl"
    count = 0
    after = 0
    with open(out, "w", encoding="utf-8") as handle:
        while True:
            try:
                resp = await logs.ListLogs(log_pb2.ListLogsRequest(
                    execution_id=execution_id, min_level=min_level, after_sequence=after, page_size=1000,
                    task_token=storage.task_token))
            except grpc.aio.AioRpcError as exc:
                raise _refused(exc, f"property 'executionId': cannot read the logs of execution {execution_id}") from None
            for entry in resp.entries:
                after = entry.sequence
                if task_ids is not None and entry.task_id not in task_ids:
                    continue
                handle.write(json.dumps({
                    "executionId": entry.execution_id, "taskId": entry.task_id, "taskRunId": entry.task_run_id,
                    "attemptNumber": entry.attempt, "level": common_pb2.LogLevel.Name(entry.level)[10:],
                    "message": entry.message,
                    "timestamp": entry.timestamp.ToJsonString() if entry.HasField("timestamp") else None,
                }) + "\n")
                count += 1
            if len(resp.entries) < 1000:
                break
        handle.flush()
        os.fsync(handle.fileno())
    return {"uri": await _store(ctx, out, out.name), "size": count}


TASKS = {
    _CORE + "storage.Size": size,
    _CORE + "storage.Delete": delete,
    _CORE + "storage.Concat": concat,
    _CORE + "storage.Reverse": reverse,
    _CORE + "storage.Split": split,
    _CORE + "storage.LocalFiles": local_files,
    _CORE + "storage.PurgeCurrentExecutionFiles": purge_current_execution_files,
    _CORE + "log.Fetch": log_fetch,
}
"""Type name → task function for the storage tasks and ``log.Fetch``."""
