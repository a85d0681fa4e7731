"""Internal storage and the KV store from Python: for clients (``KestrelClient``, CLI) and for
tasks running on a worker (``ctx.storage``, ``ctx.kv``).

Files stream in chunks of at most 1 MiB (:data:`CHUNK_SIZE`), so memory stays constant whatever
the file size; the control plane records each file's size and sha256, and downloads are checked
against that sha256. Files are named by Kestra URIs (``kestra:///namespace/flow/executions/…``).

Inside a task::

    @task("com.acme.Report")
    async def report(ctx, props):
        local = await ctx.storage.download(props["source"], ctx.working_dir / "in.csv")
        ...
        uri = await ctx.storage.upload(ctx.working_dir / "report.csv")   # kestra:///…/report.csv
        await ctx.kv.set("last_report", uri)
        return {"uri": uri}

A synchronous task (run in a thread) uses the ``*_sync`` variants (``ctx.storage.upload_sync``).
A task may reach only its own execution's files and its namespace's; the KV store of its
namespace and the ancestors of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from kestrel.v1 import kv_pb2, kv_pb2_grpc, storage_pb2, storage_pb2_grpc

__all__ = ["CHUNK_SIZE", "FileInfo", "FilesAndKVClientMixin", "KVEntry", "TaskKV", "TaskStorage"]

#: Bytes per upload/download message.
CHUNK_SIZE = 1024 * 1024

KV_TYPES = ("STRING", "NUMBER", "BOOLEAN", "DATETIME", "DATE", "DURATION", "JSON")
_KV_TYPE_TO_PROTO = {name: getattr(kv_pb2, f"KV_TYPE_{name}") for name in KV_TYPES}
_KV_TYPE_FROM_PROTO = {number: name for name, number in _KV_TYPE_TO_PROTO.items()}


class ChecksumMismatchError(IOError):
    """A downloaded file's sha256 differs from the one the control plane recorded."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One file of internal storage.

    Attributes:
        uri: ``kestra:///…``.
        size: Bytes.
        sha256: Lower-case hex SHA-256 of the content.
        namespace / flow_id: The owner flow.
        execution_id: None for a FILE input uploaded before its execution started.
        task_run_id: The task run that wrote it, None for inputs.
        created_at: When it was stored (UTC).
    """

    uri: str
    size: int
    sha256: str
    namespace: str
    flow_id: str
    execution_id: str | None
    task_run_id: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class KVEntry:
    """One key of the KV store (``value`` is the typed value; ``expires_at`` None = never)."""

    namespace: str
    key: str
    type: str
    value: Any
    expires_at: datetime | None
    updated_at: datetime | None


def _file(msg: storage_pb2.FileInfo) -> FileInfo:
    created = msg.created_at.ToDatetime(tzinfo=UTC) if msg.HasField("created_at") else None
    return FileInfo(msg.uri, msg.size, msg.sha256, msg.namespace, msg.flow_id, msg.execution_id or None,
                    msg.task_run_id or None, created)


def _kv(msg: kv_pb2.KVEntry) -> KVEntry:
    return KVEntry(
        msg.namespace, msg.key, _KV_TYPE_FROM_PROTO.get(msg.type, "STRING"), json.loads(msg.value_json),
        msg.expires_at.ToDatetime(tzinfo=UTC) if msg.HasField("expires_at") else None,
        msg.updated_at.ToDatetime(tzinfo=UTC) if msg.HasField("updated_at") else None,
    )


def _kv_type(kv_type: str | None) -> int:
    if kv_type is None:
        return kv_pb2.KV_TYPE_UNSPECIFIED
    name = str(kv_type).upper()
    if name not in _KV_TYPE_TO_PROTO:
        raise ValueError(f"unknown KV type {kv_type!r}; expected one of {', '.join(KV_TYPES)}")
    return _KV_TYPE_TO_PROTO[name]


def _file_chunks(path: Path, header: storage_pb2.UploadFileHeader) -> Iterator[storage_pb2.UploadFileRequest]:
    yield storage_pb2.UploadFileRequest(header=header)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield storage_pb2.UploadFileRequest(chunk=chunk)


def _partial(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part-{os.getpid()}")


# ---------------------------------------------------------------------------------------------
# Client side (synchronous; mixed into worker_sdk.client.KestrelClient)


class FilesAndKVClientMixin:
    """Files and KV methods of :class:`worker_sdk.client.KestrelClient` (uses its channel,
    ``_unary`` and ``_error``)."""

    _channel: grpc.Channel
    timeout: float

    def _storage_stub(self) -> storage_pb2_grpc.StorageServiceStub:
        return storage_pb2_grpc.StorageServiceStub(self._channel)

    def _kv_stub(self) -> kv_pb2_grpc.KVServiceStub:
        return kv_pb2_grpc.KVServiceStub(self._channel)

    def upload_input_file(self, namespace: str, flow_id: str, input_id: str, path: str | os.PathLike[str],
                          *, timeout: float | None = None) -> FileInfo:
        """Upload a local file as the value of a FILE input; pass the returned ``uri`` as the input.

        Args:
            timeout: Deadline of the whole upload (default: none).

        Raises:
            FileNotFoundError / OSError: the local file cannot be read.
            InvalidArgumentError: the flow has no FILE input ``input_id``.
            NotFoundError: no such flow. RPCError: any other failure.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        header = storage_pb2.UploadFileHeader(namespace=namespace, flow_id=flow_id, input_id=input_id,
                                              file_name=source.name, expected_sha256=_sha256_of(source))
        self._check_open()  # type: ignore[attr-defined]
        try:
            resp = self._storage_stub().UploadFile(_file_chunks(source, header), timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None  # type: ignore[attr-defined]
        return _file(resp.file)

    def download_file(self, uri: str, dest: str | os.PathLike[str], *, timeout: float | None = None) -> FileInfo:
        """Download a file to ``dest`` (written to a temporary name, renamed when complete and
        its sha256 checked).

        Raises:
            NotFoundError: no such file. ChecksumMismatchError: corrupted in transit.
        """
        self._check_open()  # type: ignore[attr-defined]
        target = Path(dest)
        partial = _partial(target)
        call = self._storage_stub().DownloadFile(storage_pb2.DownloadFileRequest(uri=uri), timeout=timeout)
        info: FileInfo | None = None
        digest = hashlib.sha256()
        try:
            with open(partial, "wb") as out:
                for message in call:
                    if message.WhichOneof("part") == "info":
                        info = _file(message.info)
                    else:
                        digest.update(message.chunk)
                        out.write(message.chunk)
            if info is None:
                raise ChecksumMismatchError(f"download of {uri} ended without file information")
            if digest.hexdigest() != info.sha256:
                raise ChecksumMismatchError(f"download of {uri}: sha256 {digest.hexdigest()} != {info.sha256}")
            os.replace(partial, target)
        except grpc.RpcError as err:
            raise self._error(err) from None  # type: ignore[attr-defined]
        finally:
            partial.unlink(missing_ok=True)
        return info

    def file_info(self, uri: str) -> FileInfo:
        """Size, sha256 and owner of a file. Raises NotFoundError when unknown."""
        resp = self._unary(self._storage_stub().GetFileInfo, storage_pb2.GetFileInfoRequest(uri=uri))  # type: ignore[attr-defined]
        return _file(resp.file)

    def list_execution_files(self, execution_id: str) -> list[FileInfo]:
        """The files written by an execution's task runs, ordered by URI."""
        resp = self._unary(self._storage_stub().ListFiles,  # type: ignore[attr-defined]
                           storage_pb2.ListFilesRequest(execution_id=execution_id))
        return [_file(f) for f in resp.files]

    def upload_namespace_file(self, namespace: str, path: str, source: str | os.PathLike[str], *,
                              timeout: float | None = None) -> FileInfo:
        """Upload a local file as the namespace file ``path`` (``scripts/etl.py``) of
        ``namespace`` (replacing any file there)."""
        local = Path(source)
        if not local.is_file():
            raise FileNotFoundError(f"no such file: {local}")
        header = storage_pb2.UploadFileHeader(namespace=namespace, namespace_file=path,
                                              expected_sha256=_sha256_of(local))
        self._check_open()  # type: ignore[attr-defined]
        try:
            resp = self._storage_stub().UploadFile(_file_chunks(local, header), timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None  # type: ignore[attr-defined]
        return _file(resp.file)

    def list_namespace_files(self, namespace: str, prefix: str = "") -> list[FileInfo]:
        """The namespace files of ``namespace`` (paths starting with ``prefix``), ordered by URI."""
        resp = self._unary(self._storage_stub().ListNamespaceFiles,  # type: ignore[attr-defined]
                           storage_pb2.ListNamespaceFilesRequest(namespace=namespace, prefix=prefix))
        return [_file(f) for f in resp.files]

    def delete_file(self, uri: str) -> bool:
        """Delete one file (execution file or namespace file); False when there was none."""
        resp = self._unary(self._storage_stub().DeleteFile, storage_pb2.DeleteFileRequest(uri=uri))  # type: ignore[attr-defined]
        return resp.deleted

    def kv_set(self, namespace: str, key: str, value: Any, *, kv_type: str | None = None, overwrite: bool = True,
               ttl_seconds: float = 0.0) -> KVEntry:
        """Store a KV value (``kv_type`` None infers it from the JSON value).

        Raises:
            AlreadyExistsError: ``overwrite`` false and the key exists. InvalidArgumentError: bad
                key, value or type.
        """
        request = kv_pb2.SetKVRequest(namespace=namespace, key=key, value_json=json.dumps(value),
                                      type=_kv_type(kv_type), overwrite=overwrite, ttl_seconds=ttl_seconds)
        return _kv(self._unary(self._kv_stub().SetKV, request).entry)  # type: ignore[attr-defined]

    def kv_get(self, namespace: str, key: str, *, inherit: bool = False) -> KVEntry:
        """Read a KV value. Raises NotFoundError when missing or expired."""
        request = kv_pb2.GetKVRequest(namespace=namespace, key=key, inherit=inherit)
        return _kv(self._unary(self._kv_stub().GetKV, request).entry)  # type: ignore[attr-defined]

    def kv_list(self, namespace: str, prefix: str = "") -> list[KVEntry]:
        """The live keys of a namespace (not inherited), ordered by key."""
        resp = self._unary(self._kv_stub().ListKV, kv_pb2.ListKVRequest(namespace=namespace, prefix=prefix))  # type: ignore[attr-defined]
        return [_kv(e) for e in resp.entries]

    def kv_delete(self, namespace: str, key: str) -> bool:
        """Delete a key; False when there was none."""
        resp = self._unary(self._kv_stub().DeleteKV, kv_pb2.DeleteKVRequest(namespace=namespace, key=key))  # type: ignore[attr-defined]
        return resp.deleted


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Task side (asyncio, on the worker's channel)


class _OnLoop:
    """Runs the async methods from a task's thread on the worker's event loop."""

    _loop: asyncio.AbstractEventLoop | None

    def _sync(self, coro: Any) -> Any:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("no worker event loop: use the async methods")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("called on the worker's event loop: await the async method instead")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


_STUBS: weakref.WeakKeyDictionary[Any, dict[type, Any]] = weakref.WeakKeyDictionary()


def _stub_of(channel: grpc.aio.Channel, stub_type: type) -> Any:
    """The worker channel's one ``stub_type`` stub (a stub holds no per-call state; making one
    for every task run cost ~0.05 ms each)."""
    stubs = _STUBS.setdefault(channel, {})
    stub = stubs.get(stub_type)
    if stub is None:
        stub = stubs[stub_type] = stub_type(channel)
    return stub


class TaskStorage(_OnLoop):
    """Internal storage as one task run sees it (``ctx.storage``).

    Args:
        channel: The worker's gRPC channel.
        task_token: The attempt's token (authorises every call).
        loop: The worker's event loop (for the ``*_sync`` methods).
    """

    def __init__(self, channel: grpc.aio.Channel, task_token: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self._stub = _stub_of(channel, storage_pb2_grpc.StorageServiceStub)
        self._token = task_token
        self._loop = loop
        self.channel = channel

    @property
    def task_token(self) -> str:
        """The attempt's task token (for the few non-storage calls a task makes, e.g. log.Fetch)."""
        return self._token

    async def upload(self, path: str | os.PathLike[str], name: str | None = None) -> str:
        """Upload a local file as an output of this task run; returns its ``kestra:///`` URI
        (``…/executions/<exec>/tasks/<task>/<taskrun>/<name>``).

        Args:
            name: The file's name in storage (default: the local base name).

        Raises:
            FileNotFoundError: no such local file. grpc.aio.AioRpcError: refused by the server.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        sha = await asyncio.to_thread(_sha256_of, source)
        header = storage_pb2.UploadFileHeader(task_token=self._token, file_name=name or source.name,
                                              expected_sha256=sha)

        async def requests() -> AsyncIterator[storage_pb2.UploadFileRequest]:
            yield storage_pb2.UploadFileRequest(header=header)
            handle = await asyncio.to_thread(open, source, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, CHUNK_SIZE):
                    yield storage_pb2.UploadFileRequest(chunk=chunk)
            finally:
                handle.close()

        resp = await self._stub.UploadFile(requests())
        return resp.file.uri

    async def upload_namespace_file(self, path: str | os.PathLike[str], namespace_path: str) -> str:
        """Upload a local file as the namespace file ``namespace_path`` of this task's namespace;
        returns its URI (``kestra:///<ns>/_files/<namespace_path>``)."""
        source = Path(path)
        sha = await asyncio.to_thread(_sha256_of, source)
        header = storage_pb2.UploadFileHeader(task_token=self._token, namespace_file=namespace_path,
                                              expected_sha256=sha)

        async def requests() -> AsyncIterator[storage_pb2.UploadFileRequest]:
            yield storage_pb2.UploadFileRequest(header=header)
            handle = await asyncio.to_thread(open, source, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, CHUNK_SIZE):
                    yield storage_pb2.UploadFileRequest(chunk=chunk)
            finally:
                handle.close()

        resp = await self._stub.UploadFile(requests())
        return resp.file.uri

    async def list_namespace_files(self, prefix: str = "") -> list[FileInfo]:
        """The namespace files of this task's namespace (paths starting with ``prefix``)."""
        resp = await self._stub.ListNamespaceFiles(
            storage_pb2.ListNamespaceFilesRequest(prefix=prefix, task_token=self._token))
        return [_file(f) for f in resp.files]

    async def upload_bytes(self, data: bytes, name: str) -> str:
        """Upload bytes as a file of this task run; returns its URI."""

        async def requests() -> AsyncIterator[storage_pb2.UploadFileRequest]:
            yield storage_pb2.UploadFileRequest(header=storage_pb2.UploadFileHeader(
                task_token=self._token, file_name=name, expected_sha256=hashlib.sha256(data).hexdigest()))
            for start in range(0, len(data), CHUNK_SIZE):
                yield storage_pb2.UploadFileRequest(chunk=data[start:start + CHUNK_SIZE])

        resp = await self._stub.UploadFile(requests())
        return resp.file.uri

    async def download(self, uri: str, dest: str | os.PathLike[str]) -> Path:
        """Download a file of this execution or namespace to ``dest`` (checked against its sha256).

        Raises:
            grpc.aio.AioRpcError: NOT_FOUND, or PERMISSION_DENIED for another namespace's file.
            ChecksumMismatchError: corrupted in transit.
        """
        target = Path(dest)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        partial = _partial(target)
        digest = hashlib.sha256()
        info = None
        handle = await asyncio.to_thread(open, partial, "wb")
        try:
            async for message in self._stub.DownloadFile(
                storage_pb2.DownloadFileRequest(uri=uri, task_token=self._token)
            ):
                if message.WhichOneof("part") == "info":
                    info = message.info
                else:
                    digest.update(message.chunk)
                    await asyncio.to_thread(handle.write, message.chunk)
            handle.close()
            if info is None or digest.hexdigest() != info.sha256:
                raise ChecksumMismatchError(f"download of {uri}: content does not match its recorded sha256")
            await asyncio.to_thread(os.replace, partial, target)
        finally:
            handle.close()
            partial.unlink(missing_ok=True)
        return target

    async def read_bytes(self, uri: str, limit: int = 100 * 1024 * 1024) -> bytes:
        """A whole file in memory (at most ``limit`` bytes; ValueError beyond)."""
        parts: list[bytes] = []
        size = 0
        async for message in self._stub.DownloadFile(storage_pb2.DownloadFileRequest(uri=uri, task_token=self._token)):
            if message.WhichOneof("part") == "chunk":
                size += len(message.chunk)
                if size > limit:
                    raise ValueError(f"{uri} is larger than {limit} bytes")
                parts.append(message.chunk)
        return b"".join(parts)

    async def info(self, uri: str) -> FileInfo:
        """Size, sha256 and owner of a reachable file."""
        resp = await self._stub.GetFileInfo(storage_pb2.GetFileInfoRequest(uri=uri, task_token=self._token))
        return _file(resp.file)

    async def list_execution_files(self) -> list[FileInfo]:
        """The files of this task's execution."""
        resp = await self._stub.ListFiles(storage_pb2.ListFilesRequest(task_token=self._token))
        return [_file(f) for f in resp.files]

    async def delete(self, uri: str) -> bool:
        """Delete a reachable file; False when there was none."""
        resp = await self._stub.DeleteFile(storage_pb2.DeleteFileRequest(uri=uri, task_token=self._token))
        return resp.deleted

    def upload_sync(self, path: str | os.PathLike[str], name: str | None = None) -> str:
        """:meth:`upload` from a synchronous task's thread."""
        return self._sync(self.upload(path, name))

    def download_sync(self, uri: str, dest: str | os.PathLike[str]) -> Path:
        """:meth:`download` from a synchronous task's thread."""
        return self._sync(self.download(uri, dest))


class TaskKV(_OnLoop):
    """The KV store as one task run sees it (``ctx.kv``): its flow's namespace by default; that
    namespace's ancestors may be named explicitly, other namespaces are refused."""

    def __init__(self, channel: grpc.aio.Channel, task_token: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self._stub = _stub_of(channel, kv_pb2_grpc.KVServiceStub)
        self._token = task_token
        self._loop = loop

    async def set(self, key: str, value: Any, *, namespace: str = "", kv_type: str | None = None,
                  overwrite: bool = True, ttl_seconds: float = 0.0) -> KVEntry:
        """Store a value (ALREADY_EXISTS when ``overwrite`` is false and the key exists)."""
        resp = await self._stub.SetKV(kv_pb2.SetKVRequest(
            namespace=namespace, key=key, value_json=json.dumps(value), type=_kv_type(kv_type), overwrite=overwrite,
            ttl_seconds=ttl_seconds, task_token=self._token))
        return _kv(resp.entry)

    async def get(self, key: str, *, namespace: str = "", inherit: bool = False) -> KVEntry | None:
        """A value, or None when missing or expired."""
        try:
            resp = await self._stub.GetKV(kv_pb2.GetKVRequest(namespace=namespace, key=key, inherit=inherit,
                                                               task_token=self._token))
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return _kv(resp.entry)

    async def list(self, *, namespace: str = "", prefix: str = "") -> list[KVEntry]:
        """The live keys of a namespace, ordered by key."""
        resp = await self._stub.ListKV(kv_pb2.ListKVRequest(namespace=namespace, prefix=prefix,
                                                            task_token=self._token))
        return [_kv(e) for e in resp.entries]

    async def delete(self, key: str, *, namespace: str = "") -> bool:
        """Delete a key; False when there was none."""
        resp = await self._stub.DeleteKV(kv_pb2.DeleteKVRequest(namespace=namespace, key=key, task_token=self._token))
        return resp.deleted
