"""Start an execution for a trigger: the execution carries Kestra's trigger record
(``{"id", "type", "variables"}``), which expressions see as ``trigger``."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from controlplane.engine.unit import Unit
from controlplane.errors import InputValidationError
from controlplane.flows import coerce_inputs
from controlplane.model import Execution, Flow
from controlplane.model.state import State, StateHistory
from controlplane.store import repository as repo
from controlplane.store.ids import new_id

log = logging.getLogger(__name__)


def trigger_inputs(flow: Flow, raw: dict[str, Any]) -> dict[str, Any]:
    """Inputs of a triggered execution.

    Kestra starts a triggered execution even when a required input has no value (the corpus
    flow ``trigger-flow-listener-namespace-condition`` declares one its trigger never gives): an
    input without value is left empty instead of refusing the start. Values that are given are
    still typed and validated.

    Raises:
        InputValidationError: a given value is of the wrong type or breaks its rule.
    """
    lenient = tuple(
        replace(i, required=False) if raw.get(i.id) is None and i.defaults is None else i for i in flow.inputs
    )
    try:
        return coerce_inputs(replace(flow, inputs=lenient), raw)
    except InputValidationError:
        raise
    except (ValueError, OverflowError, RecursionError, TypeError) as exc:
        raise InputValidationError(f"flow {flow.namespace}.{flow.id}: inputs cannot be read: {exc}") from None


def prepare(
    flow: Flow, record: dict[str, Any], raw_inputs: dict[str, Any], labels: dict[str, str] | None = None
) -> Execution:
    """A CREATED execution of ``flow`` carrying trigger ``record`` (not stored yet).

    Raises:
        InputValidationError: the trigger's inputs do not fit the flow's declarations.
    """
    inputs = trigger_inputs(flow, raw_inputs)
    now = repo.utcnow()
    execution = Execution(
        id=new_id(),
        namespace=flow.namespace,
        flow_id=flow.id,
        flow_revision=flow.revision,
        state=State.CREATED,
        histories=[StateHistory(State.CREATED, now)],
        inputs=inputs,
        labels={**{k: v for k, v in flow.labels.items() if not k.startswith("system.")}, **(labels or {})},
        trigger=record,
        created_at=now,
    )
    execution.labels.setdefault("system.correlationId", execution.id)
    return execution


async def insert(unit: Unit, execution: Execution) -> None:
    """Store a prepared execution and put it on the executor queue (the executor sweep starts
    it): a tick costs the scheduler a few inserts, so one scheduler keeps up with many
    every-second schedules."""
    await repo.insert_execution(unit.conn, execution, None)
    await unit.advance_soon(execution.id)


async def launch(
    unit: Unit,
    executor: Any,
    flow: Flow,
    record: dict[str, Any],
    raw_inputs: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> Execution:
    """Insert a CREATED execution of ``flow`` with trigger ``record`` and advance it in the
    caller's transaction (webhook calls: the caller may wait for it).

    Raises:
        InputValidationError: the trigger's inputs do not fit the flow's declarations.
    """
    execution = prepare(flow, record, raw_inputs, labels)
    await repo.insert_execution(unit.conn, execution, None)
    unit.executions.add(execution.id)
    await executor.advance_safely(unit, execution.id)
    return execution
