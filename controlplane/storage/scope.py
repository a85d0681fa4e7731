"""The reach of a task token: which execution, task run and namespace a worker acts for."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.errors import NotFoundError
from controlplane.storage.service import Scope
from controlplane.store import tables as t
from controlplane.tokens import TaskTokenSigner


async def scope_for_token(conn: AsyncConnection, signer: TaskTokenSigner, token: str, *, current: bool) -> Scope:
    """Verify a task token and return what it names.

    Args:
        current: Require the token's attempt to be the task run's running one (attempt, lease
            epoch, RUNNING), as for results: writes of a stale attempt are refused.

    Raises:
        InvalidArgumentError: malformed or forged token. NotFoundError: unknown task run, or a
            stale attempt when ``current``.
    """
    claims = signer.verify(token)
    row = (
        await conn.execute(
            select(t.task_runs.c.task_id, t.task_runs.c.attempt, t.task_runs.c.lease_epoch, t.task_runs.c.state,
                   t.executions.c.namespace, t.executions.c.flow_id)
            .join(t.executions, t.executions.c.id == t.task_runs.c.execution_id)
            .where(t.task_runs.c.id == claims.task_run_id, t.task_runs.c.execution_id == claims.execution_id)
        )
    ).first()
    if row is None:
        raise NotFoundError(f"task run {claims.task_run_id} not found")
    if current and (row.attempt != claims.attempt or row.lease_epoch != claims.lease_epoch or row.state != "RUNNING"):
        raise NotFoundError(f"task token of task run {claims.task_run_id} is stale (attempt {claims.attempt})")
    return Scope(row.namespace, row.flow_id, claims.execution_id, row.task_id, claims.task_run_id)
