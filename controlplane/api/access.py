"""The one per-call authorisation helper every servicer uses: does the caller's API token reach
this namespace?

:class:`controlplane.auth.interceptor.AuthInterceptor` verifies the token and stores its
:class:`~controlplane.auth.tokens.Principal` in a context variable for the call; the servicers
then call :func:`namespace` (or :func:`execution`, :func:`listing`) with the namespace of the
resource they are about to touch. With authentication off there is no principal and every check
passes.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.auth.tokens import Principal, Role, covers
from controlplane.errors import PermissionDeniedError
from controlplane.store import tables as t

_current: ContextVar[Principal | None] = ContextVar("kestrel_principal", default=None)


def set_current(principal: Principal | None) -> None:
    """Set the caller of the current gRPC call (the interceptor does this)."""
    _current.set(principal)


def current() -> Principal | None:
    """The caller of the current call; None when authentication is off."""
    return _current.get()


def namespace(target: str) -> None:
    """Refuse the call unless the caller's token reaches namespace ``target``.

    Raises:
        PermissionDeniedError: the token is scoped to another namespace (PERMISSION_DENIED).
    """
    principal = _current.get()
    if principal is not None and not principal.covers(target):
        raise PermissionDeniedError(
            f"API token {principal.token_id} is scoped to namespace '{principal.namespace}' and may not act on "
            f"namespace '{target}'"
        )


async def flow_reach(source: str) -> None:
    """Refuse a flow (being registered) that starts or watches executions outside the caller's
    namespace scope (:mod:`controlplane.flows.namespace_refs`); admins and unscoped tokens pass.

    Raises:
        PermissionDeniedError: naming each place the flow reaches out, and the scope.
    """
    principal = _current.get()
    if principal is None or not principal.namespace:
        return
    from controlplane.flows import parse_flow
    from controlplane.flows.namespace_refs import outside

    flow = await asyncio.to_thread(parse_flow, source)  # already valid: it was just registered
    reaches = outside(flow, principal.covers)
    if reaches:
        listed = "; ".join(f"{r.path} {r.what}" + (f" in '{r.namespace}'" if r.namespace else "") for r in reaches)
        raise PermissionDeniedError(
            f"API token {principal.token_id} is scoped to namespace '{principal.namespace}': the flow reaches "
            f"outside it: {listed}"
        )


async def execution(conn: AsyncConnection, execution_id: str) -> None:
    """:func:`namespace` for the namespace of execution ``execution_id``. An unknown execution
    passes (the caller then answers NOT_FOUND as it would without authentication)."""
    principal = _current.get()
    if principal is None or not principal.namespace:
        return
    ns = (await conn.execute(select(t.executions.c.namespace).where(t.executions.c.id == execution_id))).scalar()
    if ns is not None:
        namespace(ns)


def listing(requested: str) -> str | None:
    """The namespace filter (prefix: a namespace and its children) a listing may use.

    Args:
        requested: The caller's filter ("" = every namespace).

    Returns:
        ``requested`` when the token covers it, the token's scope when ``requested`` is wider
        (empty or a parent), or None when they do not overlap (the listing is then empty).
    """
    principal = _current.get()
    if principal is None or not principal.namespace:
        return requested
    if not requested or covers(requested, principal.namespace):
        return principal.namespace
    if principal.covers(requested):
        return requested
    return None


def acts_as_worker() -> bool:
    """Whether the caller holds a worker token (whose worker ids are then checked)."""
    principal = _current.get()
    return principal is not None and principal.role is Role.WORKER


async def worker(conn: AsyncConnection, worker_id: str, *, registering: bool = False) -> None:
    """A worker token acts only as the workers it registered (admins act as any).

    Args:
        registering: A registration: refused only while another, still usable token holds the
            id (a worker whose token was rotated or revoked may register again).

    Raises:
        PermissionDeniedError: the worker id belongs to another token.
    """
    principal = _current.get()
    if principal is None or principal.role is not Role.WORKER or not worker_id:
        return
    holder = (await conn.execute(select(t.workers.c.auth_token_id).where(t.workers.c.id == worker_id))).scalar()
    if holder is None or holder == principal.token_id:
        return
    if registering:
        row = (await conn.execute(select(t.api_tokens.c.revoked_at, t.api_tokens.c.expires_at)
                                  .where(t.api_tokens.c.id == holder))).first()
        from datetime import UTC, datetime

        if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= datetime.now(UTC)):
            return
    raise PermissionDeniedError(f"worker_id: worker '{worker_id}' was registered with another API token")


async def bind_worker(conn: AsyncConnection, worker_id: str) -> None:
    """Record that the caller's token registered ``worker_id`` (no-op with authentication off)."""
    principal = _current.get()
    if principal is not None:
        await conn.execute(update(t.workers).where(t.workers.c.id == worker_id)
                           .values(auth_token_id=principal.token_id))


