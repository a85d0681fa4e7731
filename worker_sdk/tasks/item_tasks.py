"""``io.kestra.plugin.core.storage.FilterItems`` and ``…storage.DeduplicateItems``: per-item
expressions over a file of items, streamed.

Files hold one JSON value per line (JSON lines, what Kestrel's tasks write where Kestra writes
Amazon Ion: no Ion library is available here); items are normally maps. The expression
(``filterCondition``, ``expr``) arrives unrendered and is rendered by the control plane for each
item through ``WorkerService.RenderItems`` (see ``controlplane.service.item_render`` for why),
:data:`BATCH_ITEMS` items per call, with the item's fields as variables.

- FilterItems (Kestra's): keeps (``filterType: INCLUDE``, default) or drops (``EXCLUDE``) the
  items whose condition is truthy (Kestra's TruthUtils: not ``false``, ``0``, ``-0``, empty).
  An item whose condition fails to render or renders null follows ``errorOrNullBehavior``:
  ``FAIL`` (default: the task fails naming the item's line), ``INCLUDE`` or ``EXCLUDE``.
- DeduplicateItems (Kestra's): keeps the LAST item of each key ``expr`` renders to, in file
  order. Two passes over the file as Kestra: the first records each item's key in a file on
  disk and the last line number of each key in memory (memory grows with the number of
  distinct keys, not of items), the second writes the kept lines. A key that fails to render
  fails the task.

Outputs: ``uri`` (the new file), ``processedItemsTotal``, ``droppedItemsTotal``; DeduplicateItems
also ``numKeys``. Memory: one batch of lines plus, for DeduplicateItems, the key map.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from kestrel.v1 import worker_pb2, worker_pb2_grpc
from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import required, to_text
from worker_sdk.tasks.storage_tasks import _fetch, _storage, _store, _uri

_CORE = "io.kestra.plugin.core.storage."
FILTER_TYPE = _CORE + "FilterItems"
DEDUPLICATE_TYPE = _CORE + "DeduplicateItems"
#: Items sent per RenderItems call (the server takes at most 1000 and 4 MiB).
BATCH_ITEMS = 500
_BATCH_BYTES = 3 * 1024 * 1024
_FALSE_TEXTS = frozenset({"false", "0", "-0", ""})
_NULL = object()


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its newline) of the non-blank lines."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line.rstrip(b"\r\n")


async def _rendered(ctx: TaskContext, expression: str, path: Path) -> AsyncIterator[tuple[int, bytes, Any, str | None]]:
    """(line number, line, rendered value or ``_NULL`` when null, error) for each item, in order."""
    stub = worker_pb2_grpc.WorkerServiceStub(_storage(ctx).channel)
    token = _storage(ctx)._token

    async def call(batch: list[tuple[int, bytes]]) -> list[tuple[int, bytes, Any, str | None]]:
        try:
            response = await stub.RenderItems(worker_pb2.RenderItemsRequest(
                task_token=token, expression=expression,
                items_json=[line.decode("utf-8", "replace") for _, line in batch]))
        except grpc.aio.AioRpcError as exc:
            raise TaskFailure(f"cannot render the expression: {exc.details() or exc.code().name}") from None
        out = []
        for (number, line), result in zip(batch, response.results, strict=True):
            if result.WhichOneof("result") == "error":
                out.append((number, line, None, result.error))
            else:
                value = json.loads(result.value_json)
                out.append((number, line, _NULL if value is None else value, None))
        return out

    batch: list[tuple[int, bytes]] = []
    size = 0
    for number, line in _lines(path):
        if len(line) > _BATCH_BYTES:
            raise TaskFailure(f"item on line {number} has {len(line)} bytes, more than the {_BATCH_BYTES} bytes one "
                              "item may have")
        batch.append((number, line))
        size += len(line)
        if len(batch) >= BATCH_ITEMS or size >= _BATCH_BYTES:
            for entry in await call(batch):
                yield entry
            batch, size = [], 0
    if batch:
        for entry in await call(batch):
            yield entry


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.strip() not in _FALSE_TEXTS


def _choice(props: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = to_text(props.get(name) or default).strip().upper()
    if value not in allowed:
        raise TaskFailure(f"property '{name}' must be one of {', '.join(allowed)}, got {props.get(name)!r}")
    return value


async def filter_items(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.FilterItems``: ``from``*, ``filterCondition``*, ``filterType``,
    ``errorOrNullBehavior`` (see the module docstring)."""
    uri = _uri(props, "from")
    condition = to_text(required(props, "filterCondition"))
    keep_matches = _choice(props, "filterType", ("INCLUDE", "EXCLUDE"), "INCLUDE") == "INCLUDE"
    on_error = _choice(props, "errorOrNullBehavior", ("FAIL", "INCLUDE", "EXCLUDE"), "FAIL")
    source = await _fetch(ctx, uri, "filter-in")
    target = ctx.working_dir / ("filtered" + (Path(uri).suffix or ".jsonl"))
    processed = dropped = 0
    with open(target, "wb") as out:
        async for number, line, value, error in _rendered(ctx, condition, source):
            processed += 1
            if error is not None or value is _NULL:
                if on_error == "FAIL":
                    why = error or "the condition rendered null"
                    raise TaskFailure(f"property 'filterCondition': item at line {number}: {why}")
                keep = on_error == "INCLUDE"
            else:
                keep = _truthy(value) == keep_matches
            if keep:
                out.write(line + b"\n")
            else:
                dropped += 1
    ctx.log.info(f"filtered {processed} item(s): {processed - dropped} kept, {dropped} dropped")
    return {"uri": await _store(ctx, target, target.name), "processedItemsTotal": processed,
            "droppedItemsTotal": dropped}


async def deduplicate_items(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``storage.DeduplicateItems``: ``from``*, ``expr``* (see the module docstring)."""
    uri = _uri(props, "from")
    expr = to_text(required(props, "expr"))
    source = await _fetch(ctx, uri, "dedup-in")
    keys_file = ctx.working_dir / "dedup-keys.jsonl"
    last: dict[str, int] = {}
    processed = 0
    with open(keys_file, "w", encoding="utf-8") as keys:
        async for number, _line, value, error in _rendered(ctx, expr, source):
            if error is not None:
                raise TaskFailure(f"property 'expr': item at line {number}: {error}")
            key = json.dumps(None if value is _NULL else value, separators=(",", ":"), sort_keys=True)
            keys.write(key + "\n")
            last[key] = number
            processed += 1
    target = ctx.working_dir / ("deduplicated" + (Path(uri).suffix or ".jsonl"))
    with open(keys_file, encoding="utf-8") as keys, open(target, "wb") as out:
        for (number, line), key in zip(_lines(source), keys, strict=True):
            if last[key.rstrip("\n")] == number:
                out.write(line + b"\n")
    kept = len(last)
    ctx.log.info(f"deduplicated {processed} item(s) on {kept} key(s)")
    return {"uri": await _store(ctx, target, target.name), "processedItemsTotal": processed,
            "droppedItemsTotal": processed - kept, "numKeys": kept}


TASKS = {FILTER_TYPE: filter_items, DEDUPLICATE_TYPE: deduplicate_items}
"""Type name → task function."""
