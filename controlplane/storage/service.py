"""Internal storage: file records in Postgres, bytes in a :class:`StorageBackend`, and who may
touch which file.

Rules (Kestra's ``InternalStorage`` URI guard, made explicit):

- A worker acts through a task token, which names one task run of one execution. It may write
  only into that task run's folder (``…/executions/<exec>/tasks/<task>/<taskrun>/``: the server
  builds the URI, the worker only names the file), and read, stat or delete only files of that
  execution or of the same namespace. A file of another namespace is refused
  (:class:`PermissionDeniedError`), so one namespace cannot read another's files by URI.
- A client (no token: CLI, dashboard, scripts) may read any file and upload FILE inputs.
- ``read()`` in an expression, rendered by the control plane for one execution, follows the
  worker rule for that execution.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane import errors
from controlplane.errors import InvalidArgumentError, NotFoundError
from controlplane.storage import uris
from controlplane.storage.backend import CHUNK_SIZE, StorageBackend, StorageNotFoundError
from controlplane.store import tables as t

#: Largest chunk accepted in one upload message.
MAX_UPLOAD_CHUNK = CHUNK_SIZE
_SHA256 = re.compile(r"[0-9a-f]{64}")


PermissionDeniedError = errors.PermissionDeniedError
"""The caller's task token (or API token) does not allow this file (PERMISSION_DENIED)."""


@dataclass(frozen=True)
class StoredFile:
    """One file of internal storage (sizes in bytes, sha256 as lower-case hex)."""

    uri: str
    namespace: str
    flow_id: str
    execution_id: str | None
    task_run_id: str | None
    size: int
    sha256: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class Scope:
    """What a task token lets a worker reach: its execution, task run and namespace."""

    namespace: str
    flow_id: str
    execution_id: str
    task_id: str
    task_run_id: str


def _stored(row) -> StoredFile:
    return StoredFile(row.uri, row.namespace, row.flow_id, row.execution_id, row.task_run_id, row.size, row.sha256,
                      row.created_at)


def allowed(file: StoredFile, scope: Scope | None) -> bool:
    """True when ``scope`` (None = a client) may read or delete ``file``."""
    if scope is None:
        return True
    return file.execution_id == scope.execution_id or file.namespace == scope.namespace


