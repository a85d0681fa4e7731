"""``io.kestra.plugin.core.flow.ForEachItem`` as the parser sees it: the task and the three
hidden child tasks Kestra generates for it.

Kestra's ``ForEachItem.getTasks()`` turns one ForEachItem into a sequence of three tasks, and a
run of it shows four task runs (the ForEachItem plus these three):

- ``<id>_split`` (``ForEachItem$ForEachItemSplit``, runnable: on a worker): splits ``items``
  into batch files by ``batch``; outputs ``splits`` (a file listing the batch URIs) and
  ``numberOfBatches``.
- ``<id>_items`` (``ForEachItem$ForEachItemExecutable``, in the control plane): one subflow
  execution per batch; outputs ``numberOfBatches`` and ``iterations`` (child counts by state).
- ``<id>_merge`` (``ForEachItem$ForEachItemMergeOutputs``, in the control plane): with ``wait``,
  output ``subflowOutputs``, a file with one JSON line per child execution's flow outputs.

:func:`expand` is applied by the parser, so the hidden tasks are part of the flow model: the
registration checks know ``outputs.<id>_items`` and ``outputs.<id>_merge``, and the executor
walks them as any child task.
"""

from __future__ import annotations

from dataclasses import replace

from controlplane.model.flow import Task

TYPE = "io.kestra.plugin.core.flow.ForEachItem"
SPLIT_TYPE = TYPE + "$ForEachItemSplit"
ITEMS_TYPE = TYPE + "$ForEachItemExecutable"
MERGE_TYPE = TYPE + "$ForEachItemMergeOutputs"

#: The ForEachItem's own properties (besides the common ones and ``errors``/``finally``).
PROPERTIES = frozenset({
    "items", "batch", "namespace", "flowId", "revision", "inputs", "labels", "wait", "transmitFailed",
    "inheritLabels", "scheduleDate", "scheduleOnDate", "restartBehavior",
})
#: Keys of ``batch`` (Kestra's ``ForEachItem.Batch``): exactly one of rows/bytes/partitions.
BATCH_KEYS = ("rows", "bytes", "partitions", "separator")

_SUBFLOW_KEYS = ("namespace", "flowId", "revision", "inputs", "labels", "wait", "transmitFailed", "inheritLabels")


def hidden_ids(task_id: str) -> tuple[str, str, str]:
    """``(<id>_split, <id>_items, <id>_merge)``."""
    return f"{task_id}_split", f"{task_id}_items", f"{task_id}_merge"


def expand(task: Task) -> Task:
    """The ForEachItem with its three hidden tasks as its ``tasks`` child list.

    Args:
        task: A parsed ``ForEachItem`` (properties unrendered, ``errors``/``finally`` parsed).

    Returns:
        The same task with ``subtasks["tasks"]`` = split, items, merge (each at the
        ForEachItem's YAML line; their properties are copies of the ForEachItem's, still
        unrendered).
    """
    props = task.properties
    split_id, items_id, merge_id = hidden_ids(task.id)
    split = Task(id=split_id, type=SPLIT_TYPE, written_type=SPLIT_TYPE, line=task.line,
                 worker_group=task.worker_group,
                 properties={"items": props.get("items"), "batch": props.get("batch")})
    items = Task(id=items_id, type=ITEMS_TYPE, written_type=ITEMS_TYPE, line=task.line,
                 properties={k: props[k] for k in _SUBFLOW_KEYS if k in props})
    merge = Task(id=merge_id, type=MERGE_TYPE, written_type=MERGE_TYPE, line=task.line,
                 properties={k: props[k] for k in ("wait", "transmitFailed") if k in props})
    subtasks = {"tasks": (split, items, merge), **task.subtasks}
    return replace(task, subtasks=subtasks)
