"""The variables an expression sees when the executor renders a task's properties.

Names follow Kestra's predefined variables (FEATURES.md §11): ``flow``, ``execution``,
``inputs``, ``vars``, ``outputs`` (nested by loop values, §9), ``labels``, ``task``, ``taskrun``
(``taskrun.value`` = the loop value), ``parent``/``parents``, ``envs``, ``globals``.
"""

from __future__ import annotations

import os
from typing import Any

from controlplane.engine.flowables.loop import stored_values
from controlplane.engine.view import ExecutionView
from controlplane.flows.inputs import format_datetime, with_secrets_decrypted
from controlplane.model import Execution, Flow, Task, TaskRun


def _iso(value: Any) -> str | None:
    """A date as Kestra prints one: its state dates are instants truncated to milliseconds,
    printed by Java's ``Instant.toString`` (UTC, ``Z``, ``.mmm`` unless the millis are 0)."""
    if value is None:
        return None
    return format_datetime(value.replace(microsecond=value.microsecond // 1000 * 1000))


def nest_dotted(flat: dict[str, str]) -> dict[str, Any]:
    """Labels as expressions see them: ``{"system.correlationId": x}`` also reachable as
    ``labels.system.correlationId`` (Kestra nests dotted keys); the flat keys stay too, unless a
    flat key would hide a nested map."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.setdefault(parts[-1], value)
    for key, value in flat.items():
        nested.setdefault(key, value)
    return nested


def _envs() -> dict[str, str]:
    """Kestra's ``envs``: environment variables prefixed ``KESTRA_``, without the prefix, lower-cased."""
    return {k[len("KESTRA_"):].lower(): v for k, v in os.environ.items() if k.startswith("KESTRA_")}


def _loop_path(view: ExecutionView, tr: TaskRun) -> list[str]:
    """Loop values of the task runs ``tr`` runs under, outermost first (the values Kestra's
    ``Execution.outputs()`` nests by)."""
    values = [p.value for p in view.ancestors(tr) if p.value is not None]
    values.reverse()
    return values


def _compute_outputs(view: ExecutionView) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for tr in view.all:
        if tr.outputs is None:
            continue
        path = _loop_path(view, tr)
        if tr.value is not None:
            path.append(tr.value)
        if not path:
            outputs[tr.task_id] = tr.outputs
            continue
        node = outputs.get(tr.task_id)
        if not isinstance(node, dict):
            node = outputs[tr.task_id] = {}
        for value in path[:-1]:
            child = node.get(value)
            if not isinstance(child, dict):
                child = node[value] = {}
            node = child
        node[path[-1]] = tr.outputs
    return outputs


def outputs_of(view: ExecutionView) -> dict[str, Any]:
    """``outputs``: task id -> outputs of its task run, as Kestra's ``Execution.outputs()``.

    A task run inside loops is nested under the loop values of its enclosing task runs,
    outermost first, then its own value: ``outputs.t['s1']['a a']`` for ``t`` run for value
    ``a a`` of an inner loop inside iteration ``s1`` of an outer one. Outside loops the latest
    task run's outputs win. Cached on the view (:meth:`ExecutionView.memo`).
    """
    return view.memo("outputs", lambda: _compute_outputs(view))


def parents_of(view: ExecutionView, task_run: TaskRun) -> list[dict[str, Any]]:
    """``parents``: the enclosing task runs that have a loop value or outputs, closest first,
    each ``{"taskrun": {"value": v}, "outputs": {...}}`` with only the keys that apply (Kestra's
    ``Execution.parents``). ``parent`` is the first of them."""
    found: list[dict[str, Any]] = []
    for parent in view.ancestors(task_run):
        entry: dict[str, Any] = {}
        if parent.value is not None:
            entry["taskrun"] = {"value": parent.value}
        if parent.outputs is not None:
            entry["outputs"] = parent.outputs
        if entry:
            found.append(entry)
    return found


def _working_directory_of(view: ExecutionView, task_run: TaskRun) -> TaskRun | None:
    """``workerTaskrun``: inside a WorkingDirectory, that WorkingDirectory's task run (Kestra's
    "worker taskrun of the group"), else None."""
    if task_run.parent_id is None or task_run.branch != "tasks":
        return None
    try:
        parent = view.get(task_run.parent_id)
    except KeyError:
        return None
    return parent if parent.task_type == "io.kestra.plugin.core.flow.WorkingDirectory" else None


def _iteration(view: ExecutionView, task_run: TaskRun) -> int | None:
    """``taskrun.iteration`` inside a loop: the 0-based position of the task run's value among
    the values its loop stored when it started (Kestra's ForEach/Each* iteration); for a
    WaitFor child, its round (1, 2, ...)."""
    if task_run.iteration:
        return task_run.iteration
    if task_run.value is None or task_run.parent_id is None:
        return None
    try:
        parent = view.get(task_run.parent_id)
    except KeyError:
        return None
    values = stored_values(parent.properties)
    return values.index(task_run.value) if task_run.value in values else None


def expression_context(
    flow: Flow,
    execution: Execution,
    view: ExecutionView,
    task: Task | None = None,
    task_run: TaskRun | None = None,
    globals_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the variables for rendering ``task``'s properties (or the flow's outputs).

    Returns:
        A dict of plain JSON-like values; nothing in it exposes Python objects with methods.
    """
    ctx: dict[str, Any] = {
        "flow": {"id": flow.id, "namespace": flow.namespace, "revision": flow.revision},
        "execution": {
            "id": execution.id,
            "startDate": _iso(execution.started_at or execution.created_at),
            "originalId": execution.original_id or execution.id,
            "state": execution.state.value,
        },
        "inputs": with_secrets_decrypted(flow, execution.inputs),
        "vars": dict(flow.variables),
        "outputs": outputs_of(view),
        "labels": nest_dotted(execution.labels),
        "envs": view.memo("envs", _envs),
        "globals": dict(globals_ or {}),
    }
    trigger = execution.trigger.get("variables") if isinstance(execution.trigger, dict) else None
    if isinstance(trigger, dict):  # set by the scheduler: Kestra's trigger.date, trigger.executionId…
        ctx["trigger"] = dict(trigger)
    if task is not None:
        ctx["task"] = {"id": task.id, "type": task.type}
    if task_run is not None:
        ctx["taskrun"] = {
            "id": task_run.id,
            "startDate": _iso(task_run.created_at),
            "attemptsCount": max(task_run.attempt - 1, 0),
            "parentId": task_run.parent_id,
            "value": task_run.value,
        }
        iteration = _iteration(view, task_run)
        if iteration is not None:
            ctx["taskrun"]["iteration"] = iteration
        parents = parents_of(view, task_run)
        ctx["parents"] = parents
        if parents:
            ctx["parent"] = parents[0]
        group = _working_directory_of(view, task_run)
        if group is not None:
            ctx["workerTaskrun"] = {"id": group.id, "value": group.value, "parentId": group.parent_id,
                                    "startDate": _iso(group.created_at)}
    return ctx
