"""``io.kestra.plugin.core.namespace.{UploadFiles,DownloadFiles,DeleteFiles}``: namespace files
(``kestra:///<namespace>/_files/<path>``) through the task's token.

Kestra reference: ``io.kestra.plugin.core.namespace.*`` (FEATURES.md §3). A task reaches only
its own flow's namespace: naming another one in ``namespace`` fails the task run. Globs are
``fnmatch`` patterns on the file's path (``*`` also matches ``/``; ``**`` works the same).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import string_list, to_text
from worker_sdk.tasks.scripts import _describe, namespace_file_path

_CORE = "io.kestra.plugin.core.namespace."


def _own_namespace(ctx: TaskContext, props: Mapping[str, Any]) -> None:
    namespace = props.get("namespace")
    if namespace is not None and to_text(namespace) != ctx.namespace:
        raise TaskFailure(f"property 'namespace': a task of namespace '{ctx.namespace}' may only reach its own "
                          f"namespace files, not those of '{namespace}'")
    if ctx.storage is None:
        raise TaskFailure("namespace files are only reachable on a worker")


def _globs(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip().startswith("["):
        value = json.loads(value)
    return string_list(value, "files")


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch("/" + path, p) for p in patterns)


def _join(destination: str, name: str) -> str:
    return str(PurePosixPath(destination.strip("/") or ".") / name).lstrip("./") or name


async def upload_files(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``UploadFiles``: ``files`` either a map of namespace path → ``kestra:///`` URI (or text
    content), or glob patterns of files in the working directory; ``destination`` (folder,
    default ``/``); ``conflict`` OVERWRITE (default), ERROR or SKIP. Output ``files``:
    namespace path → URI."""
    _own_namespace(ctx, props)
    files = props.get("files")
    if files is None:
        raise TaskFailure("property 'files' is required")
    conflict = to_text(props.get("conflict") or "OVERWRITE").upper()
    if conflict not in ("OVERWRITE", "ERROR", "SKIP"):
        raise TaskFailure(f"property 'conflict' must be OVERWRITE, ERROR or SKIP, got {conflict!r}")
    destination = to_text(props.get("destination") or "/")
    sources: dict[str, Any] = {}
    if isinstance(files, Mapping):
        for path, source in files.items():
            local = ctx.working_dir / "upload" / str(len(sources))
            local.parent.mkdir(parents=True, exist_ok=True)
            text = to_text(source)
            if text.startswith("kestra:///"):
                try:
                    await ctx.storage.download(text, local)
                except Exception as exc:
                    raise TaskFailure(f"files '{path}': cannot read {text}: {_describe(exc)}") from None
            else:
                local.write_text(text, encoding="utf-8")
            sources[str(path).lstrip("/")] = local
    else:
        patterns = _globs(files)
        for local in sorted(p for p in ctx.working_dir.rglob("*") if p.is_file()):
            relative = local.relative_to(ctx.working_dir).as_posix()
            if _matches(relative, patterns):
                sources[_join(destination, relative)] = local
    existing = {namespace_file_path(ctx.namespace, f.uri) for f in await ctx.storage.list_namespace_files()}
    uploaded: dict[str, str] = {}
    for path, local in sources.items():
        if path in existing and conflict == "ERROR":
            raise TaskFailure(f"namespace file '{path}' already exists and conflict is ERROR")
        if path in existing and conflict == "SKIP":
            continue
        try:
            uploaded[path] = await ctx.storage.upload_namespace_file(local, path)
        except Exception as exc:
            raise TaskFailure(f"cannot upload namespace file '{path}': {_describe(exc)}") from None
    return {"files": uploaded}


async def download_files(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``DownloadFiles``: ``files`` glob patterns of namespace paths; each match is copied into
    this execution's storage. Output ``files``: namespace path → URI of the copy."""
    _own_namespace(ctx, props)
    patterns = _globs(props.get("files") if props.get("files") is not None else "*")
    out: dict[str, str] = {}
    for info in await ctx.storage.list_namespace_files():
        path = namespace_file_path(ctx.namespace, info.uri)
        if not _matches(path, patterns):
            continue
        local = ctx.working_dir / path
        try:
            await ctx.storage.download(info.uri, local)
            out[path] = await ctx.storage.upload(local, path)
        except Exception as exc:
            raise TaskFailure(f"cannot copy namespace file '{path}': {_describe(exc)}") from None
    return {"files": out}


async def delete_files(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``DeleteFiles``: ``files`` glob patterns of namespace paths to delete. Output ``files``:
    the deleted paths."""
    _own_namespace(ctx, props)
    if props.get("files") is None:
        raise TaskFailure("property 'files' is required")
    patterns = _globs(props["files"])
    deleted = []
    for info in await ctx.storage.list_namespace_files():
        path = namespace_file_path(ctx.namespace, info.uri)
        if _matches(path, patterns) and await ctx.storage.delete(info.uri):
            deleted.append(path)
    return {"files": deleted}


TASKS = {
    _CORE + "UploadFiles": upload_files,
    _CORE + "DownloadFiles": download_files,
    _CORE + "DeleteFiles": delete_files,
}
"""Type name → task function for the namespace-file tasks."""
