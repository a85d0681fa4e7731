"""KVService servicer: Kestra's namespace key-value store over gRPC."""

from __future__ import annotations

import json
import math

import grpc

from controlplane.api import access, checks, convert
from controlplane.api.storage import guarded
from controlplane.errors import InvalidArgumentError, NotFoundError
from controlplane.kv import MAX_VALUE_BYTES, KVEntry, check_key, check_reach, typed_value
from controlplane.kv import store as kv_store
from controlplane.storage import uris
from controlplane.storage.scope import scope_for_token
from kestrel.v1 import kv_pb2, kv_pb2_grpc

_TYPES = {
    kv_pb2.KV_TYPE_STRING: "STRING", kv_pb2.KV_TYPE_NUMBER: "NUMBER", kv_pb2.KV_TYPE_BOOLEAN: "BOOLEAN",
    kv_pb2.KV_TYPE_DATETIME: "DATETIME", kv_pb2.KV_TYPE_DATE: "DATE", kv_pb2.KV_TYPE_DURATION: "DURATION",
    kv_pb2.KV_TYPE_JSON: "JSON",
}
_TYPE_NUMBERS = {name: number for number, name in _TYPES.items()}





def entry_to_proto(entry: KVEntry) -> kv_pb2.KVEntry:
    """The wire form of a KV entry."""
    return kv_pb2.KVEntry(
        namespace=entry.namespace, key=entry.key, type=_TYPE_NUMBERS.get(entry.type, kv_pb2.KV_TYPE_UNSPECIFIED),
        value_json=json.dumps(entry.value, ensure_ascii=False), expires_at=convert.ts(entry.expires_at),
        updated_at=convert.ts(entry.updated_at),
    )


class KVServicer(kv_pb2_grpc.KVServiceServicer):
    """Thin gRPC layer over :mod:`controlplane.kv.store`."""

    def __init__(self, control_plane) -> None:
        self._cp = control_plane

    async def _namespace(self, conn, namespace: str, token: str, *, write: bool = False) -> str:
        """The target namespace, checked, and refused when a task's namespace may not reach it.
        A write needs the token of the task run's current attempt (a stale attempt's is NOT_FOUND)."""
        access.task_token_required(token)
        from_ns = None
        if token:
            from_ns = (await scope_for_token(conn, self._cp.signer, token, current=write)).namespace
        namespace = namespace or from_ns or ""
        checks.text_field(namespace, "namespace", max_len=checks.MAX_NAMESPACE, required=True)
        uris.namespace_path(namespace)
        check_reach(namespace, from_ns)
        access.namespace(namespace)
        return namespace

    @guarded
    async def SetKV(self, request: kv_pb2.SetKVRequest, context: grpc.aio.ServicerContext):
        check_key(request.key)
        if len(request.value_json.encode()) > MAX_VALUE_BYTES:
            raise InvalidArgumentError(f"value_json: a KV value has at most {MAX_VALUE_BYTES} bytes of JSON")
        try:
            value = checks.clean_json(json.loads(request.value_json))  # NUL -> U+FFFD, no NaN
        except RecursionError:
            raise InvalidArgumentError("value_json: nested too deeply") from None
        except ValueError as exc:
            raise InvalidArgumentError(f"value_json: not JSON: {exc}") from None
        if _has_lone_surrogate(value):
            raise InvalidArgumentError("value_json: a string holds a lone UTF-16 surrogate (not valid Unicode)")
        if request.type not in (kv_pb2.KV_TYPE_UNSPECIFIED, *_TYPES):
            raise InvalidArgumentError(f"type: unknown KV type {request.type}")
        kv_type, value = typed_value(value, _TYPES.get(request.type))
        ttl = request.ttl_seconds
        if ttl < 0 or not math.isfinite(ttl) or ttl > 100 * 365 * 86400:
            raise InvalidArgumentError(f"ttl_seconds: must be between 0 and 100 years, got {ttl}")
        async with self._cp.transaction() as unit:
            namespace = await self._namespace(unit.conn, request.namespace, request.task_token, write=True)
            entry = await kv_store.set_entry(unit.conn, namespace, request.key, kv_type, value, ttl or None,
                                             request.overwrite)
        if entry is None:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"key '{request.key}' already exists in namespace '{namespace}' and overwrite is false",
            )
        return kv_pb2.SetKVResponse(entry=entry_to_proto(entry))

    @guarded
    async def GetKV(self, request: kv_pb2.GetKVRequest, context: grpc.aio.ServicerContext):
        check_key(request.key)
        async with self._cp.transaction() as unit:
            namespace = await self._namespace(unit.conn, request.namespace, request.task_token)
            entry = await kv_store.get_entry(unit.conn, namespace, request.key, request.inherit)
        if entry is None:
            raise NotFoundError(f"The key '{request.key}' does not exist in the namespace '{namespace}'.")
        return kv_pb2.GetKVResponse(entry=entry_to_proto(entry))

    @guarded
    async def ListKV(self, request: kv_pb2.ListKVRequest, context: grpc.aio.ServicerContext):
        checks.text_field(request.prefix, "prefix", max_len=255)
        async with self._cp.transaction() as unit:
            namespace = await self._namespace(unit.conn, request.namespace, request.task_token)
            entries = await kv_store.list_entries(unit.conn, namespace, request.prefix)
        return kv_pb2.ListKVResponse(entries=[entry_to_proto(e) for e in entries])

    @guarded
    async def DeleteKV(self, request: kv_pb2.DeleteKVRequest, context: grpc.aio.ServicerContext):
        check_key(request.key)
        async with self._cp.transaction() as unit:
            namespace = await self._namespace(unit.conn, request.namespace, request.task_token, write=True)
            deleted = await kv_store.delete_entry(unit.conn, namespace, request.key)
        return kv_pb2.DeleteKVResponse(deleted=deleted)


def _has_lone_surrogate(value: object) -> bool:
    """Whether a JSON value holds a string Postgres cannot store (an unpaired surrogate)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
