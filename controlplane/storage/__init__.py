"""Internal storage: the files passed between tasks, FILE inputs and task outputs.

- :mod:`.uris`: Kestra's ``kestra:///…`` URIs and their storage keys.
- :mod:`.backend`: where the bytes live (:class:`LocalStorage` under ``<data dir>/storage``).
- :mod:`.service`: file records, streaming upload/read, and who may reach which file.
- :mod:`.scope`: what a worker's task token lets it reach.

Backends: :class:`LocalStorage` (default) and :class:`controlplane.storage.s3.S3Storage`
(``storage_backend=s3``), chosen by :func:`backend_from_settings`.
"""

from pathlib import Path
from typing import Any

from controlplane.storage.backend import CHUNK_SIZE, LocalStorage, StorageBackend
from controlplane.storage.service import InternalStorage, PermissionDeniedError, Scope, StoredFile


def backend_from_settings(settings: Any) -> StorageBackend:
    """The backend the settings name: ``local`` under ``data_dir`` (``kestrel server local``
    passes ``<data dir>/storage``), or ``s3`` in ``s3_bucket`` (boto3; credentials from the
    AWS chain).

    Raises:
        ValueError: ``s3`` without a bucket.
    """
    if settings.storage_backend == "s3":
        if not settings.s3_bucket:
            raise ValueError("storage_backend=s3 needs s3_bucket (KESTREL_S3_BUCKET)")
        from controlplane.storage.s3 import S3Storage

        return S3Storage(settings.s3_bucket, settings.s3_prefix, endpoint_url=settings.s3_endpoint_url or None,
                         region=settings.s3_region or None)
    return LocalStorage(Path(settings.data_dir))


__all__ = ["CHUNK_SIZE", "InternalStorage", "LocalStorage", "PermissionDeniedError", "Scope", "StorageBackend",
           "StoredFile", "backend_from_settings"]
