"""``io.kestra.plugin.core.kv.{Set,Get,GetKeys,Delete}`` and the legacy state store
``io.kestra.plugin.core.state.{Set,Get,Delete}``, through the control plane's KVService with the
task's token: the namespace defaults to the flow's; naming another one works only for an
ancestor of it (Kestra's inheritance), anything else fails the task run.

Kestra reference: ``io.kestra.plugin.core.kv.*`` (FEATURES.md §3). ``ttl`` is an ISO-8601
duration; ``kvType`` one of STRING, NUMBER, BOOLEAN, DATETIME, DATE, DURATION, JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import boolean, required
from worker_sdk.tasks.flow import parse_duration

_CORE = "io.kestra.plugin.core."
SET_TYPE = _CORE + "kv.Set"
GET_TYPE = _CORE + "kv.Get"
GET_KEYS_TYPE = _CORE + "kv.GetKeys"
DELETE_TYPE = _CORE + "kv.Delete"
STATE_SET_TYPE = _CORE + "state.Set"
STATE_GET_TYPE = _CORE + "state.Get"
STATE_DELETE_TYPE = _CORE + "state.Delete"


def _kv(ctx: TaskContext):
    if ctx.kv is None:
        raise TaskFailure("the KV store is only reachable on a worker")
    return ctx.kv


def _text(props: Mapping[str, Any], name: str, default: str = "") -> str:
    value = props.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise TaskFailure(f"property '{name}' must be text, got {type(value).__name__}")
    return value


def _refused(exc: grpc.aio.AioRpcError, what: str) -> TaskFailure:
    return TaskFailure(f"{what}: {exc.details() or exc.code().name}")


async def set_(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``kv.Set``: ``key``*, ``value``*, ``namespace``, ``overwrite`` (true), ``ttl``, ``kvType``.

    Raises:
        TaskFailure: bad properties, ``overwrite: false`` on an existing key, or a refused namespace.
    """
    key = _text(props, "key")
    if not key:
        raise TaskFailure("property 'key' is required")
    if "value" not in props or props["value"] is None:
        raise TaskFailure("property 'value' is required")
    ttl = 0.0
    if props.get("ttl") is not None:
        try:
            ttl = parse_duration(props["ttl"])
        except ValueError as exc:
            raise TaskFailure(f"property 'ttl': {exc}") from None
    kv_type = props.get("kvType")
    try:
        entry = await _kv(ctx).set(key, props["value"], namespace=_text(props, "namespace"),
                                   kv_type=str(kv_type) if kv_type is not None else None,
                                   overwrite=boolean(props, "overwrite", True), ttl_seconds=ttl)
    except ValueError as exc:
        raise TaskFailure(f"property 'kvType': {exc}") from None
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            raise TaskFailure(f"Cannot set value for key '{key}'. Key already exists and `overwrite` is set to "
                              "`false`.") from None
        raise _refused(exc, f"cannot set key '{key}'") from None
    ctx.log.debug(f"set key '{key}' in namespace '{entry.namespace}'")
    return {}


async def get(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``kv.Get``: ``key``*, ``namespace`` (default: the flow's, then its ancestors),
    ``errorOnMissing`` (false). Output ``value`` (null when missing)."""
    key = _text(props, "key")
    if not key:
        raise TaskFailure("property 'key' is required")
    namespace = _text(props, "namespace")
    try:
        entry = await _kv(ctx).get(key, namespace=namespace, inherit=not namespace)
    except grpc.aio.AioRpcError as exc:
        raise _refused(exc, f"cannot read key '{key}'") from None
    if entry is None:
        if boolean(props, "errorOnMissing", False):
            raise TaskFailure(f"The key '{key}' does not exist in the namespace '{namespace or ctx.namespace}'.")
        return {"value": None}
    return {"value": entry.value}


async def get_keys(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``kv.GetKeys``: ``prefix``, ``namespace``. Output ``keys`` (sorted)."""
    try:
        entries = await _kv(ctx).list(namespace=_text(props, "namespace"), prefix=_text(props, "prefix"))
    except grpc.aio.AioRpcError as exc:
        raise _refused(exc, "cannot list keys") from None
    return {"keys": [e.key for e in entries]}


async def delete(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``kv.Delete``: ``key``*, ``namespace``, ``errorOnMissing`` (false). Output ``deleted``."""
    key = _text(props, "key")
    if not key:
        raise TaskFailure("property 'key' is required")
    namespace = _text(props, "namespace")
    try:
        deleted = await _kv(ctx).delete(key, namespace=namespace)
    except grpc.aio.AioRpcError as exc:
        raise _refused(exc, f"cannot delete key '{key}'") from None
    if not deleted and boolean(props, "errorOnMissing", False):
        raise TaskFailure(f"The key '{key}' does not exist in the namespace '{namespace or ctx.namespace}'.")
    return {"deleted": deleted}


# Legacy state store (Kestra ``AbstractState``): a JSON map per state ``name`` (default
# ``default``), isolated by flow unless ``namespace: true`` (shared by the namespace), and by
# ``taskrun.value`` unless ``taskrunValue: false``. Kept in the KV store of the flow's namespace
# under ``state.<flow>.<name>[.<value>]`` / ``state-ns.<name>[.<value>]``.


def _state_key(ctx: TaskContext, props: Mapping[str, Any]) -> str:
    import hashlib
    import re

    name = _text(props, "name", "default")
    scope = "state-ns" if boolean(props, "namespace", False) else f"state.{ctx.flow_id}"
    key = f"{scope}.{name}"
    if boolean(props, "taskrunValue", True) and ctx.value:
        key += f".{ctx.value}"
    key = re.sub(r"[^a-zA-Z0-9._-]", "_", key)
    if len(key) > 200:  # KV keys have at most 255 characters: keep it unique with a digest
        key = key[:150] + "." + hashlib.sha256(key.encode()).hexdigest()[:32]
    return key


async def state_get(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``state.Get``: ``name`` (default ``default``), ``errorOnMissing`` (false). Output ``data``
    (the map; empty when missing)."""
    entry = await _kv(ctx).get(_state_key(ctx, props))
    if entry is None:
        if boolean(props, "errorOnMissing", False):
            raise TaskFailure(f"state '{_text(props, 'name', 'default')}' does not exist")
        return {"data": {}, "count": 0}
    data = entry.value if isinstance(entry.value, dict) else {}
    return {"data": data, "count": len(data)}


async def state_set(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``state.Set``: ``data`` (a map merged into the state), ``name``. Outputs ``count`` and
    ``key``."""
    data = required(props, "data")
    if not isinstance(data, Mapping):
        raise TaskFailure("property 'data' must be a map")
    key = _state_key(ctx, props)
    current = await _kv(ctx).get(key)
    merged = dict(current.value) if current is not None and isinstance(current.value, dict) else {}
    merged.update(data)
    await _kv(ctx).set(key, merged, kv_type="JSON")
    return {"count": len(merged), "key": key}


async def state_delete(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``state.Delete``: ``name``, ``errorOnMissing`` (false). Output ``deleted``."""
    deleted = await _kv(ctx).delete(_state_key(ctx, props))
    if not deleted and boolean(props, "errorOnMissing", False):
        raise TaskFailure(f"state '{_text(props, 'name', 'default')}' does not exist")
    return {"deleted": deleted}


TASKS = {
    SET_TYPE: set_, GET_TYPE: get, GET_KEYS_TYPE: get_keys, DELETE_TYPE: delete,
    STATE_SET_TYPE: state_set, STATE_GET_TYPE: state_get, STATE_DELETE_TYPE: state_delete,
}
"""Type name → task function for the KV and state tasks."""
