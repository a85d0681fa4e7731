"""Repository functions for ForEachItem (the caller owns the transaction): the batch files a
``_split`` task run stored, the child executions of an ``_items`` task run, and the record of a
file the control plane writes itself (the ``_merge`` output)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.store import tables as t

#: Children read per database round trip when merging their outputs.
_MERGE_PAGE = 500


async def batch_uris(
    conn: AsyncConnection, execution_id: str, split_task_run_id: str, exclude: str, offset: int, limit: int
) -> list[str]:
    """The URIs of the batch files a ``_split`` task run stored, in batch order (their names
    are zero-padded batch numbers), ``offset`` and at most ``limit`` of them; ``exclude`` is
    the splits list file itself."""
    q = (
        select(t.storage_files.c.uri)
        .where(t.storage_files.c.execution_id == execution_id, t.storage_files.c.task_run_id == split_task_run_id,
               t.storage_files.c.uri != exclude)
        .order_by(t.storage_files.c.uri).offset(offset).limit(limit)
    )
    return list((await conn.execute(q)).scalars().all())


async def child_counts(conn: AsyncConnection, execution_id: str, task_run_ids: list[str]) -> dict[str, dict[str, int]]:
    """``_items`` task run id -> its child executions counted by state name (absent ids have none)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    if not task_run_ids:
        return out
    q = (
        select(t.executions.c.caller_task_run_id, t.executions.c.state, func.count())
        .where(t.executions.c.caller_execution_id == execution_id,
               t.executions.c.caller_task_run_id.in_(task_run_ids))
        .group_by(t.executions.c.caller_task_run_id, t.executions.c.state)
    )
    for task_run_id, state, count in (await conn.execute(q)).all():
        out[task_run_id][state] = int(count)
    return out


def _iteration_column() -> Any:
    return cast(t.executions.c.trigger["variables"]["taskRunIteration"].astext, Integer)


async def child_outputs(
    conn: AsyncConnection, execution_id: str, items_task_run_id: str
) -> AsyncIterator[dict[str, Any]]:
    """The flow outputs of an ``_items`` task run's children that have some, in batch order,
    read a page at a time (keyset on the batch number)."""
    after = 0
    iteration = _iteration_column()
    while True:
        q = (
            select(iteration, t.executions.c.outputs)
            .where(t.executions.c.caller_execution_id == execution_id,
                   t.executions.c.caller_task_run_id == items_task_run_id, iteration > after)
            .order_by(iteration).limit(_MERGE_PAGE)
        )
        rows = (await conn.execute(q)).all()
        for _number, outputs in rows:
            if outputs:
                yield outputs
        if len(rows) < _MERGE_PAGE:
            return
        after = rows[-1][0]


async def record_file(
    conn: AsyncConnection, uri: str, namespace: str, flow_id: str, execution_id: str, task_run_id: str, size: int,
    sha256: str,
) -> None:
    """Record a file the control plane wrote into a task run's folder (replacing a record of
    the same URI)."""
    stmt = pg_insert(t.storage_files).values(uri=uri, namespace=namespace, flow_id=flow_id, execution_id=execution_id,
                                             task_run_id=task_run_id, size=size, sha256=sha256)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=["uri"], set_={k: stmt.excluded[k] for k in ("size", "sha256", "task_run_id", "created_at")}))
