"""Kestra internal-storage URIs: ``kestra:///<namespace as path>/<flow>/executions/<id>/...``.

Kestra's layout (``StorageContext``): a namespace ``company.team`` is the folder
``company/team``; a task run's files are under
``<ns>/<flow>/executions/<execution>/tasks/<task id>/<task run id>/``; FILE inputs under
``<ns>/<flow>/executions/<execution>/inputs/<input id>/``. Kestrel uploads a FILE input before
its execution exists, so the ``<execution>`` segment of an input is an upload id.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from controlplane.errors import InvalidArgumentError

SCHEME = "kestra://"
MAX_URI = 2048
MAX_FILE_NAME = 255
MAX_PATH = 1024
_SEGMENT = re.compile(r"[^/\x00]+")
# Each dot-separated part starts with a letter or digit: `_files` (namespace files) stays reserved.
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9][a-z0-9_-]*)*")


def namespace_path(namespace: str) -> str:
    """``company.team`` -> ``company/team``.

    Raises:
        InvalidArgumentError: not a valid Kestra namespace (field ``namespace``).
    """
    if not _NAMESPACE.fullmatch(namespace or "") or ".." in namespace or namespace.endswith("."):
        raise InvalidArgumentError(f"namespace: not a valid namespace: {namespace!r}")
    return namespace.replace(".", "/")


def check_file_name(name: str, field: str = "file_name") -> str:
    """A file name, or a relative path of names (``out/data.csv``, as script ``outputFiles``
    keep): each segment non-empty, not ``.``/``..``, no NUL or backslash, at most 255 UTF-8 bytes;
    the whole at most 1024.

    Raises:
        InvalidArgumentError: naming ``field``.
    """
    if not name or "\x00" in name or "\\" in name or any(s in ("", ".", "..") for s in name.split("/")):
        raise InvalidArgumentError(f"{field}: not a valid file name: {name!r}")
    if len(name.encode()) > MAX_PATH:
        raise InvalidArgumentError(f"{field}: a file path has at most {MAX_PATH} bytes")
    if any(len(segment.encode()) > MAX_FILE_NAME for segment in name.split("/")):
        raise InvalidArgumentError(f"{field}: a file name has at most {MAX_FILE_NAME} bytes")
    return name


def _join(*segments: str) -> str:
    return SCHEME + "/" + "/".join(quote(s, safe="@=+,;:!$&'()*~-._") for s in segments)


def execution_prefix(namespace: str, flow_id: str, execution_id: str) -> str:
    """The URI folder of an execution, ending with ``/``."""
    return _join(*namespace_path(namespace).split("/"), flow_id, "executions", execution_id) + "/"


def task_file_uri(namespace: str, flow_id: str, execution_id: str, task_id: str, task_run_id: str,
                  file_name: str) -> str:
    """``kestra:///<ns>/<flow>/executions/<exec>/tasks/<task>/<taskrun>/<file>``."""
    check_file_name(file_name)
    return _join(*namespace_path(namespace).split("/"), flow_id, "executions", execution_id, "tasks", task_id,
                 task_run_id, *file_name.split("/"))


def input_file_uri(namespace: str, flow_id: str, upload_id: str, input_id: str, file_name: str) -> str:
    """``kestra:///<ns>/<flow>/executions/<upload id>/inputs/<input>/<file>`` (Kestra's input layout)."""
    check_file_name(file_name)
    if not input_id or "/" in input_id:
        raise InvalidArgumentError(f"input_id: not a valid input id: {input_id!r}")
    return _join(*namespace_path(namespace).split("/"), flow_id, "executions", upload_id, "inputs", input_id,
                 file_name)


def namespace_files_prefix(namespace: str) -> str:
    """``kestra:///<ns as path>/_files/`` (Kestra's namespace-file folder; a flow id cannot
    start with ``_``, so it never collides with a flow's folder)."""
    return _join(*namespace_path(namespace).split("/"), "_files") + "/"


def namespace_file_uri(namespace: str, path: str, field: str = "namespace_file") -> str:
    """``kestra:///<ns>/_files/<path>`` for a relative path (a leading ``/`` is dropped).

    Raises:
        InvalidArgumentError: a bad path (naming ``field``).
    """
    relative = path.lstrip("/")
    check_file_name(relative, field)
    return _join(*namespace_path(namespace).split("/"), "_files", *relative.split("/"))


def storage_key(uri: str, field: str = "uri") -> str:
    """The backend key of a URI: its decoded path without the leading ``/``
    (``company/team/flow/executions/…/file.txt``).

    Raises:
        InvalidArgumentError: not a ``kestra:///`` URI, too long, or a segment that is empty,
            ``.``/``..`` or holds NUL (naming ``field``).
    """
    if not isinstance(uri, str) or not uri.startswith(SCHEME + "/"):
        raise InvalidArgumentError(f"{field}: not a kestra:/// URI: {str(uri)[:200]!r}")
    if len(uri) > MAX_URI:
        raise InvalidArgumentError(f"{field}: a URI has at most {MAX_URI} characters")
    raw = uri[len(SCHEME) + 1:]
    segments = [unquote(s) for s in raw.split("/")]
    for segment in segments:
        if segment in ("", ".", "..") or not _SEGMENT.fullmatch(segment):
            raise InvalidArgumentError(f"{field}: invalid path segment {segment!r} in {uri[:200]!r}")
    return "/".join(segments)


def canonical_uri(uri: str, field: str = "uri") -> str:
    """The one spelling of a URI (segments decoded then re-encoded the way this module writes them).

    Raises:
        InvalidArgumentError: see :func:`storage_key`.
    """
    return _join(*storage_key(uri, field).split("/"))
