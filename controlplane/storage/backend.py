"""Storage backends: where internal-storage bytes live, behind one interface.

Keys are relative paths (``company/team/flow/executions/…/file.txt``, see
:func:`controlplane.storage.uris.storage_key`). Writes are all-or-nothing: a writer stages the
bytes and :meth:`Writer.commit` makes them visible at once, so a reader never sees half a file.
Reads stream in chunks: memory stays constant whatever the file size.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

#: Bytes per chunk read from a backend (and per gRPC message; well under gRPC's 4 MiB limit).
CHUNK_SIZE = 1024 * 1024


class StorageNotFoundError(FileNotFoundError):
    """No object under that key."""


class Writer(abc.ABC):
    """One staged write. ``await write(chunk)`` any number of times, then ``commit()`` or ``abort()``."""

    @abc.abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Append bytes to the staged object."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Make the object visible under its key (replacing any previous one)."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Drop the staged bytes; the key keeps what it had."""


class StorageBackend(abc.ABC):
    """Where the bytes of internal storage live (local disk today; S3-compatible later)."""

    @abc.abstractmethod
    def writer(self, key: str) -> Writer:
        """A staged writer for ``key``."""

    @abc.abstractmethod
    def read(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The object's bytes, in chunks of at most ``chunk_size``.

        Raises:
            StorageNotFoundError: no such object (raised on the first iteration).
        """

    @abc.abstractmethod
    def read_prefix_sync(self, key: str, limit: int) -> bytes:
        """Up to ``limit + 1`` bytes of the object, synchronously (for ``read()`` in expressions,
        which run synchronously; the caller refuses a file over ``limit``).

        Raises:
            StorageNotFoundError: no such object.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete one object; False when there was none."""


class LocalStorage(StorageBackend):
    """Files under a root directory (``Settings.data_dir``; ``kestrel server local`` gives ``<data dir>/storage``); staging files in ``<root>/.staging``
    are renamed into place on commit (atomic on one filesystem). Disk I/O runs in threads so the
    event loop never waits on the disk.

    Args:
        root: The directory; created if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._staging = self.root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        """The file of ``key``; refuses any key that would leave the root."""
        path = (self.root / key).resolve()
        if self.root not in path.parents or path.is_relative_to(self._staging):
            raise ValueError(f"storage key outside the storage root: {key!r}")
        return path

    def writer(self, key: str) -> Writer:
        return _LocalWriter(self.path_of(key), self._staging / uuid.uuid4().hex)

    async def read(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:  # type: ignore[override]
        path = self.path_of(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageNotFoundError(key) from None
        try:
            while True:
                chunk = await asyncio.to_thread(handle.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            handle.close()

    def read_prefix_sync(self, key: str, limit: int) -> bytes:
        try:
            with open(self.path_of(key), "rb") as handle:
                return handle.read(limit + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageNotFoundError(key) from None

    async def delete(self, key: str) -> bool:
        path = self.path_of(key)

        def remove() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(remove)


class _LocalWriter(Writer):
    def __init__(self, target: Path, staging: Path) -> None:
        self._target = target
        self._staging = staging
        self._handle = None

    async def write(self, chunk: bytes) -> None:
        if self._handle is None:
            self._handle = await asyncio.to_thread(open, self._staging, "wb")
        await asyncio.to_thread(self._handle.write, chunk)

    async def commit(self) -> None:
        def finish() -> None:
            if self._handle is None:
                self._staging.write_bytes(b"")
            else:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
            self._target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._staging, self._target)

        await asyncio.to_thread(finish)

    async def abort(self) -> None:
        def drop() -> None:
            if self._handle is not None:
                self._handle.close()
            with contextlib.suppress(FileNotFoundError):
                self._staging.unlink()

        await asyncio.to_thread(drop)


def remove_tree(root: Path) -> None:
    """Delete a local storage root (tests)."""
    shutil.rmtree(root, ignore_errors=True)
