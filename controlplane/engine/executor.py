"""The executor: applies the decision logic to an execution inside one transaction.

Every entry point takes a :class:`~controlplane.engine.unit.Unit` (an open transaction) and
row-locks the execution first (``SELECT … FOR UPDATE``), so two replicas never advance the same
execution at once; the unique task-run identity index backs that up if a lock were ever lost.
Lock order is always execution, then task run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError

from controlplane import faults
from controlplane.engine import groups
from controlplane.engine import retry as retry_rules
from controlplane.engine import sla as sla_rules
from controlplane.engine.context import expression_context
from controlplane.engine.flowables import FLOWABLES
from controlplane.engine.flowables import for_each_item as for_each_item_rules
from controlplane.engine.flowables import labels as labels_rules
from controlplane.engine.flowables import pause as pause_rules
from controlplane.engine.flowables import resume as resume_rules
from controlplane.engine.flowables import subflow as subflow_rules
from controlplane.engine.flowables import toggle as toggle_rules
from controlplane.engine.flowables import wait_for as wait_for_rules
from controlplane.engine.flowables import working_directory as wd_rules
from controlplane.engine.flowables.props import is_truthy
from controlplane.engine.for_each_item_runs import ForEachItemRuns
from controlplane.engine.plan import FlowableError, NewTaskRun, apply_allow_failure
from controlplane.engine.sequence import sequence_step
from controlplane.engine.unit import Unit
from controlplane.engine.view import ChildExecution, ExecutionView
from controlplane.errors import (
    ExpressionError,
    FailedPreconditionError,
    InputValidationError,
    InvalidArgumentError,
    NotFoundError,
)
from controlplane.expressions import render
from controlplane.expressions.values import print_value
from controlplane.flows.catalogue import UNRENDERED_PROPERTIES
from controlplane.flows.durations import check_seconds, parse_duration
from controlplane.flows.inputs import (
    InputValueError,
    coerce_inputs,
    coerce_value,
    seal_secret_values,
    sealed_values,
)
from controlplane.model import (
    Execution,
    Flow,
    Input,
    Output,
    State,
    StateHistory,
    Task,
    TaskRun,
    change_state,
)
from controlplane.model.state import can_transition
from controlplane.service.log_files import LogFileRequest
from controlplane.store import executor_ops as ops
from controlplane.store import pipeline
from controlplane.store import repository as repo
from controlplane.store import working_directories as wd_store
from controlplane.store.ids import new_id
from controlplane.tokens import TaskTokenClaims

log = logging.getLogger(__name__)

# Bound on decision rounds in one advance: each round creates or finishes at least one task run.
_MAX_ROUNDS = 10_000
MAX_TASK_RUNS_PER_ADVANCE = 500
"""Most task runs one advance creates; the rest is left to the executor sweep, each batch in
its own short transaction, so a huge fan-out (a ForEach of thousands with no concurrency limit)
neither holds one transaction for minutes nor makes StartExecution miss its deadline."""

#: Deepest chain of subflow executions (a Subflow task refuses to start a deeper one).
MAX_SUBFLOW_DEPTH = 50
# Subflow executions started inside one another in one transaction; deeper ones wait for the sweep.
_MAX_NESTED_STARTS = 5

FlowLoader = Callable[[Any, str, str, int], Awaitable[Flow]]


class AdvanceFailed(Exception):
    """An advance failed in a transaction without savepoints (``Unit.savepoints`` False): roll
    the transaction back and run it again with savepoints. The cause is ``__cause__``."""


#: What makes a transaction without savepoints run again with them: :class:`AdvanceFailed`,
#: or the error of a write the advance deferred (store/pipeline.py), raised by the statement or
#: COMMIT that sent it after the advance returned (inside a savepoint it fails within the
#: advance's own, and the rest of the transaction is kept).
RUN_AGAIN_WITH_SAVEPOINTS = (AdvanceFailed, IntegrityError, DataError)


@dataclass(frozen=True)
class Completed:
    """What :meth:`Executor.complete` recorded, for the rest of the result's transaction (its
    log lines, :class:`controlplane.service.log_ingest.LogIngest`) so it need not read again.

    Attributes:
        execution: The execution as locked and advanced in this transaction.
        flow: Its flow revision.
        log_bytes: UTF-8 bytes of log text stored for the completed attempt before this
            result, as read under the execution lock.
    """

    execution: Execution
    flow: Flow
    log_bytes: int


@dataclass(frozen=True)
class Lost:
    """Why an attempt was lost (not ended by the task itself)."""

    reason: str  # LEASE_EXPIRED | WORKER_SHUTDOWN


def holds_lease(tr: TaskRun, claims: TaskTokenClaims) -> bool:
    """The fence of a worker's result, on a task run as read: it is RUNNING the attempt and lease
    epoch of the token (DESIGN.md §3)."""
    return tr.state is State.RUNNING and tr.attempt == claims.attempt and tr.lease_epoch == claims.lease_epoch


class Executor:
    """Advances executions and records worker results.

    Args:
        load_flow: ``await load_flow(conn, namespace, flow_id, revision) -> Flow`` (cached).
        max_redeliveries: Times a task run is re-dispatched after lost attempts before it fails.
        globals_: Kestra ``globals`` for expressions.
    """

    def __init__(self, load_flow: FlowLoader, max_redeliveries: int = 5, globals_: dict[str, Any] | None = None) -> None:
        self._load_flow = load_flow
        self._max_redeliveries = max_redeliveries
        #: ``(conn, namespace, flow_id, trigger_id, enabled)`` -> set a trigger's state in the
        #: caller's transaction (the Toggle task); installed by the control plane's scheduler.
        self.trigger_toggler: Callable[[Any, str, str, str, bool], Awaitable[None]] | None = None
        self._globals = globals_ or {}
        #: Internal storage (``controlplane.storage.InternalStorage``), installed by the control
        #: plane: the ForEachItem ``_merge`` task writes its file there.
        self.storage: Any = None
        self._for_each_item = ForEachItemRuns(self)

    # ------------------------------------------------------------------------------------------
    # starting and advancing

    async def create_execution(
        self, unit: Unit, flow: Flow, inputs: dict[str, Any], labels: dict[str, str], request_id: str | None
    ) -> tuple[str, bool, Execution | None]:
        """Insert a CREATED execution of ``flow`` and advance it in the same transaction.

        The advance starts from the execution as inserted (no task runs, no executor queue
        mark): nothing else can see, lock or mark it before this transaction commits, so it is
        not read back.

        Returns:
            (execution id, created, execution): ``created`` is False when ``request_id`` was
            seen before and the earlier execution's id is returned (with None); ``execution``
            is the execution as advanced (with every task run), None when the advance failed
            and was left to the sweep (see :meth:`advance_safely`).

        Raises:
            AdvanceFailed: in a unit without savepoints, the advance failed (see
                :meth:`advance_safely`).
        """
        execution = new_execution(flow, inputs, labels, repo.utcnow())
        if not await repo.insert_execution(unit.conn, execution, request_id):
            existing = await repo.find_execution_by_request_id(unit.conn, flow.namespace, flow.id, request_id or "")
            assert existing is not None
            return existing, False, None
        unit.executions.add(execution.id)
        faults.hit("start.inserted")
        advanced = await self.advance_safely(unit, execution.id, locked=execution, clear_dirty=False, task_runs=[])
        faults.hit("start.advanced")
        return execution.id, True, advanced

    async def advance(
        self, unit: Unit, execution_id: str, locked: Execution | None = None, *, clear_dirty: bool = True,
        task_runs: list[TaskRun] | None = None,
    ) -> Execution | None:
        """Lock the execution, create whatever can start now, finish what is done.

        Args:
            locked: The execution, when the caller has already row-locked it in this
                transaction (it is not read again).
            clear_dirty: Remove the execution from the executor queue (it is fully advanced; the
                mark is removed before the reads, see the comment there).
                False when the caller did not put it there (a worker's result): a mark left by
                someone else then costs the sweep one more (idempotent) advance, and the common
                case saves a statement.
            task_runs: Every task run of ``locked``, when the caller read them after locking it
                and kept them up to date with what it wrote since (they are not read again).

        Returns:
            The execution after the changes (``task_runs`` = every task run, those created now
            included), or None when it does not exist.
        """
        conn = unit.conn
        execution = locked if locked is not None else await repo.lock_execution(conn, execution_id)
        if execution is None:
            return None
        row_before = _row_fields(execution)
        if execution.state.is_terminal:
            await repo.clear_execution_dirty(conn, execution_id)
            return execution
        if (not execution.kill_requested and execution.caller_execution_id is not None
                and await ops.kill_requested(conn, execution.caller_execution_id)):
            # Its caller was killed and the kill did not reach it (e.g. a crash between the two):
            # the kill cascades to subflow executions, as Kestra's does.
            return await self.kill(unit, execution_id)
        if execution.state is State.CREATED and not execution.kill_requested and (
                due := subflow_rules.scheduled_for(execution.trigger)) is not None and due > repo.utcnow():
            await repo.clear_execution_dirty(conn, execution_id)  # a Subflow's scheduleDate: not yet
            await repo.mark_execution_dirty(conn, execution_id, due)
            return execution
        if clear_dirty:
            # Before reading anything the decisions depend on (task runs, child executions): a
            # mark committed from now on (e.g. a subflow child ending) is a new row and wakes the
            # sweep again; deleting it at the end could drop a mark made after these reads.
            await repo.clear_execution_dirty(conn, execution_id)
        flow = await self._load_flow(conn, execution.namespace, execution.flow_id, execution.flow_revision)
        execution.task_runs = task_runs if task_runs is not None else await repo.load_task_runs(conn, execution_id)
        view = ExecutionView(flow, execution)
        now = repo.utcnow()
        exec_changed = False
        if execution.state in (State.CREATED, State.QUEUED, State.RESTARTED):
            if flow.concurrency and not execution.concurrency_slot and not await self._take_slot(unit, flow, execution, now):
                await repo.clear_execution_dirty(conn, execution_id)
                return execution  # QUEUED, or ended by the limit's behavior
            change_state(execution, State.RUNNING, now, f"execution {execution.id}")
            execution.started_at = execution.started_at or now
            exec_changed = True
        if flow.sla and execution.state in (State.RUNNING, State.PAUSED) and not execution.kill_requested:
            changed, ended = await self._check_sla(unit, flow, execution, view, now)
            exec_changed = exec_changed or changed
            if ended:
                await repo.save_execution_state(conn, execution)
                unit.executions.add(execution.id)
                await self._on_terminal(unit, execution)
                await repo.clear_execution_dirty(conn, execution_id)
                return execution
        killed = execution.kill_requested
        tasks_by_id = {task.id: task for task in flow.walk()}
        view.subflows = await ops.child_executions(
            conn, [tr.id for tr in view.all if tr.task_type == subflow_rules.TYPE and not tr.state.is_terminal]
        )
        await self._for_each_item.refresh(unit, flow, execution, view, now)
        created = 0
        more_later = False
        for _ in range(_MAX_ROUNDS):
            changed = False
            if created >= MAX_TASK_RUNS_PER_ADVANCE:
                more_later = True  # the sweep continues in its own transaction
                break
            for tr in view.all:
                flowable = FLOWABLES.get(tr.task_type)
                if flowable is None or tr.state.is_terminal:
                    continue
                task = tasks_by_id[tr.task_id]
                step = flowable.step(view, task, tr, killed)
                for new in step.create:
                    if created >= MAX_TASK_RUNS_PER_ADVANCE:
                        break  # the flowable's next step creates the rest (steps are idempotent)
                    await self._create_task_run(unit, flow, execution, view, new, now)
                    changed = True
                    created += 1
                if step.pause:
                    await self._pause(unit, tr, now)
                    changed = True
                if step.check:
                    await self._check_wait_for(unit, flow, execution, view, task, tr, now)
                    changed = True
                if step.done is not None:
                    tr.ended_at = now
                    done = step.done
                    if tr.task_type == subflow_rules.TYPE:
                        done = await self._subflow_result(unit, task, tr, view, done)
                        view.invalidate()
                        if done is State.FAILED and not killed and await self._retry_subflow(
                                unit, flow, task, tr, now):
                            changed = True
                            continue
                    elif tr.task_type == for_each_item_rules.ITEMS_TYPE and tr.attempt:
                        await repo.finish_attempt(conn, tr.id, tr.attempt, done)
                    change_state(tr, apply_allow_failure(task, done), now, f"task run {tr.id} ({tr.task_id})")
                    await repo.save_task_run_state(conn, tr)
                    changed = True
            root = sequence_step(view, None, flow.tasks, flow.errors, flow.finally_, killed=killed)
            for new in root.create:
                if created >= MAX_TASK_RUNS_PER_ADVANCE:
                    break
                await self._create_task_run(unit, flow, execution, view, new, now)
                changed = True
                created += 1
            if not changed:
                if root.done is not None:
                    self._finish(flow, execution, view, root.done, now)
                    exec_changed = True
                break
            exec_changed = True
        if not execution.state.is_terminal:
            paused = any(tr.state is State.PAUSED for tr in view.all)
            if paused and execution.state is State.RUNNING:
                change_state(execution, State.PAUSED, now, f"execution {execution.id}")
                exec_changed = True
            elif not paused and execution.state is State.PAUSED:
                change_state(execution, State.RUNNING, now, f"execution {execution.id}")
                exec_changed = True
        if exec_changed:
            unit.executions.add(execution.id)
            if _row_fields(execution) != row_before:  # not for a task run created or ended
                await repo.save_execution_state(conn, execution)
            if execution.state.is_terminal:
                await self._on_terminal(unit, execution)
        if more_later or self._for_each_item.again(execution_id):
            await unit.advance_soon(execution_id)
        else:
            deadline = self._sla_deadline(flow, execution, now)
            if deadline is not None:
                await repo.mark_execution_dirty(conn, execution_id, deadline)  # durable MAX_DURATION timer
        execution.task_runs = view.all
        return execution

    # ------------------------------------------------------------------------------------------
    # SLA (Kestra's flow ``sla``: engine/sla.py)

    @staticmethod
    def _sla_deadline(flow: Flow, execution: Execution, now: datetime) -> datetime | None:
        """When a not-terminated execution must be looked at again for a MAX_DURATION SLA."""
        if not flow.sla or execution.state.is_terminal:
            return None
        origin = sla_rules.clock_origin(execution.created_at or now, execution.histories)
        return sla_rules.next_deadline(sla_rules.parse_all(flow.sla), origin, now)

    async def _check_sla(
        self, unit: Unit, flow: Flow, execution: Execution, view: ExecutionView, now: datetime
    ) -> tuple[bool, bool]:
        """Evaluate the flow's SLAs on this change of a RUNNING execution (Kestra's
        ``handleExecutionChangedSLA`` and SLA monitor); the first violation acts: its labels are
        added, and ``FAIL``/``CANCEL`` end the execution FAILED/CANCELLED at once, as Kestra's
        ``markAs``: queued task runs are dequeued and KILLED, control-plane task runs end (the
        last one in the violation's state, the others KILLED), task runs on workers are asked
        to stop and report KILLED. An ``assert`` that fails to render fails the execution.

        Returns:
            ``(changed, ended)``: the execution row needs saving; the execution is now terminal.
        """
        ctx: dict[str, Any] | None = None

        def render_assert(template: str, where: str) -> Any:
            nonlocal ctx
            if ctx is None:
                ctx = expression_context(flow, execution, view, globals_=self._globals)
            return render(template, ctx, where=where)

        slas = sla_rules.parse_all(flow.sla)
        try:
            origin = sla_rules.clock_origin(execution.created_at or now, execution.histories)
            found = sla_rules.violations(slas, origin, now, render_assert)
        except (ExpressionError, InputValueError) as exc:
            found = [sla_rules.Violation(slas[0], State.FAILED, f"SLA assertion failed to render: {exc}")]
        if not found:
            return False, False
        first = found[0]
        added = {k: v for k, v in first.sla.labels.items() if execution.labels.get(k) != v}
        if first.state is None and not added:
            return False, False  # NONE without labels: nothing to change (Kestra only logs it)
        await self._log_execution(unit, execution.id, first.reason, level="WARN")
        execution.labels = {**execution.labels, **added}
        if first.state is None:
            return True, False
        execution.error = first.reason
        execution.kill_requested = True
        dequeued = set(await repo.dequeue_execution_task_runs(unit.conn, execution.id))
        pending = [tr for tr in view.all if not tr.state.is_terminal]
        on_workers = [tr for tr in pending if tr.id not in dequeued and tr.worker_id is not None
                      and tr.state is State.RUNNING and tr.task_type not in FLOWABLES]
        to_end = [tr for tr in pending if tr not in on_workers]
        for tr in to_end:
            target = first.state if tr is to_end[-1] else State.KILLED
            if not can_transition(tr.state, target):
                target = State.KILLED
            tr.ended_at = now
            change_state(tr, target, now, f"task run {tr.id} ({tr.task_id})")
            await repo.save_task_run_state(unit.conn, tr)
            if tr.next_attempt_at is not None:
                await repo.set_next_attempt_at(unit.conn, tr.id, None)
        await repo.request_cancel(unit.conn, execution.id)
        for child in await ops.running_children(unit.conn, execution.id):
            # Subflow executions: advanced by the sweep, each kills itself (its caller's
            # kill_requested is set), as a kill cascades.
            await unit.advance_soon(child)
        execution.ended_at = now
        change_state(execution, first.state, now, f"execution {execution.id}")
        return True, True

    def _finish(self, flow: Flow, execution: Execution, view: ExecutionView, state: State, now: datetime) -> None:
        """End the execution: render flow outputs (a failure to render fails it), set the state."""
        if flow.outputs and state in (State.SUCCESS, State.WARNING):
            ctx = expression_context(flow, execution, view, globals_=self._globals)
            try:
                execution.outputs = {out.id: _typed_output(out, ctx) for out in flow.outputs}
            except (ExpressionError, InputValueError) as exc:
                execution.outputs = None
                execution.error = str(exc)
                state = State.FAILED
        if execution.state is State.KILLING and state is not State.KILLED:
            state = State.KILLED
        elif any(tr.state is State.CANCELLED and tr.task_type == pause_rules.TYPE for tr in view.all):
            state = State.CANCELLED  # a Pause with behavior CANCEL ran out
        execution.ended_at = now
        change_state(execution, state, now, f"execution {execution.id}")

    async def _create_task_run(
        self, unit: Unit, flow: Flow, execution: Execution, view: ExecutionView, new: NewTaskRun, now: datetime
    ) -> TaskRun:
        """Insert one task run: flowables start RUNNING here; runnables are rendered and queued.

        A flowable with a ``prepare`` hook renders its decision inputs now; they are stored as
        the task run's ``properties`` (and Kestra's flowable outputs as its ``outputs``) so every
        later decision reuses them. A property or ``runIf`` that fails to render, or a flowable
        that refuses its rendered properties, makes the task run FAILED at once, with the error
        stored on it and logged at ERROR. A runnable's properties that fail to render are
        instead its first attempt failing: the task run is parked for :meth:`start_due_attempt`,
        which renders again, records the attempt and applies the retry policy.
        """
        task = new.task
        tr = TaskRun(
            id=new_id(),
            execution_id=execution.id,
            task_id=task.id,
            task_type=task.type,
            state=State.CREATED,
            histories=[],
            parent_id=new.parent_id,
            value=new.value,
            branch=new.branch,
            seq=len(view.all) + 1,
            created_at=now,
            iteration=new.iteration,
        )
        tr.histories.append(StateHistory(State.CREATED, now))
        ctx = expression_context(flow, execution, view, task, tr, self._globals)
        flowable = FLOWABLES.get(task.type)
        render_failed = False
        timeout = task.timeout
        try:
            if task.run_if is not None:
                condition = render(task.run_if, ctx, where=f"task '{task.id}' property 'runIf'")
                if not is_truthy(condition):
                    change_state(tr, State.SKIPPED, now)
                    tr.ended_at = now
            if tr.state is State.CREATED and flowable is None:
                try:
                    tr.properties = _render_properties(task, ctx)
                    timeout = _rendered_timeout(task, tr.properties)
                except ExpressionError:
                    # Rendering is part of an attempt (Kestra renders on the worker): the executor
                    # sweep renders again as attempt 1, and a failure there is retried like any.
                    render_failed = True
            elif tr.state is State.CREATED and flowable is not None and flowable.prepare is not None:
                prepared = flowable.prepare(
                    task, lambda value, prop: render(value, ctx, where=f"task '{task.id}' property '{prop}'")
                )
                tr.properties, tr.outputs = prepared.properties, prepared.outputs
        except (ExpressionError, FlowableError) as exc:
            tr.error = str(exc)
            change_state(tr, apply_allow_failure(task, State.FAILED), now)
            tr.ended_at = now
            await self._log_error(unit, tr, str(exc))
        if tr.state is State.CREATED and flowable is not None:
            change_state(tr, State.RUNNING, now)
            tr.started_at = now
        # A WorkingDirectory's child runs in its group, in the WorkingDirectory's worker group.
        group = view.get(new.parent_id) if new.parent_id is not None else None
        group_id = group.id if flowable is None and wd_rules.is_group_child(group, new.branch) else None
        worker_group = task.worker_group or ""
        if group_id is not None:
            worker_group = flow.find_task(group.task_id).worker_group or worker_group
        if tr.state is State.CREATED and not render_failed and group_id is None:
            await repo.insert_and_enqueue_task_run(unit.conn, tr, properties=tr.properties,
                                                   timeout_seconds=timeout, worker_group=worker_group)
            faults.hit("advance.task_run_inserted")  # (inserted and queued in one statement)
            unit.queued.append((tr.task_type, worker_group))
        else:
            await repo.insert_task_run(unit.conn, tr, properties=tr.properties, timeout_seconds=timeout,
                                       worker_group=worker_group, group_id=group_id)
            if tr.state is State.CREATED and render_failed:
                await repo.park_for_next_attempt(unit.conn, tr.id, now)
            elif tr.state is State.CREATED:
                faults.hit("advance.task_run_inserted")
                await repo.enqueue_task_run(unit.conn, tr.id, tr.task_type, worker_group, group_id=group_id)
                unit.tasks_queued = True  # a group child only its group's worker may claim: wake every poll
        view.add(tr)
        if tr.state is State.RUNNING and task.type == subflow_rules.TYPE:
            await self._start_subflow(unit, execution, view, task, tr, now)
        elif tr.state is State.RUNNING and task.type in (for_each_item_rules.ITEMS_TYPE, for_each_item_rules.MERGE_TYPE):
            await self._for_each_item.started(unit, flow, execution, view, task, tr, now)
        elif tr.state is State.RUNNING and task.type == resume_rules.TYPE:
            await self._resume_other(unit, execution, task, tr, now)
        elif tr.state is State.RUNNING and task.type == toggle_rules.TYPE:
            await self._toggle_trigger(unit, execution, task, tr, now)
        elif tr.state is State.RUNNING and task.type == labels_rules.TYPE:
            execution.labels = {**execution.labels, **(tr.properties or {}).get("labels", {})}
            await ops.save_labels(unit.conn, execution.id, execution.labels)
            unit.executions.add(execution.id)
        return tr

    async def _check_wait_for(
        self, unit: Unit, flow: Flow, execution: Execution, view: ExecutionView, task: Task, tr: TaskRun,
        now: datetime,
    ) -> None:
        """A WaitFor round succeeded: render its condition and end the loop or schedule the
        next round (a durable timer); a condition that fails to render fails the WaitFor."""
        ctx = expression_context(flow, execution, view, task, tr, self._globals)
        try:
            condition = render(task.properties["condition"], ctx, where=f"task '{task.id}' property 'condition'")
        except ExpressionError as exc:
            tr.error = str(exc)
            await self._log_error(unit, tr, tr.error)
            await ops.save_properties(unit.conn, tr.id, {**(tr.properties or {}), "result": "FAILED"})
            tr.properties = {**(tr.properties or {}), "result": "FAILED"}
            await repo.save_task_run_state(unit.conn, tr)
            return
        decision = wait_for_rules.after_round(tr, condition, now)
        if decision.result is not None:
            tr.properties = {**(tr.properties or {}), "result": decision.result}
            await ops.save_properties(unit.conn, tr.id, tr.properties)
            level = "WARNING" if decision.reason.startswith("Max") else "INFO"
            await self._log(unit, tr, level, f"{decision.reason} after {wait_for_rules.current_round(tr)} "
                                             f"iteration(s)")
            return
        tr.outputs = {**(tr.outputs or {}), "iterationCount": wait_for_rules.current_round(tr) + 1}
        tr.next_attempt_at = decision.next_round_at
        await repo.save_task_run_state(unit.conn, tr)
        await repo.set_next_attempt_at(unit.conn, tr.id, decision.next_round_at)
        view.invalidate()

    async def _toggle_trigger(self, unit: Unit, execution: Execution, task: Task, tr: TaskRun, now: datetime) -> None:
        """The Toggle task: set the named trigger's enabled state through ``self.trigger_toggler``
        (installed by the control plane; in this transaction); a refusal fails the task run."""
        props = tr.properties or {}
        namespace = props.get("namespace") or execution.namespace
        flow_id = props.get("flowId") or execution.flow_id
        trigger_id, enabled = props["trigger"], bool(props.get("enabled"))
        error = None
        if self.trigger_toggler is None:
            error = f"task '{task.id}': triggers cannot be toggled: no scheduler runs in this control plane"
        else:
            try:
                await self.trigger_toggler(unit.conn, namespace, flow_id, trigger_id, enabled)
            except (NotFoundError, InvalidArgumentError) as exc:
                error = f"task '{task.id}': cannot toggle trigger '{trigger_id}' of {namespace}.{flow_id}: {exc}"
        if error is None:
            await self._log(unit, tr, "INFO", f"trigger '{trigger_id}' of {namespace}.{flow_id} "
                                             f"{'enabled' if enabled else 'disabled'}")
            return
        await self._fail_started(unit, task, tr, error, now)

    async def _fail_started(self, unit: Unit, task: Task, tr: TaskRun, error: str, now: datetime) -> None:
        """End a control-plane task run (Toggle, Resume) FAILED with ``error``, logged at ERROR."""
        tr.error = error
        tr.ended_at = now
        change_state(tr, apply_allow_failure(task, State.FAILED), now, f"task run {tr.id} ({tr.task_id})")
        await repo.save_task_run_state(unit.conn, tr)
        await self._log_error(unit, tr, error)

    async def _resume_other(self, unit: Unit, execution: Execution, task: Task, tr: TaskRun, now: datetime) -> None:
        """The Resume task: resume the named PAUSED execution (in a savepoint: a refusal leaves
        it untouched); a refusal fails the task run with the reason."""
        props = tr.properties or {}
        target = props["executionId"]
        error = None
        if target == execution.id:
            error = f"task '{task.id}': an execution cannot resume itself"
        else:
            try:
                async with unit.conn.begin_nested():
                    await self.resume(unit, target, dict(props.get("inputs") or {}))
            except (NotFoundError, FailedPreconditionError, InvalidArgumentError) as exc:
                error = f"task '{task.id}': cannot resume execution {target}: {exc}"
        if error is None:
            await self._log(unit, tr, "INFO", f"execution {target} resumed")
            return
        await self._fail_started(unit, task, tr, error, now)

    async def _log_error(self, unit: Unit, tr: TaskRun, message: str) -> None:
        await repo.append_logs(
            unit.conn,
            [{"execution_id": tr.execution_id, "task_run_id": tr.id, "task_id": tr.task_id,
              "attempt": tr.attempt, "level": "ERROR", "message": message, "timestamp": repo.utcnow()}],
        )

    async def advance_safely(
        self, unit: Unit, execution_id: str, locked: Execution | None = None, *, clear_dirty: bool = True,
        task_runs: list[TaskRun] | None = None,
    ) -> Execution | None:
        """Advance inside a savepoint; on an unexpected error keep what was already recorded and
        put the execution on the executor queue for the sweep loop to retry (in this
        transaction, so the retry is as durable as what was recorded).

        Args:
            locked, clear_dirty, task_runs: See :meth:`advance`.

        Returns:
            What :meth:`advance` returned, or None when it failed.
        """
        if not unit.savepoints:
            try:
                return await self.advance(unit, execution_id, locked, clear_dirty=clear_dirty, task_runs=task_runs)
            except Exception as exc:
                raise AdvanceFailed(f"advancing execution {execution_id} failed: {exc}") from exc
        try:
            async with unit.conn.begin_nested():
                advanced = await self.advance(unit, execution_id, locked, clear_dirty=clear_dirty, task_runs=task_runs)
                # The advance's deferred writes fail here, inside the savepoint, if they fail
                # (sent by the RELEASE, a failure would leave the whole transaction aborted).
                await pipeline.flush(unit.conn)
                return advanced
        except Exception:
            log.exception("advancing execution %s failed; the executor sweep will retry", execution_id)
            await unit.advance_soon(execution_id)
            return None

    async def fail_execution(self, unit: Unit, execution_id: str, error: str) -> None:
        """End an execution FAILED outside any task (e.g. the executor kept failing on it)."""
        execution = await repo.lock_execution(unit.conn, execution_id)
        if execution is None or execution.state.is_terminal:
            return
        now = repo.utcnow()
        execution.error = error
        execution.ended_at = now
        change_state(execution, State.FAILED, now, f"execution {execution_id}")
        await repo.save_execution_state(unit.conn, execution)
        await repo.dequeue_execution_task_runs(unit.conn, execution_id)
        await repo.request_cancel(unit.conn, execution_id)
        await repo.clear_execution_dirty(unit.conn, execution_id)
        unit.executions.add(execution_id)
        await self._on_terminal(unit, execution)

    # ------------------------------------------------------------------------------------------
    # worker results

    async def _lock_for_result(self, unit: Unit, claims: TaskTokenClaims) -> tuple[Execution, TaskRun] | None:
        execution = await repo.lock_execution(unit.conn, claims.execution_id)
        if execution is None:
            return None
        tr = await repo.lock_running_task_run(unit.conn, claims.task_run_id, claims.attempt, claims.lease_epoch)
        if tr is None:
            return None
        return execution, tr

    async def _lock_with_task_runs(
        self, unit: Unit, claims: TaskTokenClaims
    ) -> tuple[Execution | None, TaskRun | None, list[TaskRun]]:
        """Lock the execution and read all its task runs (two statements, one round trip):
        (execution or None, the task run of ``claims`` or None, every task run).

        Under the execution lock only a claim changes a task run's attempt or lease epoch, and
        a claim never touches a RUNNING one, so the fence (:func:`holds_lease`) checked on these
        rows holds until the transaction ends without locking the task run row too."""
        execution, runs = await repo.lock_execution_with_task_runs(unit.conn, claims.execution_id)
        if execution is None:
            return None, None, []
        return execution, next((r for r in runs if r.id == claims.task_run_id), None), runs

    async def complete(
        self, unit: Unit, claims: TaskTokenClaims, outputs: dict[str, Any] | None, state: State
    ) -> Completed | None:
        """Record a successful attempt and advance the execution (one read of the task runs
        serves both: the advance works on them as recorded here). Returns what was recorded
        now (:class:`Completed`), None for a repeat of a completion already recorded.

        Kestra's ``warningOnRetry``: a task run whose retry policy sets it and that succeeds
        after more than one attempt ends WARNING (then ``allowWarning`` applies as usual).

        Raises:
            NotFoundError: the token is stale (lease lost, task run re-dispatched or ended). A
                repeat of a completion already recorded with the same token is accepted.
        """
        execution, tr, runs = await self._lock_with_task_runs(unit, claims)
        if execution is None or tr is None or not holds_lease(tr, claims):
            if (tr is not None and (tr.attempt, tr.lease_epoch) == (claims.attempt, claims.lease_epoch)
                    and tr.state in (State.SUCCESS, State.WARNING)):
                return None  # the same completion reported again (a retried call): already recorded
            raise NotFoundError(f"task run {claims.task_run_id} attempt {claims.attempt}: lease is no longer held")
        flow = await self._load_flow(unit.conn, execution.namespace, execution.flow_id, execution.flow_revision)
        task = flow.find_task(tr.task_id)
        now = repo.utcnow()
        self._keep_log_file(unit, execution, task, tr, claims.attempt)
        attempt_state = state
        if state is State.SUCCESS and self._warn_after_retries(flow, tr):
            state = State.WARNING
        final = apply_allow_failure(task, state)
        tr.outputs = outputs
        tr.error = None  # an earlier failed attempt's error stays on that attempt only
        tr.ended_at = now
        change_state(tr, final, now, f"task run {tr.id} ({tr.task_id})")
        await repo.finish_attempt_and_save(unit.conn, tr, claims.attempt, attempt_state, now)
        tr.worker_id = None
        log_bytes = 0
        for attempt in tr.attempts:
            if attempt.number == claims.attempt:  # as recorded: the advance reads attempts too
                attempt.state, attempt.ended_at = attempt_state, now
                attempt.histories.append(StateHistory(attempt_state, now))
                log_bytes = attempt.log_bytes
        unit.executions.add(execution.id)
        faults.hit("result.attempt_recorded")
        await self._advance_after_result(unit, execution, now, runs)
        faults.hit("result.advanced")
        return Completed(execution, flow, log_bytes)

    async def fail(
        self,
        unit: Unit,
        claims: TaskTokenClaims,
        error: str,
        reason: str,
        outputs: dict[str, Any] | None = None,
        *,
        log_error: bool = False,
    ) -> None:
        """Record a failed attempt (reason TASK_ERROR, TIMEOUT or CANCELLED) and advance.

        When a retry policy applies (the task's own ``retry``, else the nearest ancestor's, else
        the flow's: :func:`controlplane.engine.retry.resolve_retry`) and allows another attempt,
        the task run is retried as Kestra's executor does (FEATURES.md §7): with
        ``RETRY_FAILED_TASK`` it goes RETRYING and its next attempt starts at the retry date (a
        durable timer, see :meth:`start_due_attempt`); with ``CREATE_NEW_EXECUTION`` it and the
        execution end RETRIED and a new execution of the flow revision is created at the retry
        date. ``errors`` tasks therefore run only once retries are exhausted. Otherwise a FAILED
        task run with ``allowFailure`` is recorded WARNING (SUCCESS with ``allowWarning``); a
        task stopped because its execution was killed is KILLED and never retried.

        ``log_error``: also store ``error`` as an ERROR log line; False for a worker's own report
        (the worker already logged it), True for a failure the control plane decided.

        Raises:
            NotFoundError: the token is stale.
        """
        if reason == "WORKER_SHUTDOWN":
            await self.lose(unit, claims, Lost("WORKER_SHUTDOWN"))
            return
        locked = await self._lock_for_result(unit, claims)
        if locked is None:
            outcome = await repo.attempt_outcome(unit.conn, claims.task_run_id, claims.attempt)
            if outcome is not None and outcome[0] in (State.FAILED, State.KILLED) and outcome[1] == reason:
                return  # the same failure reported again (a retried call): already recorded
            # Any other end (e.g. LEASE_EXPIRED: the lease was lost first) makes this result stale.
            raise NotFoundError(f"task run {claims.task_run_id} attempt {claims.attempt}: lease is no longer held")
        execution, tr = locked
        flow = await self._load_flow(unit.conn, execution.namespace, execution.flow_id, execution.flow_revision)
        task = flow.find_task(tr.task_id)
        now = repo.utcnow()
        killed = reason == "CANCELLED" or execution.kill_requested
        await repo.finish_attempt(unit.conn, tr.id, claims.attempt, State.KILLED if killed else State.FAILED,
                                  reason=reason, error=error)
        self._keep_log_file(unit, execution, task, tr, claims.attempt)
        tr.outputs = outputs
        tr.error = error
        await repo.clear_lease(unit.conn, tr.id)
        if error and not killed and log_error:
            await self._log_error(unit, tr, error)
        unit.executions.add(execution.id)
        if not killed and await self._retry_after_failure(unit, flow, execution, task, tr, now):
            return
        tr.ended_at = now
        change_state(tr, State.KILLED if killed else apply_allow_failure(task, State.FAILED), now,
                     f"task run {tr.id} ({tr.task_id})")
        await repo.save_task_run_state(unit.conn, tr)
        if execution.kill_requested and await ops.has_running_on_workers(unit.conn, execution.id):
            # A killed execution only ends once its last running task run has stopped: the 20
            # reports of a 20-wide kill need not each decide the whole execution again.
            return
        await self._advance_after_result(unit, execution, now)

    @staticmethod
    def _keep_log_file(unit: Unit, execution: Execution, task: Task, tr: TaskRun, attempt: int) -> None:
        """Task ``logToFile: true``: have the ended attempt's log file written after commit."""
        if is_truthy(task.properties.get("logToFile")):
            unit.log_files.append(LogFileRequest(execution.namespace, execution.flow_id, execution.id,
                                                 tr.task_id, tr.id, attempt))

    async def lose(self, unit: Unit, claims: TaskTokenClaims, lost: Lost) -> None:
        """An attempt ended without a result (lease expired, worker shut down).

        The task run is re-dispatched as a new attempt (it does not consume the task's retry
        policy) unless its execution is being killed (-> KILLED) or it was already lost
        ``max_redeliveries`` times (-> FAILED).

        Raises:
            NotFoundError: the token is stale (someone else already handled this attempt).
        """
        locked = await self._lock_for_result(unit, claims)
        if locked is None:
            raise NotFoundError(f"task run {claims.task_run_id} attempt {claims.attempt}: lease is no longer held")
        execution, tr = locked
        now = repo.utcnow()
        await repo.finish_attempt(unit.conn, tr.id, claims.attempt, State.FAILED, reason=lost.reason)
        unit.executions.add(execution.id)
        if execution.kill_requested or execution.state.is_terminal:
            # Never re-dispatch work of an execution that is killed or already over.
            tr.ended_at = now
            change_state(tr, State.KILLED, now)
        elif (group_id := await wd_store.group_of(unit.conn, tr.id)) is not None:
            # Its WorkingDirectory's files were on the lost worker: the group starts again.
            why = f"worker {claims.worker_id or tr.worker_id} lost ({lost.reason}) while running task '{tr.task_id}'"
            error = await groups.restart(self, unit, execution.id, group_id, why, self._max_redeliveries)
            if error is None:
                return
            tr.error, tr.ended_at = error, now
            change_state(tr, State.FAILED, now)
            await self._log_error(unit, tr, error)
        elif tr.redeliveries < self._max_redeliveries:
            await repo.requeue_for_redelivery(unit.conn, tr.id, claims.lease_epoch)
            unit.tasks_queued = True
            log.info("task run %s (%s) attempt %d lost (%s); re-queued", tr.id, tr.task_id, claims.attempt, lost.reason)
            return
        else:
            tr.error = f"attempt {claims.attempt} lost ({lost.reason}) after {tr.redeliveries} re-dispatches"
            tr.ended_at = now
            change_state(tr, State.FAILED, now)
            await self._log_error(unit, tr, tr.error)
        await repo.save_task_run_state(unit.conn, tr, clear_lease=True)
        await self.advance_safely(unit, execution.id)

    async def fail_unserved(self, unit: Unit, execution_id: str, task_run_id: str, error: str) -> bool:
        """Fail a task run that waited in the dispatch queue past the schedule-to-start limit
        with no live worker able to take it (``Settings.schedule_to_start_seconds``).

        The wait is recorded as a failed attempt with ``error`` (also logged at ERROR) and the
        task run ends FAILED (WARNING/SUCCESS with ``allowFailure``/``allowWarning``); the retry
        policy does not apply (as Temporal's schedule-to-start timeout: a retry would wait in
        the same queue). ``errors``/``finally`` branches then run as after any failure.

        Returns:
            False when there is nothing to do any more (claimed by a worker meanwhile, killed,
            or the execution is over).
        """
        conn = unit.conn
        execution = await repo.lock_execution(conn, execution_id)
        if execution is None or execution.state.is_terminal:
            return False
        tr = await repo.lock_task_run(conn, task_run_id)
        if tr is None or tr.state.is_terminal or not await repo.dequeue_task_run(conn, task_run_id):
            return False
        flow = await self._load_flow(conn, execution.namespace, execution.flow_id, execution.flow_revision)
        task = flow.find_task(tr.task_id)
        now = repo.utcnow()
        attempt = await repo.record_unstarted_attempt(conn, tr.id, error)
        tr.attempt = attempt.number
        tr.attempts.append(attempt)
        tr.started_at = tr.started_at or now
        if tr.state is not State.RUNNING:
            change_state(tr, State.RUNNING, now, f"task run {tr.id} ({tr.task_id})")
        tr.error = error
        tr.ended_at = now
        await self._log_error(unit, tr, error)
        change_state(tr, apply_allow_failure(task, State.FAILED), now, f"task run {tr.id} ({tr.task_id})")
        await repo.save_task_run_state(conn, tr, clear_lease=True)
        unit.executions.add(execution.id)
        await self._advance_after_result(unit, execution, now)
        return True

    # ------------------------------------------------------------------------------------------
    # retries (FEATURES.md §7) and attempts started by the executor

    async def start_due_attempt(self, unit: Unit, execution_id: str, task_run_id: str) -> None:
        """Act on a task run whose ``next_attempt_at`` has come (called by the executor sweep).

        - RETRYING (a retry date) or CREATED (a first attempt whose properties failed to render
          when the task run was created): the next attempt starts. Its properties are rendered
          again, with ``taskrun.attemptsCount`` = attempts made so far, as Kestra renders them
          at the start of every attempt; the task run is put on the dispatch queue and a
          RETRYING execution is RUNNING again. A rendering error is that attempt failing: it is
          recorded as an attempt and the retry policy applies again.
        - RETRIED (``behavior: CREATE_NEW_EXECUTION``): the new execution of the same flow
          revision, with the same inputs and labels, is created and started (``original_id`` =
          the chain's first execution, attempt number + 1).
        - Anything else (killed meanwhile): the timer is dropped.

        The timer lives in Postgres (``task_runs.next_attempt_at``), so a retry scheduled before a
        control-plane restart still happens after it. Safe to call twice: the execution lock and
        the re-check of the timer make the second call a no-op.
        """
        conn = unit.conn
        execution = await repo.lock_execution(conn, execution_id)
        if execution is None:
            return
        tr = await repo.lock_task_run(conn, task_run_id)
        now = repo.utcnow()
        if tr is None or tr.next_attempt_at is None or tr.next_attempt_at > now:
            return
        await repo.set_next_attempt_at(conn, tr.id, None)
        tr.next_attempt_at = None
        unit.executions.add(execution.id)
        if tr.state is State.RETRIED:
            await self._create_retry_execution(unit, execution, tr, now)
            return
        if tr.state is State.PAUSED:
            await self._resume_by_timer(unit, execution, tr, now)
            return
        if tr.state is State.RUNNING and tr.task_type == wait_for_rules.TYPE:
            await self.advance_safely(unit, execution.id)  # the next WaitFor round starts
            return
        if tr.state is State.RETRYING and tr.task_type == subflow_rules.TYPE:
            if not execution.state.is_terminal and not execution.kill_requested:
                change_state(tr, State.RUNNING, now, f"task run {tr.id} ({tr.task_id})")
                await repo.save_task_run_state(conn, tr)
                flow = await self._load_flow(conn, execution.namespace, execution.flow_id, execution.flow_revision)
                execution.task_runs = await repo.load_task_runs(conn, execution.id)
                view = ExecutionView(flow, execution)
                await self._start_subflow(unit, execution, view, flow.find_task(tr.task_id), view.get(tr.id), now)
            await self.advance_safely(unit, execution.id)
            return
        if tr.state not in (State.CREATED, State.RETRYING, State.RESTARTED):
            return
        if execution.state.is_terminal or execution.kill_requested:
            # Ended or killed while waiting (kill normally dequeues the parked row itself).
            await repo.unpark(conn, tr.id)
            tr.ended_at = now
            change_state(tr, State.KILLED, now, f"task run {tr.id} ({tr.task_id})")
            await repo.save_task_run_state(conn, tr)
            await self.advance_safely(unit, execution.id)
            return
        flow = await self._load_flow(conn, execution.namespace, execution.flow_id, execution.flow_revision)
        task = flow.find_task(tr.task_id)
        execution.task_runs = await repo.load_task_runs(conn, execution.id)
        view = ExecutionView(flow, execution)
        upcoming = replace(view.get(tr.id), attempt=tr.attempt + 1)
        ctx = expression_context(flow, execution, view, task, upcoming, self._globals)
        try:
            properties = _render_properties(task, ctx)
            timeout = _rendered_timeout(task, properties)
        except ExpressionError as exc:
            await self._fail_unstarted_attempt(unit, flow, execution, task, tr, str(exc), now)
            return
        await repo.release_for_dispatch(conn, tr.id, properties, timeout)
        unit.tasks_queued = True
        if execution.state is State.RETRYING:
            change_state(execution, State.RUNNING, now, f"execution {execution.id}")
            await repo.save_execution_state(conn, execution)

    async def _fail_unstarted_attempt(
        self, unit: Unit, flow: Flow, execution: Execution, task: Any, tr: TaskRun, error: str, now: datetime
    ) -> None:
        """An attempt that failed before reaching a worker (its properties did not render):
        recorded as a failed attempt, then retried or failed like a worker's failure."""
        conn = unit.conn
        await repo.unpark(conn, tr.id)
        attempt = await repo.record_unstarted_attempt(conn, tr.id, error)
        tr.attempt = attempt.number
        tr.attempts.append(attempt)
        tr.started_at = tr.started_at or now
        change_state(tr, State.RUNNING, now, f"task run {tr.id} ({tr.task_id})")
        tr.error = error
        await self._log_error(unit, tr, error)
        if await self._retry_after_failure(unit, flow, execution, task, tr, now):
            return
        tr.ended_at = now
        change_state(tr, apply_allow_failure(task, State.FAILED), now, f"task run {tr.id} ({tr.task_id})")
        await repo.save_task_run_state(conn, tr)
        await self._advance_after_result(unit, execution, now)

    async def _retry_after_failure(
        self, unit: Unit, flow: Flow, execution: Execution, task: Any, tr: TaskRun, now: datetime
    ) -> bool:
        """Apply the retry policy to a task run whose attempt just failed (already recorded).

        Returns:
            True when the task run is retried (RETRYING with a retry date, or RETRIED with a new
            execution scheduled); False when it must fail (no policy, retries exhausted, or the
            execution is being killed or is over).
        """
        if execution.state.is_terminal or execution.kill_requested or execution.state is State.KILLING:
            return False
        if task.type in FLOWABLES:
            return False  # only runnable task runs are retried (a flowable's retry re-runs its child)
        resolved = retry_rules.resolve_retry(flow, task.id)
        if resolved is None:
            return False
        policy = resolved.policy
        if policy.behavior is retry_rules.RetryBehavior.CREATE_NEW_EXECUTION:
            original_created = execution.original_created_at or execution.created_at or now
            due = retry_rules.next_execution_at(policy, execution.attempt_number, now, original_created)
            if due is None or not can_transition(execution.state, State.RETRIED):
                return False
            await self._end_retried(unit, execution, tr, due, now)
            await self._log(unit, tr, "INFO",
                            f"execution attempt {execution.attempt_number} failed; a new execution of the flow "
                            f"starts at {due.isoformat()} ({policy.type} retry of {resolved.source})")
            return True
        attempts = await repo.load_attempts(unit.conn, tr.id)
        counted = retry_rules.counted_attempts(attempts)
        if not counted:
            return False
        first_start = min(a.started_at for a in attempts if a.started_at is not None)
        due = retry_rules.next_attempt_at(policy, counted, first_start)
        if due is None:
            return False
        change_state(tr, State.RETRYING, now, f"task run {tr.id} ({tr.task_id})")
        tr.next_attempt_at = due
        await repo.save_task_run_state(unit.conn, tr)
        await repo.park_for_next_attempt(unit.conn, tr.id, due)
        limit = f" of {policy.max_attempts}" if policy.max_attempts else ""
        await self._log(unit, tr, "INFO",
                        f"attempt {len(counted)} failed; attempt {len(counted) + 1}{limit} starts at "
                        f"{due.isoformat()} ({policy.type} retry of {resolved.source})")
        await self._sync_retrying(unit, execution.id, now)
        return True

    async def _end_retried(self, unit: Unit, execution: Execution, tr: TaskRun, due: datetime, now: datetime) -> None:
        """``CREATE_NEW_EXECUTION``: the task run, its ancestors and the execution end RETRIED
        (Kestra's ``markWithTaskRunAs(RETRIED)``); nothing else of the execution starts: queued
        task runs are KILLED and running ones are asked to stop. The task run keeps the timer
        that creates the new execution."""
        conn = unit.conn
        tr.ended_at = now
        change_state(tr, State.RETRIED, now, f"task run {tr.id} ({tr.task_id})")
        await repo.save_task_run_state(conn, tr)
        await repo.set_next_attempt_at(conn, tr.id, due)
        runs = await repo.load_task_runs(conn, execution.id)
        by_id = {r.id: r for r in runs}
        ancestors: set[str] = set()
        parent = tr.parent_id
        while parent is not None and parent in by_id:
            ancestors.add(parent)
            parent = by_id[parent].parent_id
        await repo.dequeue_execution_task_runs(conn, execution.id)
        for r in runs:
            if r.id == tr.id or r.state.is_terminal or (r.worker_id is not None and r.id not in ancestors):
                continue  # held by a worker: asked to stop below, its result is still recorded
            target = State.RETRIED if r.id in ancestors else State.KILLED
            if can_transition(r.state, target):
                r.ended_at = now
                change_state(r, target, now, f"task run {r.id} ({r.task_id})")
                await repo.save_task_run_state(conn, r)
        await repo.request_cancel(conn, execution.id)
        execution.ended_at = now
        change_state(execution, State.RETRIED, now, f"execution {execution.id}")
        await repo.save_execution_state(conn, execution)
        await repo.clear_execution_dirty(conn, execution.id)
        unit.executions.add(execution.id)
        await self._on_terminal(unit, execution)

    async def _create_retry_execution(self, unit: Unit, execution: Execution, tr: TaskRun, now: datetime) -> None:
        """Create and start the next execution of a ``CREATE_NEW_EXECUTION`` retry chain."""
        new = Execution(
            id=new_id(),
            namespace=execution.namespace,
            flow_id=execution.flow_id,
            flow_revision=execution.flow_revision,
            state=State.CREATED,
            histories=[StateHistory(State.CREATED, now)],
            inputs=dict(execution.inputs),
            labels=dict(execution.labels),
            parent_id=execution.parent_id,
            original_id=execution.original_id or execution.id,
            trigger=execution.trigger,
            caller_execution_id=execution.caller_execution_id,
            caller_task_run_id=execution.caller_task_run_id,
            created_at=now,
            attempt_number=execution.attempt_number + 1,
            original_created_at=execution.original_created_at or execution.created_at,
        )
        await repo.insert_execution(unit.conn, new, None)
        await self._log(unit, tr, "INFO", f"retry: execution {new.id} created (attempt {new.attempt_number})")
        unit.executions.add(new.id)
        await self.advance_safely(unit, new.id)

    @staticmethod
    def _warn_after_retries(flow: Flow, tr: TaskRun) -> bool:
        """Kestra's ``warningOnRetry``: the policy sets it and the task run (read with its
        attempts) made more than one attempt (lost attempts do not count)."""
        resolved = retry_rules.resolve_retry(flow, tr.task_id)
        if resolved is None or not resolved.policy.warning_on_retry:
            return False
        return len(retry_rules.counted_attempts(tr.attempts)) > 1

    async def _advance_after_result(
        self, unit: Unit, execution: Execution, now: datetime, task_runs: list[TaskRun] | None = None
    ) -> None:
        """Advance after a task run ended; a RETRYING execution is RUNNING while it advances (its
        final state may be decided now) and RETRYING again if it still only waits for a retry.
        ``task_runs``: as :meth:`advance` takes them."""
        retrying = execution.state is State.RETRYING
        if retrying:
            change_state(execution, State.RUNNING, now, f"execution {execution.id}")
            await repo.save_execution_state(unit.conn, execution)
        advanced = await self.advance_safely(unit, execution.id, locked=execution, clear_dirty=False,
                                             task_runs=task_runs)
        if advanced is None:
            pending_retry = await repo.has_pending_retry(unit.conn, execution.id)
        else:  # advance just read every task run under the lock
            pending_retry = any(tr.state is State.RETRYING and tr.next_attempt_at is not None
                                for tr in advanced.task_runs)
        if retrying or pending_retry:
            await self._sync_retrying(unit, execution.id, now)

    async def _sync_retrying(self, unit: Unit, execution_id: str, now: datetime) -> None:
        """Kestra shows a RETRYING execution while a task run waits for its retry date: RETRYING
        when every unfinished task run is either waiting for a retry or a flowable waiting on its
        children; RUNNING as soon as anything else is going on."""
        execution = await repo.lock_execution(unit.conn, execution_id)
        if execution is None or execution.state not in (State.RUNNING, State.RETRYING):
            return
        runs = await repo.load_task_runs(unit.conn, execution_id)
        target = State.RETRYING if _only_waiting_for_retries(runs) else State.RUNNING
        if target is not execution.state:
            change_state(execution, target, now, f"execution {execution_id}")
            await repo.save_execution_state(unit.conn, execution)
            unit.executions.add(execution_id)

    async def _log(self, unit: Unit, tr: TaskRun, level: str, message: str) -> None:
        await repo.append_logs(
            unit.conn,
            [{"execution_id": tr.execution_id, "task_run_id": tr.id, "task_id": tr.task_id,
              "attempt": tr.attempt, "level": level, "message": message, "timestamp": repo.utcnow()}],
        )

    # ------------------------------------------------------------------------------------------
    # kill

    async def kill(self, unit: Unit, execution_id: str) -> Execution:
        """Kill an execution (as Kestra's kill): queued task runs become KILLED at once, running
        ones are asked to stop; the execution is KILLING until they have, then KILLED. A QUEUED
        execution (waiting for a concurrency slot) is KILLED at once. Subflow executions it
        started are not killed here: the caller kills :meth:`children` in their own
        transactions (one lock at a time, so parent and child never wait on each other); they
        are also put on the executor queue, and :meth:`advance` kills an execution whose caller
        was killed, so the cascade survives a crash between the two.

        Raises:
            NotFoundError: unknown execution.
            FailedPreconditionError: the execution has already terminated.
        """
        execution = await repo.lock_execution(unit.conn, execution_id)
        if execution is None:
            raise NotFoundError(f"execution '{execution_id}' not found")
        if execution.state.is_terminal:
            raise FailedPreconditionError(f"execution '{execution_id}' already ended in state {execution.state}")
        now = repo.utcnow()
        execution.kill_requested = True
        if execution.state in (State.CREATED, State.QUEUED) and not execution.concurrency_slot:
            execution.ended_at = now
            change_state(execution, State.KILLED, now, f"execution {execution_id}")
            await repo.save_execution_state(unit.conn, execution)
            await repo.clear_execution_dirty(unit.conn, execution_id)
            unit.executions.add(execution_id)
            await self._on_terminal(unit, execution)
            return execution
        change_state(execution, State.KILLING, now, f"execution {execution_id}")
        await repo.save_execution_state(unit.conn, execution)
        for child in await ops.running_children(unit.conn, execution_id):
            # Durable intent: the sweep advances each child, which then kills itself (see
            # advance), even if the caller's own kills of the children never happen.
            await unit.advance_soon(child)
        dequeued = set(await repo.dequeue_execution_task_runs(unit.conn, execution_id))
        for tr in await repo.load_task_runs(unit.conn, execution_id):
            if tr.id in dequeued:  # not started, or awaiting re-dispatch after a lost attempt
                tr.ended_at = now
                change_state(tr, State.KILLED, now)
                await repo.save_task_run_state(unit.conn, tr)
                if tr.next_attempt_at is not None:
                    await repo.set_next_attempt_at(unit.conn, tr.id, None)
        await repo.request_cancel(unit.conn, execution_id)
        unit.executions.add(execution_id)
        result = await self.advance(unit, execution_id)
        assert result is not None
        return result

    async def children(self, unit: Unit, execution_id: str) -> list[str]:
        """Ids of the unfinished subflow executions ``execution_id`` started (to kill them too)."""
        return await ops.running_children(unit.conn, execution_id)

    # ------------------------------------------------------------------------------------------
    # concurrency limits (flow ``concurrency``: limit, behavior QUEUE / CANCEL / FAIL)

    async def _take_slot(self, unit: Unit, flow: Flow, execution: Execution, now: datetime) -> bool:
        """Take one of the flow's ``concurrency.limit`` slots for an execution about to run.

        The flow's counter row is locked (``FOR UPDATE``) for the rest of the transaction, so a
        burst of starts is counted exactly. When every slot is taken, ``behavior`` decides:
        QUEUE (default) leaves the execution QUEUED (started in creation order as slots free
        up), CANCEL ends it CANCELLED and FAIL ends it FAILED, as Kestra does.

        Returns:
            True when the execution holds a slot and may run now.
        """
        limit = int((flow.concurrency or {}).get("limit") or 0)
        if limit < 1:
            return True
        in_use = await ops.lock_flow_slots(unit.conn, flow.namespace, flow.id)
        if in_use < limit:
            await ops.add_flow_slots(unit.conn, flow.namespace, flow.id, 1)
            await ops.set_slot(unit.conn, execution.id, True)
            execution.concurrency_slot = True
            return True
        behavior = str((flow.concurrency or {}).get("behavior") or "QUEUE").upper()
        what = f"execution {execution.id}"
        if behavior == "QUEUE":
            if execution.state is not State.QUEUED:
                change_state(execution, State.QUEUED, now, what)
                await repo.save_execution_state(unit.conn, execution)
                unit.executions.add(execution.id)
            return False
        execution.ended_at = now
        if behavior == "FAIL":
            execution.error = f"flow {flow.namespace}.{flow.id}: concurrency limit of {limit} reached (behavior FAIL)"
            change_state(execution, State.FAILED, now, what)
        else:
            change_state(execution, State.CANCELLED, now, what)
        await repo.save_execution_state(unit.conn, execution)
        unit.executions.add(execution.id)
        await self._on_terminal(unit, execution)
        return False

    async def _on_terminal(self, unit: Unit, execution: Execution) -> None:
        """An execution just ended: free its concurrency slot (handing it to the oldest QUEUED
        execution of the flow, which starts at once) and wake the execution that started it
        through a Subflow task (the executor sweep advances it)."""
        conn = unit.conn
        if execution.concurrency_slot:
            await ops.lock_flow_slots(conn, execution.namespace, execution.flow_id)
            await ops.set_slot(conn, execution.id, False)
            execution.concurrency_slot = False
            queued = await ops.oldest_queued(conn, execution.namespace, execution.flow_id)
            if queued is None:
                await ops.add_flow_slots(conn, execution.namespace, execution.flow_id, -1)
            else:
                # The slot moves (the count is unchanged) and the queued execution starts now; it
                # is already row-locked here, so this takes no new lock.
                await ops.set_slot(conn, queued, True)
                unit.executions.add(queued)
                await self.advance_safely(unit, queued)
        if execution.caller_execution_id:
            await unit.advance_soon(execution.caller_execution_id)

    # ------------------------------------------------------------------------------------------
    # pause and resume

    async def _pause(self, unit: Unit, tr: TaskRun, now: datetime) -> None:
        """PAUSE a Pause task run; with a duration or timeout, set its durable resume timer."""
        change_state(tr, State.PAUSED, now, f"task run {tr.id} ({tr.task_id})")
        await repo.save_task_run_state(unit.conn, tr)
        after = pause_rules.resume_after(tr)
        if after is not None:
            tr.next_attempt_at = now + timedelta(seconds=after[0])
            await repo.set_next_attempt_at(unit.conn, tr.id, tr.next_attempt_at)

    async def _resume_by_timer(self, unit: Unit, execution: Execution, tr: TaskRun, now: datetime) -> None:
        """A PAUSED task run's timer ran out: apply ``behavior`` (or fail on ``timeout``)."""
        after = pause_rules.resume_after(tr)
        target = after[1] if after is not None else State.RUNNING
        what = f"task run {tr.id} ({tr.task_id})"
        if target is State.RUNNING:
            change_state(tr, State.RUNNING, now, what)
            await ops.save_properties(unit.conn, tr.id, {**(tr.properties or {}), "resumedByTimer": True})
        else:
            # Kestra's history of a timed-out pause: PAUSED, RUNNING, FAILED.
            change_state(tr, State.RUNNING, now, what)
            tr.ended_at = now
            if target is State.FAILED:
                tr.error = "Pause timed out before it was resumed"
                await self._log_error(unit, tr, f"task '{tr.task_id}': {tr.error}")
            change_state(tr, target, now, what)
        await repo.save_task_run_state(unit.conn, tr)
        if target is State.CANCELLED:
            await self._stop_everything(unit, execution, now)
        await self.advance_safely(unit, execution.id)

    async def _stop_everything(self, unit: Unit, execution: Execution, now: datetime) -> None:
        """Nothing else of the execution starts and running task runs are asked to stop (a
        Pause with ``behavior: CANCEL``; the execution then ends CANCELLED)."""
        execution.kill_requested = True
        await repo.save_execution_state(unit.conn, execution)
        dequeued = set(await repo.dequeue_execution_task_runs(unit.conn, execution.id))
        for r in await repo.load_task_runs(unit.conn, execution.id):
            if r.id in dequeued:
                r.ended_at = now
                change_state(r, State.KILLED, now)
                await repo.save_task_run_state(unit.conn, r)
        await repo.request_cancel(unit.conn, execution.id)

    async def resume(self, unit: Unit, execution_id: str, inputs: dict[str, Any]) -> Execution:
        """Resume a PAUSED execution (Kestra's ``POST /executions/{id}/resume``): every PAUSED
        Pause task run goes RUNNING (a manual resume always succeeds, whatever ``behavior``),
        with output ``onResume`` = the inputs validated against its ``onResume`` declarations
        (typed and defaulted like flow inputs).

        Raises:
            NotFoundError: unknown execution.
            FailedPreconditionError: the execution is not PAUSED.
            InputValidationError: an input is missing, of the wrong type, or not declared in
                ``onResume`` (the message names the flow, task and input).
        """
        conn = unit.conn
        execution = await repo.lock_execution(conn, execution_id)
        if execution is None:
            raise NotFoundError(f"execution '{execution_id}' not found")
        paused = [] if execution.state.is_terminal or execution.kill_requested else [
            tr for tr in await repo.load_task_runs(conn, execution_id)
            if tr.state is State.PAUSED and tr.task_type == pause_rules.TYPE
        ]
        if not paused:
            raise FailedPreconditionError(
                f"execution '{execution_id}' is {execution.state}, only a PAUSED execution can be resumed"
            )
        flow = await self._load_flow(conn, execution.namespace, execution.flow_id, execution.flow_revision)
        now = repo.utcnow()
        typed_by_run: dict[str, dict[str, Any] | None] = {}
        for tr in paused:
            task = flow.find_task(tr.task_id)
            declared = pause_rules.on_resume_inputs(task)
            where = f"flow {flow.namespace}.{flow.id}: task '{task.id}'"
            unknown = sorted(set(inputs) - {d.id for d in declared})
            if unknown:
                raise InputValidationError(
                    f"{where}: onResume declares no input {', '.join(repr(u) for u in unknown)}"
                    + (f" (declared: {', '.join(d.id for d in declared)})" if declared else "")
                )
            if not declared:
                typed_by_run[tr.id] = None
                continue
            pseudo = Flow(id=flow.id, namespace=flow.namespace, tasks=(), inputs=declared)
            try:
                typed = coerce_inputs(pseudo, inputs)
            except InputValidationError as exc:
                raise InputValidationError(f"{where}: onResume: {exc}") from None
            try:
                json.dumps(typed, allow_nan=False, default=str)
            except ValueError:
                raise InputValidationError(f"{where}: onResume: NaN or Infinity cannot be stored") from None
            typed_by_run[tr.id] = typed
        for tr in paused:
            change_state(tr, State.RUNNING, now, f"task run {tr.id} ({tr.task_id})")
            if typed_by_run[tr.id] is not None:
                tr.outputs = {**(tr.outputs or {}), "onResume": typed_by_run[tr.id]}
            await repo.save_task_run_state(conn, tr)
            await repo.set_next_attempt_at(conn, tr.id, None)
            await self._log(unit, tr, "INFO", "resumed through the API")
        if execution.state is State.PAUSED:
            change_state(execution, State.RUNNING, now, f"execution {execution_id}")
            await repo.save_execution_state(conn, execution)
        unit.executions.add(execution_id)
        await self.advance_safely(unit, execution_id)
        result = await repo.get_execution(conn, execution_id, with_task_runs=False)
        assert result is not None
        return result

    # ------------------------------------------------------------------------------------------
    # subflows

    async def _start_subflow(
        self, unit: Unit, execution: Execution, view: ExecutionView, task: Task, tr: TaskRun, now: datetime
    ) -> None:
        """Create and start the child execution of a Subflow task run (its properties are
        rendered). A flow that does not exist or inputs it refuses fail the task run."""
        conn = unit.conn
        props = tr.properties or {}
        namespace, flow_id, revision = props["namespace"], props["flowId"], int(props.get("revision") or 0)
        error: str | None = None
        child: Execution | None = None
        row = await repo.get_flow(conn, namespace, flow_id, revision)
        if await ops.caller_depth(conn, execution.id, MAX_SUBFLOW_DEPTH) >= MAX_SUBFLOW_DEPTH:
            error = (f"task '{task.id}': subflows nest deeper than {MAX_SUBFLOW_DEPTH} executions "
                     f"(a flow that calls itself?); {namespace}.{flow_id} was not started")
        elif row is None or row.deleted:
            at = f" revision {revision}" if revision else ""
            error = f"task '{task.id}': Unable to find flow {namespace}.{flow_id}{at} to start as a subflow"
        else:
            child_flow = await self._load_flow(conn, namespace, flow_id, row.revision)
            try:
                if child_flow.disabled:
                    raise InvalidArgumentError(f"flow {namespace}.{flow_id} is disabled")
                inputs = coerce_inputs(child_flow, props.get("inputs") or {})
                inputs = seal_secret_values(inputs, sealed_values(execution.inputs))
                json.dumps(inputs, allow_nan=False, default=str)
            except (InvalidArgumentError, ValueError, TypeError) as exc:
                error = f"task '{task.id}': cannot start subflow {namespace}.{flow_id}: {exc}"
            else:
                labels = dict(props.get("labels") or {})
                if props.get("inheritLabels"):
                    labels = {**{k: v for k, v in execution.labels.items() if not k.startswith("system.")}, **labels}
                labels["system.correlationId"] = execution.labels.get("system.correlationId", execution.id)
                child = new_execution(child_flow, inputs, labels, now)
                child.caller_execution_id, child.caller_task_run_id = execution.id, tr.id
                child.trigger = {
                    "id": task.id,
                    "type": subflow_rules.TYPE,
                    "variables": {"executionId": execution.id, "namespace": execution.namespace,
                                  "flowId": execution.flow_id, "flowRevision": execution.flow_revision,
                                  "taskRunId": tr.id},
                }
                if props.get("scheduleDate"):
                    child.trigger["scheduleDate"] = props["scheduleDate"]
        if child is None:
            tr.error = error
            tr.ended_at = now
            change_state(tr, apply_allow_failure(task, State.FAILED), now, f"task run {tr.id} ({tr.task_id})")
            await repo.save_task_run_state(conn, tr)
            await self._log_error(unit, tr, error or "")
            return
        await repo.insert_execution(conn, child, None)
        attempt = await ops.start_attempt(conn, tr.id, now)
        tr.attempt = attempt.number
        tr.attempts.append(attempt)
        tr.outputs = {"executionId": child.id}
        await repo.save_task_run_state(conn, tr)
        due = subflow_rules.scheduled_for(child.trigger)
        await self._log(unit, tr, "INFO", f"subflow execution {child.id} of {namespace}.{flow_id} created"
                        + (f", scheduled to start at {due.isoformat()}" if due is not None and due > now else ""))
        view.invalidate()
        unit.executions.add(child.id)
        if due is not None and due > now:
            await repo.mark_execution_dirty(conn, child.id, due)  # the executor sweep starts it then
        elif unit.nested_starts >= _MAX_NESTED_STARTS:
            await unit.advance_soon(child.id)  # the executor sweep starts it
        else:
            unit.nested_starts += 1
            try:
                await self.advance_safely(unit, child.id)
            finally:
                unit.nested_starts -= 1
        # The child may already have ended (nothing to run): decide on its current state.
        view.subflows[tr.id] = (await ops.child_executions(conn, [tr.id])).get(tr.id) or ChildExecution(
            child.id, State.CREATED)

    async def _subflow_result(self, unit: Unit, task: Task, tr: TaskRun, view: ExecutionView, done: State) -> State:
        """Outputs of a Subflow task run that is done (Kestra's ``Subflow.Output``):
        ``executionId``, and with ``wait`` the child's ``state`` and ``outputs`` (its flow
        outputs, else the deprecated task ``outputs`` map rendered in the child's context; a
        map that fails to render fails the task run)."""
        child = view.subflows.get(tr.id)
        if child is not None and tr.attempt:
            attempt_state = {State.SUCCESS: State.SUCCESS, State.WARNING: State.WARNING}.get(
                child.state, State.KILLED if done is State.KILLED else State.FAILED)
            if (tr.properties or {}).get("wait", True) or done is State.KILLED:
                await repo.finish_attempt(unit.conn, tr.id, tr.attempt, attempt_state,
                                          reason=None if attempt_state in (State.SUCCESS, State.WARNING) else "SUBFLOW")
            else:
                await repo.finish_attempt(unit.conn, tr.id, tr.attempt, State.SUCCESS)
        if child is None or not (tr.properties or {}).get("wait", True) or done is State.KILLED:
            return done
        outputs: dict[str, Any] = {"executionId": child.id, "state": child.state.value}
        result = done
        if child.outputs:
            outputs["outputs"] = child.outputs
        elif task.properties.get("outputs"):
            try:
                outputs["outputs"] = await self._render_in_child(unit, child.id, task)
            except ExpressionError as exc:
                tr.error = f"task '{task.id}': Failed to extract outputs with the error: {exc}"
                await self._log_error(unit, tr, tr.error)
                result = State.FAILED
        tr.outputs = outputs
        if result.is_failed or result is State.WARNING:
            level = "ERROR" if result.is_failed else "WARNING"
            await self._log(unit, tr, level, f"Subflow execution {child.id} ends in {child.state} state")
        return result

    async def _retry_subflow(self, unit: Unit, flow: Flow, task: Task, tr: TaskRun, now: datetime) -> bool:
        """A Subflow whose child execution failed is retried like a runnable task (its own,
        an ancestor's or the flow's ``retry``, ``RETRY_FAILED_TASK``): RETRYING until the retry
        date, then a new child execution (one attempt per child). True when retried."""
        resolved = retry_rules.resolve_retry(flow, task.id)
        if resolved is None or resolved.policy.behavior is retry_rules.RetryBehavior.CREATE_NEW_EXECUTION:
            return False
        attempts = await repo.load_attempts(unit.conn, tr.id)
        counted = retry_rules.counted_attempts(attempts)
        if not counted:
            return False
        first_start = min(a.started_at for a in attempts if a.started_at is not None)
        due = retry_rules.next_attempt_at(resolved.policy, counted, first_start)
        if due is None:
            return False
        tr.ended_at = None
        change_state(tr, State.RETRYING, now, f"task run {tr.id} ({tr.task_id})")
        tr.next_attempt_at = due
        await repo.save_task_run_state(unit.conn, tr)
        await repo.set_next_attempt_at(unit.conn, tr.id, due)
        await self._log(unit, tr, "INFO", f"subflow attempt {len(counted)} failed; attempt {len(counted) + 1} "
                                          f"starts at {due.isoformat()} ({resolved.policy.type} retry of "
                                          f"{resolved.source})")
        return True

    async def _render_in_child(self, unit: Unit, child_id: str, task: Task) -> Any:
        """Render the Subflow task's deprecated ``outputs`` map with the child's variables."""
        child = await repo.get_execution(unit.conn, child_id)
        assert child is not None
        child_flow = await self._load_flow(unit.conn, child.namespace, child.flow_id, child.flow_revision)
        ctx = expression_context(child_flow, child, ExecutionView(child_flow, child), globals_=self._globals)
        return render(task.properties["outputs"], ctx, where=f"task '{task.id}' property 'outputs'")

    # ------------------------------------------------------------------------------------------
    # restart and replay

    async def restart(self, unit: Unit, execution_id: str) -> Execution:
        """Restart a FAILED or KILLED execution in place (Kestra's restart): same execution id;
        every FAILED/KILLED runnable task run is RESTARTED and gets a new attempt (rendered
        again), the flowables above them go RUNNING again, and the ``errors``/``finally`` task
        runs of those flowables (and of the flow) are removed so they run again if needed. The
        execution goes RESTARTED, then RUNNING.

        Raises:
            NotFoundError: unknown execution.
            FailedPreconditionError: the execution is not FAILED or KILLED, or has no failed
                task run ("No task found to restart").
        """
        conn = unit.conn
        execution = await repo.lock_execution(conn, execution_id)
        if execution is None:
            raise NotFoundError(f"execution '{execution_id}' not found")
        if execution.state not in (State.FAILED, State.KILLED):
            raise FailedPreconditionError(
                f"execution '{execution_id}' is {execution.state}: only a FAILED or KILLED execution can be "
                "restarted; No task found to restart"
            )
        runs = await repo.load_task_runs(conn, execution_id)
        by_id = {tr.id: tr for tr in runs}
        kids: dict[str | None, list[TaskRun]] = {}
        for tr in runs:
            kids.setdefault(tr.parent_id, []).append(tr)
        failed = [tr for tr in runs if tr.state.is_failed and not any(c.state.is_failed for c in kids.get(tr.id, ()))]
        # A failed task of a WorkingDirectory: its directory is gone, the whole group runs again.
        failed = groups.whole_groups(failed, by_id)
        if not failed and execution.error is None:
            raise FailedPreconditionError(f"execution '{execution_id}': No task found to restart")
        # Subflow restartBehavior RETRY_FAILED: the failed child execution restarts in place.
        in_place = await self._restart_children(unit, [tr for tr in failed if tr.task_type == subflow_rules.TYPE])
        now = repo.utcnow()
        reopened: set[str | None] = {None}
        for tr in failed:
            parent = tr.parent_id
            while parent is not None:
                reopened.add(parent)
                parent = by_id[parent].parent_id
        removed: set[str] = set()

        def remove(tr: TaskRun) -> None:
            removed.add(tr.id)
            for child in kids.get(tr.id, ()):
                remove(child)

        for tr in runs:
            if tr.branch in ("errors", "finally") and tr.parent_id in reopened:
                remove(tr)
        for tr in failed:
            if tr.task_type in FLOWABLES and tr.id not in in_place:
                remove(tr)  # a flowable that failed by itself starts again from scratch
        await ops.delete_task_runs(conn, sorted(removed))
        failed_ids = {tr.id for tr in failed}
        for tr in runs:
            if tr.id in removed:
                continue
            what = f"task run {tr.id} ({tr.task_id})"
            if tr.id in reopened:
                if tr.state.is_terminal:
                    change_state(tr, State.RESTARTED, now, what)
                    change_state(tr, State.RUNNING, now, what)
                    tr.ended_at = None
                    await ops.reset_for_restart(conn, tr)
            elif tr.id in in_place:
                change_state(tr, State.RESTARTED, now, what)
                change_state(tr, State.RUNNING, now, what)
                tr.outputs, tr.error, tr.ended_at = {"executionId": in_place[tr.id]}, None, None
                await ops.reset_for_restart(conn, tr)
                attempt = await ops.start_attempt(conn, tr.id, now)
                tr.attempt = attempt.number
                tr.attempts.append(attempt)
                await repo.save_task_run_state(conn, tr)
            elif tr.id in failed_ids:
                change_state(tr, State.RESTARTED, now, what)
                tr.outputs, tr.error, tr.ended_at = None, None, None
                await ops.reset_for_restart(conn, tr)
                await repo.park_for_next_attempt(conn, tr.id, now)
        execution.kill_requested = False
        execution.error = None
        execution.outputs = None
        execution.ended_at = None
        change_state(execution, State.RESTARTED, now, f"execution {execution_id}")
        await repo.save_execution_state(conn, execution)
        unit.executions.add(execution_id)
        await unit.advance_soon(execution_id)
        return execution

    async def _restart_children(self, unit: Unit, subflows: list[TaskRun]) -> dict[str, str]:
        """Restart in place the failed child executions of failed Subflow task runs whose
        ``restartBehavior`` is RETRY_FAILED (Kestra's default); returns task run id -> child id
        for those restarted. A child that cannot be restarted is left alone (the task run then
        starts a new child, as with NEW_EXECUTION)."""
        restarted: dict[str, str] = {}
        for tr in subflows:
            props = tr.properties or {}
            child_id = (tr.outputs or {}).get("executionId")
            if props.get("restartBehavior", subflow_rules.RETRY_FAILED) != subflow_rules.RETRY_FAILED or not child_id:
                continue
            try:
                async with unit.conn.begin_nested():
                    await self.restart(unit, str(child_id))
            except (NotFoundError, FailedPreconditionError):
                continue
            restarted[tr.id] = str(child_id)
        return restarted

    async def replay(self, unit: Unit, execution_id: str, task_run_id: str) -> Execution:
        """Replay a terminated execution from one of its task runs (Kestra's replay): a new
        execution of the same flow revision, inputs and labels (``parent_id`` = the replayed
        execution, ``original_id`` kept), holding copies of the task runs created before the
        chosen one (outside it), the chosen one's ancestors RUNNING again, the chosen runnable
        RESTARTED (a flowable is created afresh); everything after it runs again.

        Raises:
            NotFoundError: unknown execution or task run ("No task found").
            FailedPreconditionError: the execution has not terminated.
        """
        conn = unit.conn
        source = await repo.lock_execution(conn, execution_id)
        if source is None:
            raise NotFoundError(f"execution '{execution_id}' not found")
        if not source.state.is_terminal:
            raise FailedPreconditionError(
                f"execution '{execution_id}' is {source.state}: only a terminated execution can be replayed"
            )
        runs = await repo.load_task_runs(conn, execution_id)
        by_id = {tr.id: tr for tr in runs}
        chosen = by_id.get(task_run_id)
        if chosen is None:
            raise NotFoundError(f"execution '{execution_id}': No task found with task run id '{task_run_id}'")
        ancestors: set[str] = set()
        parent = chosen.parent_id
        while parent is not None:
            ancestors.add(parent)
            parent = by_id[parent].parent_id
        within: set[str] = {chosen.id}
        for tr in runs:
            if tr.parent_id in within:
                within.add(tr.id)
        now = repo.utcnow()
        flow = await self._load_flow(conn, source.namespace, source.flow_id, source.flow_revision)
        new = new_execution(flow, dict(source.inputs), {}, now)
        new.labels = dict(source.labels)
        new.parent_id = source.id
        new.original_id = source.original_id or source.id
        new.trigger = source.trigger
        new.caller_execution_id, new.caller_task_run_id = source.caller_execution_id, source.caller_task_run_id
        new.histories = [StateHistory(State.CREATED, now)]
        await repo.insert_execution(conn, new, None)
        ids: dict[str, str] = {}
        seq = 0
        for tr in runs:
            keep = tr.id in ancestors or (tr.seq < chosen.seq and tr.id not in within) or (
                tr.id == chosen.id and tr.task_type not in FLOWABLES)
            if not keep:
                continue
            seq += 1
            ids[tr.id] = new_id()
            copy = replace(tr, id=ids[tr.id], execution_id=new.id, parent_id=ids.get(tr.parent_id or "", None),
                           seq=seq, histories=list(tr.histories), attempts=[])
            what = f"task run {copy.id} ({copy.task_id})"
            if tr.id in ancestors and copy.state.is_terminal:
                change_state(copy, State.RESTARTED, now, what)
                change_state(copy, State.RUNNING, now, what)
                copy.ended_at = None
            elif tr.id == chosen.id:
                if copy.state.is_terminal:
                    change_state(copy, State.RESTARTED, now, what)
                copy.outputs, copy.error, copy.ended_at = None, None, None
            await ops.copy_task_run(conn, tr.id, copy, with_attempts=True)
            if tr.id == chosen.id:
                await repo.park_for_next_attempt(conn, copy.id, now)
        await self._log_execution(unit, new.id, f"replay of execution {source.id} from task run {chosen.id} "
                                                f"({chosen.task_id})")
        unit.executions.add(new.id)
        await self.advance_safely(unit, new.id)
        result = await repo.get_execution(conn, new.id, with_task_runs=False)
        assert result is not None
        return result

    async def _log_execution(self, unit: Unit, execution_id: str, message: str, level: str = "INFO") -> None:
        await repo.append_logs(unit.conn, [{"execution_id": execution_id, "task_run_id": None, "task_id": None,
                                            "attempt": 0, "level": level, "message": message,
                                            "timestamp": repo.utcnow()}])

    # ------------------------------------------------------------------------------------------
    # labels

    async def set_labels(self, unit: Unit, execution_id: str, labels: dict[str, str]) -> Execution:
        """Replace an execution's labels (Kestra's "set labels"); ``system.*`` labels the
        execution already has are kept and cannot be changed.

        Raises:
            NotFoundError: unknown execution.
            InvalidArgumentError: a ``system.`` label is given.
        """
        execution = await repo.lock_execution(unit.conn, execution_id)
        if execution is None:
            raise NotFoundError(f"execution '{execution_id}' not found")
        system = sorted(k for k in labels if k.startswith("system."))
        if system:
            raise InvalidArgumentError(f"labels: system labels cannot be set: {', '.join(system)}")
        execution.labels = {**{k: v for k, v in execution.labels.items() if k.startswith("system.")}, **labels}
        await ops.save_labels(unit.conn, execution_id, execution.labels)
        unit.executions.add(execution_id)
        return execution


def _row_fields(execution: Execution) -> tuple[Any, ...]:
    """What :func:`repo.save_execution_state` writes, to skip the write when nothing changed."""
    return (execution.state, len(execution.histories), execution.outputs, execution.error, execution.started_at,
            execution.ended_at, dict(execution.labels), execution.kill_requested)


def new_execution(flow: Flow, inputs: dict[str, Any], labels: dict[str, str], now: datetime) -> Execution:
    """A CREATED execution of ``flow`` (not stored): the flow's labels (not ``system.*``) under
    the given ones, and ``system.correlationId`` = its own id unless given."""
    execution = Execution(
        id=new_id(),
        namespace=flow.namespace,
        flow_id=flow.id,
        flow_revision=flow.revision,
        state=State.CREATED,
        histories=[StateHistory(State.CREATED, now)],
        inputs=inputs,
        labels={**{k: v for k, v in flow.labels.items() if not k.startswith("system.")}, **labels},
        created_at=now,
    )
    execution.labels.setdefault("system.correlationId", execution.id)
    return execution


def _only_waiting_for_retries(runs: list[TaskRun]) -> bool:
    """True when some task run waits for its retry date and nothing else is going on (every
    other unfinished task run is a flowable with unfinished children)."""
    open_parents = {r.parent_id for r in runs if not r.state.is_terminal and r.parent_id is not None}
    waiting = False
    for r in runs:
        if r.state.is_terminal or r.id in open_parents:
            continue
        if r.state is State.RETRYING and r.next_attempt_at is not None:
            waiting = True
            continue
        return False
    return waiting


def _typed_output(out: Output, ctx: dict[str, Any]) -> Any:
    """Render one flow output and type it like an input of the same type (Kestra's flow
    ``outputs``): a STRING output of a map is its JSON text; a value of the wrong type fails.

    Raises:
        ExpressionError: rendering failed. InputValueError: wrong type (message names the output).
    """
    where = f"flow output '{out.id}'"
    value = render(out.value, ctx, where=where)
    if value is None:
        return None
    if out.type == "STRING" and isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return coerce_value(Input(id=out.id, type=out.type, required=False), value)
    except InputValueError as exc:
        raise InputValueError(f"{where} of type {out.type}: {exc} (got {value!r})") from None


#: Largest rendered properties sent to a worker (bytes of JSON); the gRPC message limit is far
#: above it, so one task cannot make a poll response undeliverable.
MAX_PROPERTIES_BYTES = 1024 * 1024


def _render_properties(task: Task, ctx: dict[str, Any]) -> dict[str, Any]:
    """Render a runnable task's properties for its next attempt.

    Raises:
        ExpressionError: rendering failed, or the result is over :data:`MAX_PROPERTIES_BYTES`.
    """
    raw = UNRENDERED_PROPERTIES.get(task.type, frozenset())
    properties = render({k: v for k, v in task.properties.items() if k not in raw}, ctx, where=f"task '{task.id}'")
    properties.update({k: task.properties[k] for k in raw if k in task.properties})  # rendered per item later
    if task.type == OUTPUT_VALUES_TYPE and isinstance(properties.get("values"), dict):
        # Kestra renders OutputValues' map with render(String) per value: an expression gives
        # its printed text (`{{ n + 1 }}` -> "4"), literals written in the YAML keep their type.
        written = task.properties.get("values") or {}
        properties["values"] = {
            key: print_value(value) if _is_template(written.get(key)) and not isinstance(value, str) else value
            for key, value in properties["values"].items()
        }
    try:
        text = json.dumps(properties, separators=(",", ":"), default=str, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ExpressionError(
            f"task '{task.id}': a property renders to NaN or Infinity, which JSON (and a worker) cannot hold"
        ) from None
    if "\\u0000" in text:
        # Postgres cannot store NUL; keep the data as the API does (NUL -> U+FFFD).
        properties = _without_nul(properties)
    size = len(text.encode())
    if size > MAX_PROPERTIES_BYTES:
        raise ExpressionError(
            f"task '{task.id}': its rendered properties are {size} bytes; at most {MAX_PROPERTIES_BYTES} "
            "go to a worker (pass large data through internal storage)"
        )
    return properties


OUTPUT_VALUES_TYPE = "io.kestra.plugin.core.output.OutputValues"


def _rendered_timeout(task: Task, properties: dict[str, Any] | None) -> float | None:
    """The attempt's timeout in seconds: ``task.timeout`` when written as a duration, else the
    rendered ``timeout`` expression (``"{{ inputs.limit }}"`` -> ``PT5S``), as Kestra renders it.

    Raises:
        ExpressionError: the rendered value is not a positive ISO-8601 duration (names the task).
    """
    if task.timeout is not None or not properties or properties.get("timeout") in (None, ""):
        return task.timeout
    value = properties["timeout"]
    try:
        seconds = check_seconds(float(value), value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else parse_duration(str(value))
    except ValueError as exc:
        raise ExpressionError(f"task '{task.id}' property 'timeout': {exc}") from None
    if seconds <= 0:
        raise ExpressionError(f"task '{task.id}' property 'timeout': must be positive, got {value!r}")
    return seconds


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters in strings (and keys) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(str(k)): _without_nul(v) for k, v in value.items()}
    return value
