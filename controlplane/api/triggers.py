"""TriggerService: list triggers with their next fire time, enable/disable them.

Also the client side used by ``kestrel trigger …`` (:func:`list_triggers`,
:func:`set_trigger_enabled` on a :class:`worker_sdk.client.KestrelClient`), so protobuf stays at
this edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc

from controlplane.api import checks
from controlplane.api.convert import ts
from controlplane.api.status import rpc
from kestrel.v1 import trigger_pb2, trigger_pb2_grpc


def trigger_to_proto(row: Any) -> trigger_pb2.Trigger:
    """A ``triggers`` row (:class:`controlplane.scheduler.store.TriggerRow`) as the API shows it."""
    in_flow_disabled = row.signature.endswith("|disabled")
    reason = row.disabled_reason or ("disabled by the API" if row.disabled else "")
    if in_flow_disabled and not row.disabled:
        reason = "disabled in the flow (trigger or flow 'disabled: true')"
    return trigger_pb2.Trigger(
        namespace=row.namespace,
        flow_id=row.flow_id,
        trigger_id=row.trigger_id,
        type=row.type,
        enabled=not row.disabled and not in_flow_disabled,
        disabled_reason=reason,
        next_fire_time=ts(row.next_date) if not row.disabled else None,
        last_fire_time=ts(row.last_date),
        flow_revision=row.flow_revision,
    )


class TriggerServicer(trigger_pb2_grpc.TriggerServiceServicer):
    """Thin gRPC layer over :class:`controlplane.scheduler.Scheduler`."""

    def __init__(self, control_plane: Any) -> None:
        self._cp = control_plane

    @rpc
    async def ListTriggers(self, request: trigger_pb2.ListTriggersRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE)
        checks.text_field(request.flow_id, "flow_id", max_len=checks.MAX_ID)
        rows = await self._cp.scheduler.list_triggers(request.namespace, request.flow_id)
        return trigger_pb2.ListTriggersResponse(triggers=[trigger_to_proto(r) for r in rows])

    @rpc
    async def SetTriggerEnabled(self, request: trigger_pb2.SetTriggerEnabledRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
        checks.text_field(request.flow_id, "flow_id", max_len=checks.MAX_ID, required=True)
        checks.text_field(request.trigger_id, "trigger_id", max_len=checks.MAX_ID, required=True)
        row = await self._cp.scheduler.set_enabled(
            request.namespace, request.flow_id, request.trigger_id, request.enabled,
            None if request.enabled else "disabled by the API",
        )
        return trigger_pb2.SetTriggerEnabledResponse(trigger=trigger_to_proto(row))


# ---------------------------------------------------------------------------------------------
# client side


@dataclass(frozen=True)
class TriggerInfo:
    """A trigger as the API reports it (``next_fire_time``/``last_fire_time`` aware UTC or None)."""

    namespace: str
    flow_id: str
    trigger_id: str
    type: str
    enabled: bool
    disabled_reason: str
    next_fire_time: datetime | None
    last_fire_time: datetime | None
    flow_revision: int


def _info(message: trigger_pb2.Trigger) -> TriggerInfo:
    def when(field: str) -> datetime | None:
        return getattr(message, field).ToDatetime(tzinfo=UTC) if message.HasField(field) else None

    return TriggerInfo(message.namespace, message.flow_id, message.trigger_id, message.type, message.enabled,
                       message.disabled_reason, when("next_fire_time"), when("last_fire_time"), message.flow_revision)


def list_triggers(client: Any, namespace: str = "", flow_id: str = "") -> list[TriggerInfo]:
    """Triggers known to the server behind ``client`` (a :class:`worker_sdk.client.KestrelClient`).

    Raises:
        worker_sdk.errors.RPCError: as the client's other calls.
    """
    stub = trigger_pb2_grpc.TriggerServiceStub(client._channel)
    resp = client._unary(stub.ListTriggers, trigger_pb2.ListTriggersRequest(namespace=namespace, flow_id=flow_id))
    return [_info(t) for t in resp.triggers]


def set_trigger_enabled(client: Any, namespace: str, flow_id: str, trigger_id: str, enabled: bool) -> TriggerInfo:
    """Enable or disable one trigger.

    Raises:
        worker_sdk.errors.NotFoundError: unknown flow or trigger.
    """
    stub = trigger_pb2_grpc.TriggerServiceStub(client._channel)
    resp = client._unary(stub.SetTriggerEnabled, trigger_pb2.SetTriggerEnabledRequest(
        namespace=namespace, flow_id=flow_id, trigger_id=trigger_id, enabled=enabled))
    return _info(resp.trigger)
