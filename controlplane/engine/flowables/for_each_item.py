"""``io.kestra.plugin.core.flow.ForEachItem`` and its hidden ``_items`` / ``_merge`` tasks: the
pure decisions (the I/O is in :mod:`controlplane.engine.for_each_item_runs`).

As Kestra's ``ForEachItem`` (FEATURES.md §3.1): the parser expands the task into
``<id>_split`` → ``<id>_items`` → ``<id>_merge`` (:mod:`controlplane.flows.for_each_item`),
run one after another like a Sequential with the ForEachItem's ``errors``/``finally``:

- ``_split`` runs on a worker: it streams ``items`` into batch files (``batch.rows``, ``bytes``
  or ``partitions``, ``separator``), so a large file never passes through the control plane.
- ``_items`` starts one execution of ``namespace``/``flowId`` per batch, with ``inputs``
  rendered per batch (``{{ taskrun.items }}`` = the batch file's URI, ``{{ taskrun.iteration }}``
  its 1-based number). With ``wait`` (default true) it ends when every child has ended: FAILED
  when one failed or was killed and ``transmitFailed`` (default true), WARNING when one ended
  WARNING, else SUCCESS. Without ``wait`` it ends SUCCESS once every child exists. Outputs
  ``numberOfBatches`` and ``iterations`` (child counts by state; ``CREATED`` counts the batches
  not started yet); none for an empty ``items`` file.
- ``_merge``: with ``wait``, output ``subflowOutputs``, a file of one JSON line per child
  execution that has flow outputs, in batch order.

``allowFailure``/``allowWarning`` on the ForEachItem apply to its own final state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from controlplane.engine.flowables.props import as_text, is_truthy
from controlplane.engine.flowables.subflow import _labels
from controlplane.engine.plan import FlowableError, Prepared, Renderer, Step
from controlplane.engine.sequence import sequence_step
from controlplane.engine.view import ExecutionView
from controlplane.flows.for_each_item import BATCH_KEYS, ITEMS_TYPE, MERGE_TYPE, TYPE
from controlplane.model import State, Task, TaskRun

__all__ = ["ITEMS_TYPE", "MERGE_TYPE", "TYPE", "items_final_state", "iterations", "parse_batch", "prepare",
           "prepare_items", "step", "step_items", "step_merge"]

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _flag(value: Any, default: bool) -> bool:
    return default if value is None else is_truthy(value)


def _positive(value: Any, where: str) -> int:
    text = as_text(value)
    if isinstance(value, bool) or text is None or not text.strip().lstrip("+").isdigit() or int(text) < 1:
        raise FlowableError(f"{where} must be an integer >= 1, got {value!r}")
    return int(text)


def parse_batch(raw: Any, task_id: str) -> dict[str, Any]:
    """Kestra's ``ForEachItem.Batch`` after rendering.

    Args:
        raw: The rendered ``batch`` map (None = ``rows: 1``).
        task_id: For messages.

    Returns:
        ``{"rows": n}``, ``{"bytes": n}`` (bytes; ``10MB`` = 10 MiB as Kestra's DataSize) or
        ``{"partitions": n}``, plus ``"separator"`` (default ``"\\n"``).

    Raises:
        FlowableError: not a map, an unknown key, more than one of rows/bytes/partitions, or a
            count that is not an integer >= 1 (naming task and ``batch.<key>``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise FlowableError(f"task '{task_id}': property 'batch' must be a map with one of rows, bytes, partitions")
    unknown = sorted(set(raw) - set(BATCH_KEYS))
    if unknown:
        raise FlowableError(f"task '{task_id}': property 'batch.{unknown[0]}' is unknown; known: "
                            f"{', '.join(BATCH_KEYS)}")
    chosen = [k for k in ("rows", "bytes", "partitions") if raw.get(k) is not None]
    if len(chosen) > 1:
        raise FlowableError(f"task '{task_id}': property 'batch' takes only one of rows, bytes, partitions, got "
                            f"{', '.join(chosen)}")
    kind = chosen[0] if chosen else "rows"
    value = raw.get(kind, 1)
    where = f"task '{task_id}': property 'batch.{kind}'"
    if kind == "bytes":
        match = _SIZE.match(as_text(value) or "")
        size = int(match[1]) * _UNITS[(match[2] or "").lower()[:1]] if match else 0
        if size < 1:
            raise FlowableError(f"{where} must be a size >= 1 byte like 1048576 or 10MB, got {value!r}")
        batch: dict[str, Any] = {"bytes": size}
    else:
        batch = {kind: _positive(value, where)}
    separator = raw.get("separator")
    batch["separator"] = "\n" if separator is None else as_text(separator)
    if not batch["separator"]:
        raise FlowableError(f"task '{task_id}': property 'batch.separator' must not be empty")
    return batch


def prepare(task: Task, render: Renderer) -> Prepared:
    """Check ``items`` and ``batch`` once, when the ForEachItem starts (the ``_split`` task
    renders the same expressions again on its way to the worker).

    Raises:
        FlowableError: ``items`` missing or not a ``kestra:///`` URI; a bad ``batch``.
    """
    raw = task.properties.get("items")
    items = as_text(render(raw, "items")) if raw is not None else None
    if not items or not items.strip():
        raise FlowableError(f"task '{task.id}': property 'items' is required (a kestra:/// URI of the file to split)")
    if not items.strip().startswith("kestra:///"):
        raise FlowableError(f"task '{task.id}': property 'items' must be a kestra:/// URI of a file in internal "
                            f"storage, got {items[:200]!r}")
    batch = parse_batch(render(task.properties.get("batch"), "batch"), task.id)
    return Prepared(properties={"items": items.strip(), "batch": batch})


def step(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """``_split``, ``_items``, ``_merge`` one after another, then ``errors``/``finally``."""
    return sequence_step(view, task_run.id, task.tasks, task.errors, task.finally_, killed=killed)


def prepare_items(task: Task, render: Renderer) -> Prepared:
    """Render what every child execution shares (``inputs`` are rendered per batch).

    Returns:
        ``properties``: ``namespace``, ``flowId``, ``revision`` (0 = latest), ``labels``,
        ``wait``, ``transmitFailed``, ``inheritLabels``.

    Raises:
        FlowableError: ``namespace``/``flowId`` missing, a bad ``revision`` or ``labels``.
    """
    props = task.properties
    owner = task.id.removesuffix("_items")
    rendered: dict[str, Any] = {}
    for key in ("namespace", "flowId"):
        value = as_text(render(props.get(key), key)) if props.get(key) is not None else None
        if not value or not value.strip():
            raise FlowableError(f"task '{owner}': property '{key}' is required")
        rendered[key] = value.strip()
    revision = props.get("revision")
    rendered["revision"] = 0 if revision is None else _positive(render(revision, "revision"),
                                                                f"task '{owner}': property 'revision'")
    rendered["labels"] = _labels(task, render(props.get("labels") or {}, "labels"))
    rendered["wait"] = _flag(render(props.get("wait"), "wait"), True)
    rendered["transmitFailed"] = _flag(render(props.get("transmitFailed"), "transmitFailed"), True)
    rendered["inheritLabels"] = _flag(render(props.get("inheritLabels"), "inheritLabels"), False)
    return Prepared(properties=rendered)


def items_final_state(counts: Mapping[str, int], transmit_failed: bool) -> State:
    """The ``_items`` state once every child ended (Kestra's ``ExecutableUtils.guessState``
    over all iterations)."""
    if not transmit_failed:
        return State.SUCCESS
    if any(counts.get(s.value) for s in (State.FAILED, State.KILLED, State.CANCELLED)):
        return State.FAILED
    if counts.get(State.WARNING.value):
        return State.WARNING
    return State.SUCCESS


def iterations(counts: Mapping[str, int], total: int, wait: bool) -> dict[str, int]:
    """Kestra's ``iterations`` output from child execution counts by state.

    With ``wait``: ``CREATED`` (batches not started yet plus CREATED/QUEUED children),
    ``RUNNING`` (every other unfinished child) and one key per terminal state. Without ``wait``
    every child counts as launched: ``{"RUNNING": 0, "SUCCESS": total}``.
    """
    if not wait:
        return {"RUNNING": 0, "SUCCESS": total}
    created = total - sum(counts.values())
    out = {"CREATED": created, "RUNNING": 0}
    for name, count in sorted(counts.items()):
        state = State(name)
        if state in (State.CREATED, State.QUEUED):
            out["CREATED"] += count
        elif not state.is_terminal:
            out["RUNNING"] += count
        else:
            out[name] = out.get(name, 0) + count
    return out


def step_items(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """Done when every batch has its child (without ``wait``) or every child ended (with it).

    Reads ``numberOfBatches`` from the task run's properties and the child counts the executor
    put in ``view.item_counts`` (both filled by ``for_each_item_runs``)."""
    if killed:
        return Step(done=State.KILLED)
    props = task_run.properties or {}
    total = props.get("numberOfBatches")
    counts = view.item_counts.get(task_run.id)
    if total is None or counts is None or sum(counts.values()) < int(total):
        return Step()
    if not props.get("wait", True):
        return Step(done=State.SUCCESS)
    if any(not State(name).is_terminal for name in counts):
        return Step()
    return Step(done=items_final_state(counts, bool(props.get("transmitFailed", True))))


def step_merge(view: ExecutionView, task: Task, task_run: TaskRun, killed: bool) -> Step:
    """The merge file was written when the task run started (a failure there already ended it)."""
    return Step(done=State.KILLED if killed else State.SUCCESS)
