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

from controlplane.api import access, checks
from controlplane.api.convert import ts
from controlplane.api.status import rpc
from controlplane.errors import InvalidArgumentError
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
        backfill=_backfill_to_proto(row.backfill),
    )


def _backfill_to_proto(backfill: dict[str, Any] | None) -> trigger_pb2.Backfill | None:
    if not backfill:
        return None
    return trigger_pb2.Backfill(start=ts(datetime.fromisoformat(backfill["start"])),
                                end=ts(datetime.fromisoformat(backfill["end"])),
                                next=ts(datetime.fromisoformat(backfill["next"])),
                                paused=bool(backfill.get("paused")))


def _key(request: Any) -> tuple[str, str, str]:
    checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
    checks.text_field(request.flow_id, "flow_id", max_len=checks.MAX_ID, required=True)
    checks.text_field(request.trigger_id, "trigger_id", max_len=checks.MAX_ID, required=True)
    access.namespace(request.namespace)
    return request.namespace, request.flow_id, request.trigger_id


class TriggerServicer(trigger_pb2_grpc.TriggerServiceServicer):
    """Thin gRPC layer over :class:`controlplane.scheduler.Scheduler`."""

    def __init__(self, control_plane: Any) -> None:
        self._cp = control_plane

    @rpc
    async def ListTriggers(self, request: trigger_pb2.ListTriggersRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE)
        checks.text_field(request.flow_id, "flow_id", max_len=checks.MAX_ID)
        namespace = access.listing(request.namespace)
        if namespace is None:
            return trigger_pb2.ListTriggersResponse()
        rows = await self._cp.scheduler.list_triggers(namespace, request.flow_id)
        return trigger_pb2.ListTriggersResponse(triggers=[trigger_to_proto(r) for r in rows])

    @rpc
    async def SetTriggerEnabled(self, request: trigger_pb2.SetTriggerEnabledRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
        checks.text_field(request.flow_id, "flow_id", max_len=checks.MAX_ID, required=True)
        checks.text_field(request.trigger_id, "trigger_id", max_len=checks.MAX_ID, required=True)
        access.namespace(request.namespace)
        row = await self._cp.scheduler.set_enabled(
            request.namespace, request.flow_id, request.trigger_id, request.enabled,
            None if request.enabled else "disabled by the API",
        )
        return trigger_pb2.SetTriggerEnabledResponse(trigger=trigger_to_proto(row))

    @rpc
    async def StartBackfill(self, request: trigger_pb2.StartBackfillRequest, context: grpc.aio.ServicerContext):
        key = _key(request)
        if not request.HasField("start"):
            raise InvalidArgumentError("start: required (the first date of the backfill)")
        start = checks.timestamp(request.start, "start")
        end = checks.timestamp(request.end, "end") if request.HasField("end") else None
        row = await self._cp.scheduler.start_backfill(*key, start, end)
        return trigger_pb2.StartBackfillResponse(trigger=trigger_to_proto(row))

    @rpc
    async def SetBackfillPaused(self, request: trigger_pb2.SetBackfillPausedRequest, context: grpc.aio.ServicerContext):
        row = await self._cp.scheduler.change_backfill(*_key(request), paused=request.paused)
        return trigger_pb2.SetBackfillPausedResponse(trigger=trigger_to_proto(row))

    @rpc
    async def DeleteBackfill(self, request: trigger_pb2.DeleteBackfillRequest, context: grpc.aio.ServicerContext):
        row = await self._cp.scheduler.change_backfill(*_key(request), delete=True)
        return trigger_pb2.DeleteBackfillResponse(trigger=trigger_to_proto(row))


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
    backfill_next: datetime | None = None
    backfill_end: datetime | None = None
    backfill_paused: bool = False


def _info(message: trigger_pb2.Trigger) -> TriggerInfo:
    def when(field: str) -> datetime | None:
        return getattr(message, field).ToDatetime(tzinfo=UTC) if message.HasField(field) else None

    backfill = message.backfill if message.HasField("backfill") else None
    return TriggerInfo(message.namespace, message.flow_id, message.trigger_id, message.type, message.enabled,
                       message.disabled_reason, when("next_fire_time"), when("last_fire_time"), message.flow_revision,
                       backfill.next.ToDatetime(tzinfo=UTC) if backfill else None,
                       backfill.end.ToDatetime(tzinfo=UTC) if backfill else None,
                       bool(backfill and backfill.paused))


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


def start_backfill(client: Any, namespace: str, flow_id: str, trigger_id: str, start: datetime,
                   end: datetime | None = None) -> TriggerInfo:
    """Start a backfill of a schedule (``end`` default: now).

    Raises:
        worker_sdk.errors.InvalidArgumentError: start not before end.
        worker_sdk.errors.NotFoundError: no such schedule trigger.
    """
    from google.protobuf.timestamp_pb2 import Timestamp

    def stamp(value: datetime) -> Timestamp:
        out = Timestamp()
        out.FromDatetime(value)
        return out

    stub = trigger_pb2_grpc.TriggerServiceStub(client._channel)
    request = trigger_pb2.StartBackfillRequest(namespace=namespace, flow_id=flow_id, trigger_id=trigger_id,
                                               start=stamp(start), end=stamp(end) if end else None)
    return _info(client._unary(stub.StartBackfill, request).trigger)


def change_backfill(client: Any, namespace: str, flow_id: str, trigger_id: str, action: str) -> TriggerInfo:
    """``action``: ``pause``, ``resume`` or ``delete`` the backfill in progress.

    Raises:
        worker_sdk.errors.FailedPreconditionError: no backfill in progress.
    """
    stub = trigger_pb2_grpc.TriggerServiceStub(client._channel)
    if action == "delete":
        resp = client._unary(stub.DeleteBackfill, trigger_pb2.DeleteBackfillRequest(
            namespace=namespace, flow_id=flow_id, trigger_id=trigger_id))
    else:
        resp = client._unary(stub.SetBackfillPaused, trigger_pb2.SetBackfillPausedRequest(
            namespace=namespace, flow_id=flow_id, trigger_id=trigger_id, paused=action == "pause"))
    return _info(resp.trigger)
