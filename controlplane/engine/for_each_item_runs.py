"""What the executor does for a ForEachItem besides deciding (see
:mod:`controlplane.engine.flowables.for_each_item` for the semantics): start the child
executions of ``<id>_items`` a chunk at a time, count them, and write the ``<id>_merge`` file.

The executor calls :meth:`ForEachItemRuns.refresh` at the start of each advance (before the
decisions) and :meth:`ForEachItemRuns.started` when an ``_items`` or ``_merge`` task run has just
been created, always inside the advance's transaction with the execution row-locked.

- The batch files are the ones the ``_split`` task run (on a worker) stored: read from the file
  records, in batch order, :data:`CHILDREN_PER_ADVANCE` at a time, each chunk by the executor
  sweep in its own transaction (never in the worker's CompleteTaskRun of the split, which must
  answer before the worker's deadline), and each child is itself started by the sweep.
  The control plane never reads the content of ``items`` or of a batch.
- Each child is a normal execution of the subflow linked to the ``_items`` task run
  (``caller_task_run_id``), so it ends the same way a Subflow's child does: its end marks the
  parent for the sweep, and killing the parent kills it. Its trigger is ``{"type":
  ForEachItem$ForEachItemExecutable, "variables": {executionId, namespace, flowId, flowRevision,
  taskRunId, taskRunIteration}}`` and it carries the parent's ``system.correlationId``.
- The merge file is streamed from Postgres (a page of children at a time) into the storage
  backend: memory stays constant whatever the number of children.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING

from controlplane.engine.context import expression_context
from controlplane.engine.flowables import for_each_item as rules
from controlplane.engine.view import ExecutionView
from controlplane.errors import ExpressionError, InvalidArgumentError
from controlplane.expressions import render
from controlplane.flows.for_each_item import hidden_ids
from controlplane.model import Execution, Flow, State, Task, TaskRun
from controlplane.storage import uris
from controlplane.store import for_each_item_ops as ops
from controlplane.store import repository as repo

if TYPE_CHECKING:
    from controlplane.engine.executor import Executor
    from controlplane.engine.unit import Unit

#: Child executions one advance creates for one ``_items`` task run; the sweep does the rest.
CHILDREN_PER_ADVANCE = 100
#: Children of one chunk started in the chunk's transaction; later ones wait for the sweep.
_STARTED_INLINE = 20
#: Name of the ``_merge`` output file.
MERGE_FILE = "subflow-outputs.jsonl"


class ForEachItemRuns:
    """The ForEachItem side effects of one executor.

    Args:
        executor: The executor (its flow loader, globals, logging and storage are used).
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        #: Executions whose advance left children to start: the executor keeps them on its
        #: queue (an advance otherwise clears the queue mark at its end).
        self._again: set[str] = set()

    def again(self, execution_id: str) -> bool:
        """Whether the advance of ``execution_id`` that is ending left children to start (the
        executor then leaves it on the executor queue for the sweep); forgets it."""
        if execution_id in self._again:
            self._again.discard(execution_id)
            return True
        return False

    async def refresh(self, unit: Unit, flow: Flow, execution: Execution, view: ExecutionView, now: datetime) -> None:
        """Count the children of every running ``_items`` task run into ``view.item_counts``,
        start the next chunk of children where batches are left (not when the execution is
        being killed), and keep the ``iterations`` output current."""
        if flow.source and "ForEachItem" not in flow.source:
            return  # the common case, without a pass over every task run
        running = [tr for tr in view.all if tr.task_type == rules.ITEMS_TYPE and tr.state is State.RUNNING]
        if not running:
            return
        counts = await ops.child_counts(unit.conn, execution.id, [tr.id for tr in running])
        for tr in running:
            view.item_counts[tr.id] = dict(counts.get(tr.id, {}))
            if (tr.properties or {}).get("numberOfBatches") is None:
                continue
            if not execution.kill_requested:
                await self._feed(unit, flow, execution, view, tr, now)
            self._set_outputs(view, tr)
            await repo.save_task_run_state(unit.conn, tr)

    async def started(
        self, unit: Unit, flow: Flow, execution: Execution, view: ExecutionView, task: Task, tr: TaskRun, now: datetime
    ) -> None:
        """An ``_items`` task run was created RUNNING: read the split's result and leave the
        execution for the sweep, which starts the children (:meth:`refresh`). A ``_merge`` task
        run: write the merge file."""
        if tr.task_type == rules.MERGE_TYPE:
            await self._merge(unit, execution, view, task, tr, now)
            return
        split = self._sibling(view, tr, 0)
        items = self._sibling(view, tr, 1)
        assert items is tr
        outputs = (split.outputs if split is not None else None) or {}
        try:
            total = int(outputs["numberOfBatches"])
            splits = str(outputs["splits"])
        except (KeyError, TypeError, ValueError):
            await self._executor._fail_started(unit, task, tr, f"task '{task.id}': the split task run left no "
                                               "'numberOfBatches'/'splits' outputs", now)
            return
        tr.properties = {**(tr.properties or {}), "numberOfBatches": total, "splits": splits,
                         "splitTaskRunId": split.id if split else None}
        from controlplane.store import executor_ops

        await executor_ops.save_properties(unit.conn, tr.id, tr.properties)
        view.item_counts[tr.id] = {}
        if total == 0:
            return  # an empty file: no child, no outputs (Kestra's forEachItemEmptyItems)
        self._set_outputs(view, tr)
        await repo.save_task_run_state(unit.conn, tr)
        # The children are started by the executor sweep, in its own transaction: this one is
        # usually a worker's CompleteTaskRun of the split, which must stay short.
        self._again.add(execution.id)

    @staticmethod
    def _sibling(view: ExecutionView, tr: TaskRun, index: int) -> TaskRun | None:
        """The ``_split`` (0) / ``_items`` (1) task run of the same ForEachItem run."""
        owner = tr.task_id.rsplit("_", 1)[0]
        wanted = hidden_ids(owner)[index]
        for sibling in view.children(tr.parent_id, "tasks"):
            if sibling.task_id == wanted:
                return sibling
        return None

    @staticmethod
    def _set_outputs(view: ExecutionView, tr: TaskRun) -> None:
        props = tr.properties or {}
        total = int(props["numberOfBatches"])
        if total == 0:
            return
        counts = view.item_counts.get(tr.id, {})
        wait = bool(props.get("wait", True))
        if not wait and sum(counts.values()) < total:
            iterations = {"CREATED": total - sum(counts.values()), "RUNNING": 0,
                          "SUCCESS": sum(counts.values())}
        else:
            iterations = rules.iterations(counts, total, wait)
        outputs = {"numberOfBatches": total, "iterations": iterations}
        if outputs != tr.outputs:
            tr.outputs = outputs
            view.invalidate()

    async def _feed(
        self, unit: Unit, flow: Flow, execution: Execution, view: ExecutionView, tr: TaskRun, now: datetime
    ) -> None:
        """Start the next :data:`CHILDREN_PER_ADVANCE` children; a child that cannot be created
        (no such flow, inputs it refuses, an input expression that fails) fails the task run."""
        executor = self._executor
        conn = unit.conn
        props = tr.properties or {}
        total = int(props["numberOfBatches"])
        counts = view.item_counts.setdefault(tr.id, {})
        done = sum(counts.values())
        if done >= total:
            return
        task = flow.find_task(tr.task_id)
        owner = tr.task_id.removesuffix("_items")
        namespace, flow_id, revision = props["namespace"], props["flowId"], int(props.get("revision") or 0)
        row = await repo.get_flow(conn, namespace, flow_id, revision)
        if row is None or row.deleted:
            at = f" revision {revision}" if revision else ""
            await executor._fail_started(unit, task, tr, f"task '{owner}': property 'flowId': Unable to find flow "
                                         f"{namespace}.{flow_id}{at} to start as a subflow", now)
            return
        child_flow = await executor._load_flow(conn, namespace, flow_id, row.revision)
        if child_flow.disabled:
            await executor._fail_started(unit, task, tr, f"task '{owner}': flow {namespace}.{flow_id} is disabled", now)
            return
        batch = await ops.batch_uris(conn, execution.id, props.get("splitTaskRunId") or "", props["splits"], done,
                                     min(CHILDREN_PER_ADVANCE, total - done))
        if not batch:
            await executor._fail_started(unit, task, tr, f"task '{owner}': batch {done + 1} of {total} is missing "
                                         "from internal storage", now)
            return
        base = expression_context(flow, execution, view, task, tr, executor._globals)
        labels = dict(props.get("labels") or {})
        if props.get("inheritLabels"):
            labels = {**{k: v for k, v in execution.labels.items() if not k.startswith("system.")}, **labels}
        labels["system.correlationId"] = execution.labels.get("system.correlationId", execution.id)
        from controlplane.engine.executor import new_execution
        from controlplane.flows.inputs import coerce_inputs, seal_secret_values, sealed_values

        sealed = sealed_values(execution.inputs)

        started = []
        for offset, uri in enumerate(batch):
            iteration = done + offset + 1
            ctx = {**base, "taskrun": {**base.get("taskrun", {}), "items": uri, "iteration": iteration}}
            try:
                inputs = render(task.properties.get("inputs") or {}, ctx,
                                where=f"task '{owner}' property 'inputs'")
                if not isinstance(inputs, dict):
                    raise InvalidArgumentError("property 'inputs' must be a map of input id to value")
                inputs = coerce_inputs(child_flow, inputs)
                inputs = seal_secret_values(inputs, sealed)  # a caller's SECRET stays encrypted
                json.dumps(inputs, allow_nan=False, default=str)
            except (ExpressionError, InvalidArgumentError, ValueError, TypeError) as exc:
                await executor._fail_started(unit, task, tr, f"task '{owner}': cannot start subflow "
                                             f"{namespace}.{flow_id} for batch {iteration}: {exc}", now)
                return
            child = new_execution(child_flow, inputs, dict(labels), now)
            child.caller_execution_id, child.caller_task_run_id = execution.id, tr.id
            child.trigger = {
                "id": owner,
                "type": rules.ITEMS_TYPE,
                "variables": {"executionId": execution.id, "namespace": execution.namespace,
                              "flowId": execution.flow_id, "flowRevision": execution.flow_revision,
                              "taskRunId": tr.id, "taskRunIteration": iteration},
            }
            await repo.insert_execution(conn, child, None)
            counts[State.CREATED.value] = counts.get(State.CREATED.value, 0) + 1
            started.append(child.id)
            unit.executions.add(child.id)
        if not tr.attempt:
            from controlplane.store import executor_ops

            attempt = await executor_ops.start_attempt(conn, tr.id, now)
            tr.attempt = attempt.number
            tr.attempts.append(attempt)
        await executor._log(unit, tr, "INFO", f"subflow executions {done + 1} to {done + len(started)} of {total} "
                                              f"({namespace}.{flow_id}) created")
        for index, child_id in enumerate(started):
            if index < _STARTED_INLINE and unit.nested_starts == 0:
                unit.nested_starts += 1
                try:
                    await executor.advance_safely(unit, child_id)
                finally:
                    unit.nested_starts -= 1
            else:
                await unit.advance_soon(child_id)  # the sweep starts it
        if done + len(started) < total:
            self._again.add(execution.id)  # the sweep creates the next chunk
        fresh = await ops.child_counts(conn, execution.id, [tr.id])
        view.item_counts[tr.id] = dict(fresh.get(tr.id, {}))

    async def _merge(
        self, unit: Unit, execution: Execution, view: ExecutionView, task: Task, tr: TaskRun, now: datetime
    ) -> None:
        """With ``wait``: write ``subflowOutputs``, one JSON line per child with flow outputs."""
        executor = self._executor
        items = self._sibling(view, tr, 1)
        props = (items.properties if items is not None else None) or {}
        if items is None or not props.get("wait", True) or not props.get("numberOfBatches"):
            return
        storage = getattr(executor, "storage", None)
        owner = tr.task_id.removesuffix("_merge")
        if storage is None:
            await executor._fail_started(unit, task, tr, f"task '{owner}': no internal storage in this control "
                                         "plane to write the merged subflow outputs", now)
            return
        uri = uris.task_file_uri(execution.namespace, execution.flow_id, execution.id, tr.task_id, tr.id, MERGE_FILE)
        writer = storage.backend.writer(uris.storage_key(uri))
        digest, size = hashlib.sha256(), 0
        try:
            async for outputs in ops.child_outputs(unit.conn, execution.id, items.id):
                line = (json.dumps(outputs, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode()
                digest.update(line)
                size += len(line)
                await writer.write(line)
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        await ops.record_file(unit.conn, uri, execution.namespace, execution.flow_id, execution.id, tr.id, size,
                              digest.hexdigest())
        tr.outputs = {"subflowOutputs": uri}
        await repo.save_task_run_state(unit.conn, tr)
        view.invalidate()
