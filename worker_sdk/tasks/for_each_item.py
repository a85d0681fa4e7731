"""``io.kestra.plugin.core.flow.ForEachItem$ForEachItemSplit``: the ``<id>_split`` task the
control plane generates for a ForEachItem (Kestra's ``ForEachItemSplit``, which also runs on a
worker).

Properties (rendered, already checked by the control plane when the ForEachItem started):
``items`` (a ``kestra:///`` URI) and ``batch`` with one of ``rows`` (records per batch, default
1), ``bytes`` (at most that many bytes per batch, whole records, at least one record per batch;
``10MB`` = 10 MiB) or ``partitions`` (that many batches, records spread evenly), and
``separator`` (default ``\\n``; the last record may lack it).

The file is downloaded to the attempt's working directory and read in 1 MiB chunks; each batch
is written to disk, uploaded as ``<8-digit batch number><extension of items>`` and deleted, so
memory stays constant and the disk holds the source plus one batch. Outputs: ``splits`` (URI of
a text file listing the batch URIs, one a line, as Kestra) and ``numberOfBatches``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import to_text
from worker_sdk.tasks.storage_tasks import _fetch, _parse_bytes, _store, _uri

TYPE = "io.kestra.plugin.core.flow.ForEachItem$ForEachItemSplit"
_CHUNK = 1024 * 1024


def records(path: Path, separator: bytes) -> Iterator[bytes]:
    """The records of a file split on ``separator`` (without it), read 1 MiB at a time; a
    trailing separator does not make an empty last record."""
    pending = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            pending += chunk
            parts = pending.split(separator)
            pending = parts.pop()
            yield from parts
    if pending:
        yield pending


def _count(value: Any, name: str) -> int:
    text = to_text(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise TaskFailure(f"property 'batch.{name}' must be an integer >= 1, got {value!r}")
    return int(text)


async def split(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """Split ``items`` into batch files (see the module docstring)."""
    uri = _uri(props, "items")
    batch = props.get("batch") or {}
    if not isinstance(batch, Mapping):
        raise TaskFailure("property 'batch' must be a map with one of rows, bytes, partitions")
    separator = to_text(batch.get("separator") if batch.get("separator") is not None else "\n").encode()
    if not separator:
        raise TaskFailure("property 'batch.separator' must not be empty")
    source = await _fetch(ctx, uri, "items")
    name = uri.rsplit("/", 1)[-1]
    extension = name[name.rfind("."):] if "." in name.lstrip(".") else ".txt"
    if batch.get("bytes") is not None:
        limit = _parse_bytes(batch["bytes"])
        if limit < 1:
            raise TaskFailure(f"property 'batch.bytes' must be at least 1 byte, got {batch['bytes']!r}")
        per_batch = None
    elif batch.get("partitions") is not None:
        partitions = _count(batch["partitions"], "partitions")
        total = sum(1 for _ in records(source, separator))
        per_batch = max(1, -(-total // partitions))
    else:
        per_batch = _count(batch.get("rows", 1), "rows")

    uris: list[str] = []
    part = ctx.working_dir / "batch.part"
    out = None
    rows = size = 0

    async def flush() -> None:
        nonlocal out, rows, size
        if out is None:
            return
        out.close()
        out = None
        uris.append(await _store(ctx, part, f"{len(uris) + 1:08d}{extension}"))
        part.unlink()
        rows = size = 0

    for record in records(source, separator):
        length = len(record) + len(separator)
        full = rows >= per_batch if per_batch is not None else rows > 0 and size + length > limit
        if full:
            await flush()
        if out is None:
            out = open(part, "wb")  # noqa: SIM115 - closed by flush()
        out.write(record + separator)
        rows += 1
        size += length
    await flush()
    source.unlink(missing_ok=True)
    listing = ctx.working_dir / "splits.txt"
    listing.write_text("".join(u + "\n" for u in uris), encoding="utf-8")
    ctx.log.info(f"split {uri} into {len(uris)} batch(es)")
    return {"splits": await _store(ctx, listing, "splits.txt"), "numberOfBatches": len(uris)}


TASKS = {TYPE: split}
"""Type name → task function."""