async def log_reader(conn: AsyncConnection, signer, execution_id: str, task_token: str) -> str:
    """Which execution's logs a ListLogs call may read, for the ``log.Fetch`` task.

    The rule: a worker API token reads logs only through the task token of a task run leased
    to one of its workers (its attempt still the running one), and only the logs of that task
    run's own execution. It never reads another execution's logs, even of the same namespace,
    and needs no ExecutionService access. With a task token and any other caller (or
    authentication off), ``execution_id`` may also name another execution, of the task run's
    namespace only (Kestra's Fetch rule). Without a task token nothing changes: a client token
    reaches the executions of its namespace scope (:func:`execution`).

    Args:
        signer: The control plane's task token signer.
        execution_id: The requested execution ("" = the task token's own, when one is sent).
        task_token: The caller's task token, or "".

    Returns:
        The execution id to read.

    Raises:
        PermissionDeniedError: a worker token without a task token, another token's task run,
            or an execution the task run may not read (naming both). NotFoundError: unknown or
            finished task run (stale attempt), or unknown execution. InvalidArgumentError:
            malformed task token, or neither execution id nor task token.
    """
    from controlplane.errors import InvalidArgumentError, NotFoundError
    from controlplane.storage.scope import scope_for_token

    principal = _current.get()
    if not task_token:
        if principal is not None and principal.role is Role.WORKER:
            raise PermissionDeniedError(
                "task_token: a worker token reads logs only with the task token of a task run leased to it "
                "(and only that task run's execution)")
        if not execution_id:
            raise InvalidArgumentError("execution_id: required")
        await execution(conn, execution_id)
        return execution_id
    claims = signer.verify(task_token)
    await worker(conn, claims.worker_id)  # another worker token's task run: refused
    scope = await scope_for_token(conn, signer, task_token, current=True)
    target = execution_id or scope.execution_id
    if target == scope.execution_id:
        return target
    if principal is not None and principal.role is Role.WORKER:
        raise PermissionDeniedError(
            f"execution_id: a worker token reads only the logs of its task run's own execution "
            f"({scope.execution_id}, task '{scope.task_id}' of flow {scope.namespace}.{scope.flow_id}), "
            f"not of execution {target}")
    ns = (await conn.execute(select(t.executions.c.namespace).where(t.executions.c.id == target))).scalar()
    if ns is None:
        raise NotFoundError(f"execution '{target}' not found")
    if ns != scope.namespace:
        raise PermissionDeniedError(
            f"execution_id: execution {target} is in namespace '{ns}': task '{scope.task_id}' of flow "
            f"{scope.namespace}.{scope.flow_id} may read only the logs of executions of '{scope.namespace}'")
    namespace(ns)
    return target


def task_token_required(task_token: str) -> None:
    """A worker token reaches storage and KV only through a task token of its task run.

    Raises:
        PermissionDeniedError: the caller holds a worker token and sent no task token.
    """
    principal = _current.get()
    if principal is not None and principal.role is Role.WORKER and not task_token:
        raise PermissionDeniedError(
            "task_token: a worker token reaches files and KV only with the task token of a task run leased to it"
        )
