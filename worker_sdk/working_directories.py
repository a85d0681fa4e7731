"""The directories a worker keeps for Kestra's ``WorkingDirectory`` task.

The control plane sends every child task of one WorkingDirectory to the same worker, each
assignment naming its group (`WorkingDirectoryGroup`). The worker keeps one directory per group
id: created (with the group's ``inputFiles`` and ``namespaceFiles``) for the first child it runs,
used as ``ctx.working_dir`` by every child, and deleted when the last child succeeded (after its
``outputFiles`` were uploaded), when the control plane says the group ended (WorkerHeartbeat's
``ended_working_directory_ids``) or when the worker stops.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure

__all__ = ["WORKING_DIRECTORY_TYPE", "WorkingDirectories", "WorkingDirectoryGroup"]

#: Listed among a worker's task types: it can keep a directory across the children of a group.
WORKING_DIRECTORY_TYPE = "io.kestra.plugin.core.flow.WorkingDirectory"


@dataclass(frozen=True, slots=True)
class WorkingDirectoryGroup:
    """The WorkingDirectory an assignment belongs to (plain view of ``WorkingDirectoryGroup``).

    Attributes:
        id: The WorkingDirectory's task run id (the directory's key).
        input_files: ``inputFiles``: relative path -> text or ``kestra:///`` URI.
        namespace_files: ``namespaceFiles`` ({enabled, include, exclude}) or None.
        output_files: ``outputFiles`` globs, uploaded after the last child.
        last: This child is the group's last task.
    """

    id: str
    input_files: dict[str, Any] = field(default_factory=dict)
    namespace_files: dict[str, Any] | None = None
    output_files: tuple[str, ...] = ()
    last: bool = False

    @classmethod
    def from_proto(cls, msg: Any) -> WorkingDirectoryGroup:
        """From a ``kestrel.v1.WorkingDirectoryGroup`` message."""
        return cls(
            id=msg.id,
            input_files=json.loads(msg.input_files_json) if msg.input_files_json else {},
            namespace_files=json.loads(msg.namespace_files_json) if msg.namespace_files_json else None,
            output_files=tuple(msg.output_files),
            last=msg.last,
        )


class WorkingDirectories:
    """The group directories of one worker (used from its event loop only).

    Args:
        root: Where directories are created; default the system temporary directory.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._dirs: dict[str, Path] = {}

    def ids(self) -> list[str]:
        """Ids of the groups whose directory is kept."""
        return sorted(self._dirs)

    def path(self, group_id: str) -> Path | None:
        """The directory of a group, None when this worker does not keep one."""
        return self._dirs.get(group_id)

    async def open(self, group: WorkingDirectoryGroup, ctx: TaskContext) -> Path:
        """The group's directory, created and filled (``inputFiles``, ``namespaceFiles``) when
        this is the first child of the group on this worker. ``ctx`` is the child's context (its
        storage client downloads the files); its ``working_dir`` is not used.

        Raises:
            TaskFailure: a file could not be written or downloaded (the directory is removed, so
                a retry starts from scratch); the message names the WorkingDirectory property.
        """
        existing = self._dirs.get(group.id)
        if existing is not None and existing.is_dir():
            return existing
        path = Path(tempfile.mkdtemp(prefix="kestrel-wd-", dir=self._root))
        from worker_sdk.tasks.scripts import copy_namespace_files, write_input_files

        setup = _with_dir(ctx, path)
        try:
            await write_input_files(setup, group.input_files or None)
            await copy_namespace_files(setup, group.namespace_files)
        except TaskFailure as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise TaskFailure(f"WorkingDirectory: {exc.message}") from None
        self._dirs[group.id] = path
        return path

    async def upload_outputs(self, group: WorkingDirectoryGroup, ctx: TaskContext) -> dict[str, Any]:
        """Upload the files of the group's directory matching ``outputFiles``; returns the
        WorkingDirectory's outputs ``{"outputFiles": {path: uri}}`` ({} without ``outputFiles``).

        Raises:
            TaskFailure: a bad pattern or a refused upload.
        """
        path = self._dirs.get(group.id)
        if not group.output_files or path is None:
            return {}
        from worker_sdk.tasks.scripts import upload_output_files

        files = await upload_output_files(_with_dir(ctx, path), list(group.output_files), path / ".no-output-dir")
        return {"outputFiles": files}

    def remove(self, group_ids: list[str] | tuple[str, ...]) -> None:
        """Delete the directories of these groups (unknown ids are ignored)."""
        for group_id in group_ids:
            path = self._dirs.pop(group_id, None)
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Delete every directory (the worker stops)."""
        self.remove(list(self._dirs))


def _with_dir(ctx: TaskContext, path: Path) -> TaskContext:
    from dataclasses import replace

    return replace(ctx, working_dir=path)
