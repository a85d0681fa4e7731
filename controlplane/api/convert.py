"""Protobuf <-> model conversion. JSON-text fields are parsed and checked here."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane import secrets
from controlplane.api import checks
from controlplane.errors import InvalidArgumentError, Issue
from controlplane.model import Execution, State, StateHistory, TaskRun
from controlplane.store.repository import FlowRow, WorkerInfo
from kestrel.v1 import common_pb2, execution_pb2, flow_pb2, log_pb2, worker_pb2

LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]


def ts(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp, or None."""
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value)
    return out


def state_to_proto(state: State) -> int:
    """Model state -> ``kestrel.v1.State`` enum value."""
    return common_pb2.State.Value(f"STATE_{state.value}")


def state_from_proto(value: int) -> State:
    """``kestrel.v1.State`` enum value -> model state.

    Raises:
        InvalidArgumentError: unspecified or unknown value.
    """
    name = common_pb2.State.Name(value) if value in common_pb2.State.values() else ""
    if not name or name == "STATE_UNSPECIFIED":
        raise InvalidArgumentError(f"state: unknown state value {value}")
    return State(name.removeprefix("STATE_"))


def state_info(state: State, histories: list[StateHistory]) -> common_pb2.StateInfo:
    """``StateInfo`` with its history."""
    return common_pb2.StateInfo(
        current=state_to_proto(state),
        histories=[common_pb2.StateHistory(state=state_to_proto(h.state), date=ts(h.date)) for h in histories],
    )


