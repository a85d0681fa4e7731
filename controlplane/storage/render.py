"""What ``read()`` and ``kv()`` in expressions reach: the running control plane's storage and
a small synchronous database pool.

The executor renders synchronously inside the event loop, so these functions cannot await. They
use a separate synchronous SQLAlchemy engine (at most 2+2 connections, 2 s statement timeout)
for one indexed lookup each, and read at most :data:`READ_LIMIT` bytes from the local backend:
the loop is held for about a millisecond per call, never for an unbounded time.

:func:`install` is called by :class:`controlplane.server.ControlPlane` on start and
:func:`uninstall` on stop; with several control planes in one process (tests), the last one
started serves every render.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import UndefinedError
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from controlplane.errors import InvalidArgumentError, NotFoundError
from controlplane.expressions.engine import ENV
from controlplane.expressions.errors import EvaluationError
from controlplane.storage import uris
from controlplane.storage.service import InternalStorage, PermissionDeniedError, Scope

#: Largest file ``read()`` returns (bytes).
READ_LIMIT = 10 * 1024 * 1024

#: What ``{{ workingDir }}`` and ``{{ outputDir }}`` render to on the control plane, which cannot
#: know a worker's paths: the worker's script tasks replace these markers with the attempt's
#: working directory and its ``outputs`` folder (``worker_sdk.tasks.scripts``, same values).
WORKING_DIR_MARKER = "__KESTREL_WORKING_DIR__"
OUTPUT_DIR_MARKER = "__KESTREL_OUTPUT_DIR__"
ENV.globals.setdefault("workingDir", WORKING_DIR_MARKER)
ENV.globals.setdefault("outputDir", OUTPUT_DIR_MARKER)


@dataclass
class Lookups:
    """The services behind ``read()`` and ``kv()``."""

    engine: Engine
    storage: InternalStorage


_current: list[Lookups] = []


def install(database_url: str, storage: InternalStorage) -> Lookups:
    """Make ``read()``/``kv()`` use this storage and database; returns the handle for :func:`uninstall`."""
    engine = create_engine(
        database_url, pool_size=2, max_overflow=2, pool_pre_ping=True,
        connect_args={"options": "-c statement_timeout=2000", "connect_timeout": 5},
    )
    lookups = Lookups(engine, storage)
    _current.append(lookups)
    return lookups


def uninstall(lookups: Lookups) -> None:
    """Stop serving renders from ``lookups`` and close its pool."""
    if lookups in _current:
        _current.remove(lookups)
    lookups.engine.dispose()


def current(name: str) -> Lookups:
    """The installed services.

    Raises:
        EvaluationError: no control plane is running in this process (e.g. ``flow validate --local``).
    """
    if not _current:
        raise EvaluationError(f"The '{name}()' function needs a running control plane")
    return _current[-1]


def _scope(context: Mapping[str, Any], name: str) -> Scope:
    flow = context.get("flow") or {}
    execution = context.get("execution") or {}
    namespace = flow.get("namespace") if isinstance(flow, Mapping) else None
    if not isinstance(namespace, str) or not namespace:
        raise EvaluationError(f"The '{name}()' function needs a flow namespace in the context")
    execution_id = execution.get("id") if isinstance(execution, Mapping) else None
    task = context.get("task") or {}
    taskrun = context.get("taskrun") or {}
    return Scope(namespace, str(flow.get("id") or ""), str(execution_id or ""),
                 str(task.get("id") or "") if isinstance(task, Mapping) else "",
                 str(taskrun.get("id") or "") if isinstance(taskrun, Mapping) else "")


def read_file(context: Mapping[str, Any], path: Any) -> str:
    """``read(path)``: the text of an internal-storage file (``kestra:///`` URI) of this execution
    or namespace, or of a namespace file of the flow's namespace (any other path, e.g.
    ``scripts/query.sql``), as Kestra's ``read()``.

    Raises:
        EvaluationError: not a string, missing, of another namespace, over :data:`READ_LIMIT`
            bytes, or not UTF-8.
    """
    if not isinstance(path, str):
        raise EvaluationError("The 'read' function expects an argument 'path' with type string.")
    scope = _scope(context, "read")
    lookups = current("read")
    try:
        if not path.startswith("kestra://"):
            path = uris.namespace_file_uri(scope.namespace, path, "path")  # a namespace file (Kestra)
        return lookups.storage.read_text_sync(lookups.engine, path, scope, READ_LIMIT)
    except (InvalidArgumentError, NotFoundError, PermissionDeniedError) as exc:
        raise EvaluationError(f"read(): {exc}") from None


def kv_value(context: Mapping[str, Any], key: Any, namespace: Any = None, error_on_missing: Any = True) -> Any:
    """``kv(key, namespace, errorOnMissing=true)`` (Kestra ``KvFunction``): without a namespace,
    the flow's namespace then its ancestors; with one, only there (it must be the flow's
    namespace or an ancestor).

    Raises:
        EvaluationError: bad arguments, a namespace out of reach, or a missing key while
            ``errorOnMissing`` (Kestra's message).
    """
    from controlplane.kv import check_key, check_reach
    from controlplane.kv.store import get_entry_sync

    if not isinstance(key, str):
        raise EvaluationError("The 'kv' function expects an argument 'key'.")
    if namespace is not None and not isinstance(namespace, str):
        raise EvaluationError("The 'kv' function expects an optional argument 'namespace' with type string.")
    if not isinstance(error_on_missing, bool):
        raise EvaluationError("The 'kv' function expects an optional argument 'errorOnMissing' with type boolean.")
    scope = _scope(context, "kv")
    lookups = current("kv")
    try:
        check_key(key)
        target = namespace or scope.namespace
        check_reach(target, scope.namespace)
        entry = get_entry_sync(lookups.engine, target, key, inherit=namespace is None)
    except (InvalidArgumentError, PermissionDeniedError) as exc:
        raise EvaluationError(str(exc)) from None
    if entry is None:
        if error_on_missing:
            # An "undefined" error: like Kestra, `kv('k').x ?? 'fallback'` falls back on a missing
            # key, and a plain `kv('k')` fails with this message.
            raise UndefinedError(f"The key '{key}' does not exist in the namespace '{target}'.")
        return None
    return entry.value
