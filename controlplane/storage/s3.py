"""An S3-compatible storage backend (AWS S3, MinIO, Ceph…) on boto3.

Objects are ``<prefix><key>`` in one bucket. Writes are multipart uploads of
:data:`PART_SIZE`-byte parts (S3's minimum is 5 MiB), so at most one part is held in memory
whatever the file size; a file smaller than one part is a single ``PutObject``. Nothing is
visible until the upload completes (S3 shows a multipart object only once completed), and an
aborted upload is discarded. boto3 is synchronous: every call runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from controlplane.storage.backend import CHUNK_SIZE, StorageBackend, StorageNotFoundError, Writer

#: Bytes per multipart part (S3 requires >= 5 MiB for every part but the last).
PART_SIZE = 8 * 1024 * 1024


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("NoSuchKey", "404", "NotFound")


class S3Storage(StorageBackend):
    """Internal storage in an S3 bucket.

    Args:
        bucket: Bucket name (must exist).
        prefix: Prepended to every key (e.g. ``kestrel/``).
        client: A boto3 S3 client; default one built from ``endpoint_url``/``region`` and the
            usual AWS credential chain (environment, profile, instance role).
        endpoint_url: For S3-compatible servers (``http://minio:9000``).
        region: AWS region.
    """

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, endpoint_url: str | None = None,
                 region: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + key

    def writer(self, key: str) -> Writer:
        return _S3Writer(self, self._key(key))

    async def read(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:  # type: ignore[override]
        try:
            response = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _missing(exc):
                raise StorageNotFoundError(key) from None
            raise
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    def read_prefix_sync(self, key: str, limit: int) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{limit}")
        except Exception as exc:
            if _missing(exc):
                raise StorageNotFoundError(key) from None
            raise
        with response["Body"] as body:
            return body.read(limit + 1)

    async def delete(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _missing(exc):
                return False
            raise
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))
        return True


class _S3Writer(Writer):
    def __init__(self, storage: S3Storage, key: str) -> None:
        self._s3 = storage
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def _flush_part(self, data: bytes) -> None:
        client, bucket = self._s3.client, self._s3.bucket
        if self._upload_id is None:
            created = await asyncio.to_thread(client.create_multipart_upload, Bucket=bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        part = await asyncio.to_thread(client.upload_part, Bucket=bucket, Key=self._key, UploadId=self._upload_id,
                                       PartNumber=number, Body=data)
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= PART_SIZE:
            data = bytes(self._buffer[:PART_SIZE])
            del self._buffer[:PART_SIZE]
            await self._flush_part(data)

    async def commit(self) -> None:
        client, bucket = self._s3.client, self._s3.bucket
        if self._upload_id is None:
            await asyncio.to_thread(client.put_object, Bucket=bucket, Key=self._key, Body=bytes(self._buffer))
            return
        if self._buffer:
            await self._flush_part(bytes(self._buffer))
            self._buffer.clear()
        await asyncio.to_thread(client.complete_multipart_upload, Bucket=bucket, Key=self._key,
                                UploadId=self._upload_id, MultipartUpload={"Parts": self._parts})

    async def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            await asyncio.to_thread(self._s3.client.abort_multipart_upload, Bucket=self._s3.bucket, Key=self._key,
                                    UploadId=self._upload_id)
            self._upload_id = None