def parse_json_object(text: str, field: str) -> dict[str, Any] | None:
    """Parse a JSON-object text field; empty -> None.

    Raises:
        InvalidArgumentError: not JSON, or not an object (message names ``field``).
    """
    if not text:
        return None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{field}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidArgumentError(f"{field}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise InvalidArgumentError(f"{field}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{field}: must be a JSON object, got {type(value).__name__}")
    try:
        return checks.clean_json(value)
    except RecursionError:
        raise InvalidArgumentError(f"{field}: JSON nested too deeply") from None


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON (and Postgres jsonb refuses them)."""
    raise ValueError(f"{name} is not a JSON value")


def dump_json(value: Any) -> str:
    """JSON text for a JSON-like value; empty string for None."""
    return "" if value is None else json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


def masked_json(value: Any, mask: Callable[[str], str] = secrets.mask) -> str:
    """:func:`dump_json` with secret values masked, for outputs/inputs/trigger data returned to
    clients (stored data keeps them: later tasks may need them)."""
    return mask(dump_json(value))


def labels_to_proto(labels: dict[str, str]) -> list[common_pb2.Label]:
    """Label map -> repeated Label."""
    return [common_pb2.Label(key=k, value=str(v)) for k, v in labels.items()]


def labels_from_proto(labels: Any) -> dict[str, str]:
    """Repeated Label -> map (later keys win)."""
    return {label.key: label.value for label in labels}


def issue_to_proto(issue: Issue) -> flow_pb2.ValidationIssue:
    """A validation issue on the wire."""
    return flow_pb2.ValidationIssue(path=issue.path, message=issue.message, line=issue.line, column=issue.column)


def flow_to_proto(row: FlowRow, with_source: bool = True) -> flow_pb2.Flow:
    """A stored flow revision on the wire (``source`` empty when ``with_source`` is False)."""
    spec = row.spec
    return flow_pb2.Flow(
        namespace=row.namespace,
        id=row.flow_id,
        revision=row.revision,
        source=row.source if with_source else "",
        description=spec.get("description") or "",
        labels=labels_to_proto(spec.get("labels") or {}),
        inputs=[
            flow_pb2.FlowInput(id=i["id"], type=i["type"], required=i["required"], defaults_json=i.get("defaults", ""),
                               description=i.get("description", ""))
            for i in spec.get("inputs", [])
        ],
        disabled=bool(spec.get("disabled")),
        deleted=row.deleted,
        created=ts(row.created_at),
        task_count=int(spec.get("task_count", 0)),
    )


def task_run_to_proto(tr: TaskRun, mask: Callable[[str], str] = secrets.mask) -> execution_pb2.TaskRun:
    """A task run with its attempts on the wire; ``mask`` hides secret values in its loop value,
    outputs and error (see :func:`controlplane.secrets.execution_masker`)."""
    return execution_pb2.TaskRun(
        id=tr.id,
        execution_id=tr.execution_id,
        task_id=tr.task_id,
        parent_task_run_id=tr.parent_id or "",
        value=mask(tr.value or ""),
        state=state_info(tr.state, tr.histories),
        attempts=[
            execution_pb2.TaskRunAttempt(
                attempt=a.number,
                state=state_info(a.state, a.histories),
                worker_id=a.worker_id or "",
                start_date=ts(a.started_at),
                end_date=ts(a.ended_at),
                reason=a.reason or "",
                log_file=a.log_file or "",
            )
            for a in tr.attempts
        ],
        outputs_json=masked_json(tr.outputs, mask),
        task_type=tr.task_type,
        error=mask(tr.error or ""),
    )


def execution_to_proto(
    execution: Execution,
    mask: Callable[[str], str] | None = None,
    task_run_proto: Callable[[TaskRun, Callable[[str], str]], execution_pb2.TaskRun] | None = None,
) -> execution_pb2.Execution:
    """An execution (with task runs when loaded) on the wire, with the values of secrets and of
    its SECRET inputs masked everywhere (inputs, outputs, labels, loop values, errors).

    Args:
        mask: The execution's masking function when the caller already has it (it depends
            only on the execution's inputs); built here otherwise.
        task_run_proto: Converts one task run (default :func:`task_run_to_proto`); a watcher
            passes a cached one so unchanged task runs are not converted again.
    """
    mask = mask or secrets.execution_masker(execution.inputs).mask
    task_run_proto = task_run_proto or task_run_to_proto
    return execution_pb2.Execution(
        id=execution.id,
        namespace=execution.namespace,
        flow_id=execution.flow_id,
        flow_revision=execution.flow_revision,
        state=state_info(execution.state, execution.histories),
        inputs_json=masked_json(execution.inputs, mask),
        outputs_json=masked_json(execution.outputs, mask),
        labels=labels_to_proto({k: mask(str(v)) for k, v in execution.labels.items()}),
        task_runs=[task_run_proto(tr, mask) for tr in execution.task_runs],
        start_date=ts(execution.started_at or execution.created_at),
        end_date=ts(execution.ended_at),
        error=mask(execution.error or ""),
        parent_id=execution.parent_id or "",
        original_id=execution.original_id or "",
        trigger_json=masked_json(execution.trigger, mask) if execution.trigger else "",
        caller_execution_id=execution.caller_execution_id or "",
        caller_task_run_id=execution.caller_task_run_id or "",
    )


def level_from_proto(value: int, field: str = "level") -> str:
    """``LogLevel`` -> level name; unspecified -> INFO.

    Raises:
        InvalidArgumentError: a value outside the enum.
    """
    if value == 0:
        return "INFO"
    if not 1 <= value <= len(LEVELS):
        raise InvalidArgumentError(f"{field}: unknown log level {value}")
    return LEVELS[value - 1]


def level_to_proto(name: str) -> int:
    """Level name -> ``LogLevel`` value."""
    return LEVELS.index(name) + 1 if name in LEVELS else common_pb2.LOG_LEVEL_INFO


def log_to_proto(row: Any) -> log_pb2.LogEntry:
    """A stored log row on the wire."""
    return log_pb2.LogEntry(
        sequence=row.seq,
        execution_id=row.execution_id,
        task_run_id=row.task_run_id or "",
        task_id=row.task_id or "",
        attempt=row.attempt,
        level=level_to_proto(row.level),
        message=row.message,
        timestamp=ts(row.timestamp),
    )


def worker_to_proto(worker: WorkerInfo) -> worker_pb2.WorkerInfo:
    """A registered worker on the wire."""
    return worker_pb2.WorkerInfo(
        id=worker.id, hostname=worker.hostname, sdk=worker.sdk, task_types=worker.task_types,
        worker_group=worker.worker_group, labels=labels_to_proto(worker.labels), concurrency=worker.concurrency,
        state=worker.state, registered_at=ts(worker.registered_at), last_heartbeat_at=ts(worker.last_heartbeat_at),
        running_task_runs=worker.running_task_runs,
    )
