"""The one per-call authorisation helper every servicer uses: does the caller's API token reach
this namespace?

:class:`controlplane.auth.interceptor.AuthInterceptor` verifies the token and stores its
:class:`~controlplane.auth.tokens.Principal` in a context variable for the call; the servicers
then call :func:`namespace` (or :func:`execution`, :func:`listing`) with the namespace of the
resource they are about to touch. With authentication off there is no principal and every check
passes.
"""

from __future__ import annotations

from contextvars import ContextVar

from sqlalchemy import select
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
