"""``io.kestra.plugin.core.flow.WorkingDirectory`` (aliases ``io.kestra.core.tasks.flows.WorkingDirectory``
and ``…flows.Worker``): run ``tasks`` one after another on ONE worker, in one directory.

As Kestra's ``WorkingDirectory``:

- the children (runnable tasks only, checked at registration) run in order like a Sequential,
  each as a task run of its own with its own outputs; a file one child writes in its working
  directory is there for the next one;
- ``inputFiles`` (map path -> content or ``kestra:///`` URI, rendered when the WorkingDirectory
  starts) and ``namespaceFiles`` ({enabled, include, exclude}) are put into the directory before
  the first child runs;
- ``outputFiles`` (globs): once the last child succeeded, the matching files are uploaded to
  internal storage and the WorkingDirectory's outputs are ``{"outputFiles": {path: uri}}``;
- ``errors`` and ``finally`` run like a Sequential's, outside the directory (as in Kestra, where
  the executor runs them after the worker gave the group back).

The affinity: every main child carries the WorkingDirectory's task run id as its group
(``controlplane.store.working_directories``). The first child claimed pins the group to the
claiming worker (which must run every child type and keep directories); later children are
offered to that worker only. When that worker is lost (lease expired, shut down, or gone while a
child waits for it), the group starts again from its first child on another worker, in a fresh
directory, as Kestra re-submits the whole WorkingDirectory; after ``max_redeliveries`` restarts
the child fails with a message saying so (``controlplane.engine.groups``).

Not supported: ``cache`` (accepted, with a warning at registration).
"""

from __future__ import annotations

import json
from typing import Any

from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.model import Task, TaskRun

TYPE = "io.kestra.plugin.core.flow.WorkingDirectory"


def _map(task: Task, value: Any, prop: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise FlowableError(f"task '{task.id}': property '{prop}' must be a map (or its JSON text)") from None
    if not isinstance(value, dict):
        raise FlowableError(f"task '{task.id}': property '{prop}' must be a map, got {type(value).__name__}")
    return value


def _globs(task: Task, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FlowableError(f"task '{task.id}': property 'outputFiles' must be a list of glob patterns")
    return list(value)


def prepare(task: Task, render: Renderer) -> Prepared:
    """Render what the worker needs to set the directory up, and describe the group.

    Returns:
        ``properties``: ``{"inputFiles": {path: text|uri}, "outputFiles": [glob],
        "namespaceFiles": {...}|None, "tasks": [main child ids in order, disabled ones left
        out], "taskTypes": [child types + WorkingDirectory]}``; the store adds ``workerId`` when
        the group is pinned and ``restarts`` when it started again.

    Raises:
        FlowableError: ``inputFiles`` or ``namespaceFiles`` not a map, ``outputFiles`` not a
            list of strings (message names task and property).
    """
    props = task.properties
    input_files = {str(k): v for k, v in _map(task, render(props.get("inputFiles"), "inputFiles"), "inputFiles").items()}
    output_files = _globs(task, render(props.get("outputFiles"), "outputFiles"))
    namespace_files = props.get("namespaceFiles")
    if namespace_files is not None:
        namespace_files = _map(task, render(namespace_files, "namespaceFiles"), "namespaceFiles")
    children = [child for child in task.tasks if not child.disabled]
    return Prepared(properties={
        "inputFiles": input_files,
        "outputFiles": output_files,
        "namespaceFiles": namespace_files,
        "tasks": [child.id for child in children],
        "taskTypes": sorted({child.type for child in children} | {TYPE}),
    })


def is_group_child(parent: TaskRun | None, branch: str) -> bool:
    """True when a task run created under ``parent`` in ``branch`` runs in the parent's directory."""
    return parent is not None and parent.task_type == TYPE and branch == "tasks"


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Next child, or the final state (as a Sequential, see ``engine.sequence``)."""
    return sequence_step(view, task_run.id, task.tasks, task.errors, task.finally_, killed=killed)
