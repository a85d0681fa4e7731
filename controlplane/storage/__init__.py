"""Internal storage: the files passed between tasks, FILE inputs and task outputs.

- :mod:`.uris`: Kestra's ``kestra:///…`` URIs and their storage keys.
- :mod:`.backend`: where the bytes live (:class:`LocalStorage` under ``<data dir>/storage``).
- :mod:`.service`: file records, streaming upload/read, and who may reach which file.
- :mod:`.scope`: what a worker's task token lets it reach.

An S3-compatible backend is not built yet: :class:`StorageBackend` is the seam for it.
"""

from controlplane.storage.backend import CHUNK_SIZE, LocalStorage, StorageBackend
from controlplane.storage.service import InternalStorage, PermissionDeniedError, Scope, StoredFile

__all__ = ["CHUNK_SIZE", "InternalStorage", "LocalStorage", "PermissionDeniedError", "Scope", "StorageBackend",
           "StoredFile"]