class InternalStorage:
    """Internal storage of one control plane.

    Args:
        backend: Where the bytes go.
    """

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    async def upload(
        self,
        conn_factory,
        uri: str,
        owner: tuple[str, str, str | None, str | None],
        chunks: AsyncIterator[bytes],
        expected_sha256: str = "",
        max_bytes: int | None = None,
        too_large: str = "",
    ) -> StoredFile:
        """Stream ``chunks`` into ``uri`` and record the file once complete.

        Args:
            conn_factory: ``async with conn_factory() as conn`` gives a transaction (used only
                after the bytes are stored, so no transaction stays open during the upload).
            uri: The canonical URI to write.
            owner: (namespace, flow id, execution id or None, task run id or None).
            chunks: The content; each chunk at most :data:`MAX_UPLOAD_CHUNK` bytes.
            expected_sha256: Optional checksum the content must have.
            max_bytes: Most bytes accepted (None = no limit); the upload stops at the first
                chunk past it.
            too_large: The refusal's message; ``{limit}`` in it becomes the limit (``1024 bytes``).

        Raises:
            InvalidArgumentError: a chunk too large, a checksum mismatch or more than
                ``max_bytes`` bytes (nothing is stored; an existing file stays as it was).
        """
        if expected_sha256 and not _SHA256.fullmatch(expected_sha256):
            raise InvalidArgumentError("expected_sha256: must be 64 lower-case hex digits")
        key = uris.storage_key(uri)
        digest = hashlib.sha256()
        size = 0
        writer = self.backend.writer(key)
        try:
            async for chunk in chunks:
                if len(chunk) > MAX_UPLOAD_CHUNK:
                    raise InvalidArgumentError(f"chunk: at most {MAX_UPLOAD_CHUNK} bytes per chunk, got {len(chunk)}")
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    limit = f"{max_bytes} bytes" + (f" = {_mib(max_bytes)}" if max_bytes >= 1024 * 1024 else "")
                    raise InvalidArgumentError(
                        (too_large or "the file is larger than the limit ({limit}); nothing was stored")
                        .replace("{limit}", limit)
                    )
                # Hash in a thread (hashlib releases the GIL) while the backend writes: the event
                # loop never spends the hashing time itself.
                await asyncio.gather(asyncio.to_thread(digest.update, chunk), writer.write(chunk))
            sha = digest.hexdigest()
            if expected_sha256 and sha != expected_sha256:
                raise InvalidArgumentError(
                    f"expected_sha256: the content's sha256 is {sha}, not {expected_sha256}; nothing was stored"
                )
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        namespace, flow_id, execution_id, task_run_id = owner
        values = {"uri": uri, "namespace": namespace, "flow_id": flow_id, "execution_id": execution_id,
                  "task_run_id": task_run_id, "size": size, "sha256": sha}
        async with conn_factory() as conn:
            stmt = insert(t.storage_files).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["uri"],
                set_={k: stmt.excluded[k] for k in ("size", "sha256", "task_run_id", "created_at")},
            ).returning(t.storage_files)
            row = (await conn.execute(stmt)).first()
        return _stored(row)

    @staticmethod
    async def info(conn: AsyncConnection, uri: str, scope: Scope | None) -> StoredFile:
        """The record of ``uri``.

        Raises:
            InvalidArgumentError: a malformed URI. NotFoundError: no such file.
            PermissionDeniedError: ``scope`` may not read it.
        """
        canonical = uris.canonical_uri(uri)
        row = (await conn.execute(select(t.storage_files).where(t.storage_files.c.uri == canonical))).first()
        if row is None:
            raise NotFoundError(f"file '{uri}' not found in internal storage")
        file = _stored(row)
        if not allowed(file, scope):
            raise PermissionDeniedError(
                f"file '{uri}' belongs to namespace '{file.namespace}': a task of namespace "
                f"'{scope.namespace if scope else ''}' may not read it"
            )
        return file

    def read(self, file: StoredFile) -> AsyncIterator[bytes]:
        """The bytes of a recorded file, in chunks of at most 1 MiB.

        Raises:
            NotFoundError: recorded but missing from the backend (on first iteration).
        """

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in self.backend.read(uris.storage_key(file.uri)):
                    yield chunk
            except StorageNotFoundError:
                raise NotFoundError(f"file '{file.uri}' is recorded but its content is missing") from None

        return chunks()

    @staticmethod
    async def list_execution(conn: AsyncConnection, execution_id: str) -> list[StoredFile]:
        """Every file written by an execution's task runs, ordered by URI."""
        rows = await conn.execute(
            select(t.storage_files).where(t.storage_files.c.execution_id == execution_id).order_by(t.storage_files.c.uri)
        )
        return [_stored(r) for r in rows]

    @staticmethod
    async def list_namespace(conn: AsyncConnection, namespace: str, prefix: str = "") -> list[StoredFile]:
        """The namespace files of ``namespace`` whose path starts with ``prefix``, ordered by URI.

        Raises:
            InvalidArgumentError: a bad namespace or prefix.
        """
        start = uris.namespace_files_prefix(namespace)
        if prefix:
            start = uris.namespace_file_uri(namespace, prefix.rstrip("/") or "x", "prefix")
            if prefix.endswith("/"):
                start += "/"
        rows = await conn.execute(
            select(t.storage_files)
            .where(t.storage_files.c.namespace == namespace, t.storage_files.c.uri.startswith(start, autoescape=True))
            .order_by(t.storage_files.c.uri)
        )
        return [_stored(r) for r in rows]

    async def delete(self, conn: AsyncConnection, file: StoredFile) -> bool:
        """Delete a file's record and bytes; False when the record was already gone."""
        result = await conn.execute(delete(t.storage_files).where(t.storage_files.c.uri == file.uri))
        await self.backend.delete(uris.storage_key(file.uri))
        return bool(result.rowcount)

    def read_text_sync(self, sync_engine: Engine, uri: str, scope: Scope, limit: int) -> str:
        """A file's content as UTF-8 text, synchronously (for ``read()`` in expressions).

        Raises:
            InvalidArgumentError: a bad URI, a file over ``limit`` bytes, or not UTF-8.
            NotFoundError / PermissionDeniedError: as :meth:`info`.
        """
        canonical = uris.canonical_uri(uri)
        with sync_engine.connect() as conn:
            row = conn.execute(select(t.storage_files).where(t.storage_files.c.uri == canonical)).first()
        if row is None:
            raise NotFoundError(f"file '{uri}' not found in internal storage")
        file = _stored(row)
        if not allowed(file, scope):
            raise PermissionDeniedError(
                f"file '{uri}' belongs to namespace '{file.namespace}', not '{scope.namespace}': access refused"
            )
        if file.size > limit:
            raise InvalidArgumentError(f"file '{uri}' is {file.size} bytes; read() reads at most {limit} bytes")
        try:
            data = self.backend.read_prefix_sync(uris.storage_key(canonical), limit)
        except StorageNotFoundError:
            raise NotFoundError(f"file '{uri}' is recorded but its content is missing") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"file '{uri}' is not UTF-8 text") from None


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def new_upload_id() -> str:
    """The ``<execution>`` segment of a FILE input uploaded before its execution exists."""
    return "upload-" + uuid.uuid4().hex[:16]
