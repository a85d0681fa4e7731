"""StorageService servicer: chunked upload and download of internal-storage files."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from controlplane.api import access, checks, convert
from controlplane.api.status import rpc
from controlplane.errors import InvalidArgumentError, NotFoundError
from controlplane.storage import uris
from controlplane.storage.scope import scope_for_token
from controlplane.storage.service import PermissionDeniedError, StoredFile, new_upload_id
from kestrel.v1 import storage_pb2, storage_pb2_grpc


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`rpc` plus PERMISSION_DENIED for :class:`PermissionDeniedError` (used by KV too)."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext):
            try:
                async for item in method(self, request, context):
                    yield item
            except PermissionDeniedError as exc:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))

        return rpc(stream)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except PermissionDeniedError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))

    return rpc(unary)


def file_to_proto(file: StoredFile) -> storage_pb2.FileInfo:
    """The wire form of a stored file."""
    return storage_pb2.FileInfo(
        uri=file.uri, size=file.size, sha256=file.sha256, namespace=file.namespace, flow_id=file.flow_id,
        execution_id=file.execution_id or "", task_run_id=file.task_run_id or "", created_at=convert.ts(file.created_at),
    )


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    """Thin gRPC layer over :class:`controlplane.storage.InternalStorage`."""

    def __init__(self, control_plane) -> None:
        self._cp = control_plane

    @contextlib.asynccontextmanager
    async def _conn(self):
        async with self._cp.transaction() as unit:
            yield unit.conn

    async def _scope(self, token: str, *, current: bool = False):
        access.task_token_required(token)
        if not token:
            return None
        async with self._cp.transaction() as unit:
            return await scope_for_token(unit.conn, self._cp.signer, token, current=current)

    @guarded
    async def UploadFile(self, request_iterator, context: grpc.aio.ServicerContext):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgumentError("header: the first message of an upload must be its header")
        header = first.header
        access.task_token_required(header.task_token)
        if header.namespace_file:
            checks.text_field(header.namespace_file, "namespace_file", max_len=uris.MAX_PATH)
            scope = await self._scope(header.task_token, current=True)
            namespace = scope.namespace if scope is not None else header.namespace
            checks.text_field(namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
            uri = uris.namespace_file_uri(namespace, header.namespace_file)
            owner = (namespace, "", None, None)
            limit = self._cp.settings.namespace_file_max_bytes
            return await self._store(
                request_iterator, uri, owner, header.expected_sha256, limit,
                f"namespace_file: '{header.namespace_file}' (namespace {namespace}) is larger than the namespace "
                "file limit of {limit} (server setting KESTREL_NAMESPACE_FILE_MAX_BYTES); nothing was stored",
            )
        checks.text_field(header.file_name, "file_name", max_len=uris.MAX_FILE_NAME, required=True)
        uris.check_file_name(header.file_name)
        if header.task_token:
            scope = await self._scope(header.task_token, current=True)
            assert scope is not None
            uri = uris.task_file_uri(scope.namespace, scope.flow_id, scope.execution_id, scope.task_id,
                                     scope.task_run_id, header.file_name)
            owner = (scope.namespace, scope.flow_id, scope.execution_id, scope.task_run_id)
        else:
            checks.text_field(header.namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
            checks.text_field(header.flow_id, "flow_id", max_len=checks.MAX_ID, required=True)
            checks.text_field(header.input_id, "input_id", max_len=checks.MAX_ID, required=True)
            async with self._cp.transaction() as unit:
                flow = await self._cp.flows.latest(unit.conn, header.namespace, header.flow_id, 0)
            declared = {i.id: i.type for i in flow.inputs}
            if declared.get(header.input_id) != "FILE":
                raise InvalidArgumentError(
                    f"input_id: flow {flow.namespace}.{flow.id} has no FILE input '{header.input_id}'"
                )
            uri = uris.input_file_uri(flow.namespace, flow.id, new_upload_id(), header.input_id, header.file_name)
            owner = (flow.namespace, flow.id, None, None)

        return await self._store(request_iterator, uri, owner, header.expected_sha256)

    async def _store(
        self, request_iterator, uri: str, owner, expected_sha256: str, max_bytes: int | None = None,
        too_large: str = "",
    ) -> storage_pb2.UploadFileResponse:
        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgumentError("chunk: only the first message of an upload may be a header")
                yield message.chunk

        access.namespace(owner[0])
        stored = await self._cp.storage.upload(self._conn, uri, owner, chunks(), expected_sha256, max_bytes,
                                               too_large)
        return storage_pb2.UploadFileResponse(file=file_to_proto(stored))

    @guarded
    async def DownloadFile(self, request: storage_pb2.DownloadFileRequest, context: grpc.aio.ServicerContext):
        scope = await self._scope(request.task_token)
        async with self._cp.transaction() as unit:
            file = await self._cp.storage.info(unit.conn, request.uri, scope)
        access.namespace(file.namespace)
        yield storage_pb2.DownloadFileResponse(info=file_to_proto(file))
        async for chunk in self._cp.storage.read(file):
            yield storage_pb2.DownloadFileResponse(chunk=chunk)

    @guarded
    async def GetFileInfo(self, request: storage_pb2.GetFileInfoRequest, context: grpc.aio.ServicerContext):
        scope = await self._scope(request.task_token)
        async with self._cp.transaction() as unit:
            file = await self._cp.storage.info(unit.conn, request.uri, scope)
        access.namespace(file.namespace)
        return storage_pb2.GetFileInfoResponse(file=file_to_proto(file))

    @guarded
    async def ListFiles(self, request: storage_pb2.ListFilesRequest, context: grpc.aio.ServicerContext):
        scope = await self._scope(request.task_token)
        execution_id = request.execution_id or (scope.execution_id if scope else "")
        checks.text_field(execution_id, "execution_id", max_len=checks.MAX_EXECUTION_ID, required=True)
        if scope is not None and execution_id != scope.execution_id:
            raise PermissionDeniedError("execution_id: a task may list only the files of its own execution")
        async with self._cp.transaction() as unit:
            await access.execution(unit.conn, execution_id)
            files = await self._cp.storage.list_execution(unit.conn, execution_id)
        return storage_pb2.ListFilesResponse(files=[file_to_proto(f) for f in files])

    @guarded
    async def ListNamespaceFiles(self, request: storage_pb2.ListNamespaceFilesRequest,
                                 context: grpc.aio.ServicerContext):
        scope = await self._scope(request.task_token)
        namespace = request.namespace or (scope.namespace if scope else "")
        checks.text_field(namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
        checks.text_field(request.prefix, "prefix", max_len=uris.MAX_PATH)
        if scope is not None and namespace != scope.namespace:
            raise PermissionDeniedError(
                f"namespace: a task of namespace '{scope.namespace}' may not list the files of '{namespace}'"
            )
        access.namespace(namespace)
        async with self._cp.transaction() as unit:
            files = await self._cp.storage.list_namespace(unit.conn, namespace, request.prefix)
        return storage_pb2.ListNamespaceFilesResponse(files=[file_to_proto(f) for f in files])

    @guarded
    async def DeleteFile(self, request: storage_pb2.DeleteFileRequest, context: grpc.aio.ServicerContext):
        scope = await self._scope(request.task_token, current=True)
        async with self._cp.transaction() as unit:
            try:
                file = await self._cp.storage.info(unit.conn, request.uri, scope)
            except NotFoundError:
                return storage_pb2.DeleteFileResponse(deleted=False)
            access.namespace(file.namespace)
            deleted = await self._cp.storage.delete(unit.conn, file)
        return storage_pb2.DeleteFileResponse(deleted=deleted)
