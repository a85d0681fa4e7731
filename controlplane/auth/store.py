"""The ``api_tokens`` table: create, list, revoke and look up API tokens.

Only a token's SHA-256 is stored; :func:`create_token` returns the token text once, and nothing
can show it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.auth.tokens import MIN_TOKEN_LENGTH, Principal, Role, generate, new_id, token_hash
from controlplane.errors import InvalidArgumentError, NotFoundError
from controlplane.store import tables as t

_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as ``kestrel token ls`` shows it (never the token itself)."""

    id: str
    name: str
    role: Role
    namespace: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def check_scope(role: Role, namespace: str) -> None:
    """Refuse a role/namespace pair that makes no sense.

    Raises:
        InvalidArgumentError: a worker token with a namespace (workers run whatever is dispatched
            to them; route work with ``workerGroup`` instead), or a malformed namespace.
    """
    if namespace and (set(namespace) - _NAMESPACE_CHARS or namespace.startswith(".") or namespace.endswith(".")
                      or ".." in namespace or len(namespace) > 150):
        raise InvalidArgumentError(f"namespace: '{namespace}' is not a namespace (letters, digits, '.', '_', '-')")
    if role is Role.WORKER and namespace:
        raise InvalidArgumentError(
            "namespace: worker tokens cover every namespace (a worker runs what is dispatched to it; route work "
            "with workerGroup); task tokens already limit each task to its own execution and namespace"
        )


async def create_token(
    conn: AsyncConnection, role: Role, namespace: str = "", name: str = "",
    expires_in: timedelta | None = None, token: str | None = None,
) -> tuple[str, TokenInfo]:
    """Store a new token.

    Args:
        role: What it may do.
        namespace: Scope ("" = every namespace).
        name: A label for people (``token ls``).
        expires_in: Lifetime; None = no expiry.
        token: Use this token text (a bootstrap token chosen by an operator, at least
            :data:`MIN_TOKEN_LENGTH` characters) instead of a random one.

    Returns:
        (the token text — shown once, never stored —, its stored info).

    Raises:
        InvalidArgumentError: bad scope, a non-positive lifetime or a short ``token``.
    """
    check_scope(role, namespace)
    if expires_in is not None and expires_in.total_seconds() <= 0:
        raise InvalidArgumentError("expires_in: must be positive")
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise InvalidArgumentError(f"token: at least {MIN_TOKEN_LENGTH} characters")
    text = token or generate()
    now = datetime.now(UTC)
    info = TokenInfo(new_id(), name[:100], role, namespace, now, now + expires_in if expires_in else None, None)
    await conn.execute(t.api_tokens.insert().values(
        id=info.id, token_hash=token_hash(text), name=info.name, role=role.value, namespace=namespace,
        created_at=now, expires_at=info.expires_at,
    ))
    return text, info


async def ensure_token(conn: AsyncConnection, token: str, role: Role, name: str) -> bool:
    """Store ``token`` (a bootstrap token from the environment) unless its hash is already stored.
    A revoked bootstrap token stays revoked. Returns whether it was added."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidArgumentError(f"bootstrap token: at least {MIN_TOKEN_LENGTH} characters")
    result = await conn.execute(pg_insert(t.api_tokens).values(
        id=new_id(), token_hash=token_hash(token), name=name, role=role.value, namespace="",
    ).on_conflict_do_nothing(index_elements=["token_hash"]))
    return bool(result.rowcount)


def _info(row) -> TokenInfo:
    return TokenInfo(row.id, row.name, Role(row.role), row.namespace, row.created_at, row.expires_at, row.revoked_at)


async def list_tokens(conn: AsyncConnection, *, include_revoked: bool = False) -> list[TokenInfo]:
    """Stored tokens, newest first."""
    q = select(t.api_tokens).order_by(t.api_tokens.c.created_at.desc())
    if not include_revoked:
        q = q.where(t.api_tokens.c.revoked_at.is_(None))
    return [_info(r) for r in (await conn.execute(q)).all()]


async def revoke_token(conn: AsyncConnection, token_id: str) -> TokenInfo:
    """Revoke a token by id (idempotent: revoking twice keeps the first date).

    Raises:
        NotFoundError: no token has this id.
    """
    await conn.execute(update(t.api_tokens).where(t.api_tokens.c.id == token_id, t.api_tokens.c.revoked_at.is_(None))
                       .values(revoked_at=datetime.now(UTC)))
    row = (await conn.execute(select(t.api_tokens).where(t.api_tokens.c.id == token_id))).first()
    if row is None:
        raise NotFoundError(f"no API token with id '{token_id}' (see `kestrel token ls`)")
    return _info(row)


async def count_usable(conn: AsyncConnection) -> int:
    """How many tokens are neither revoked nor expired."""
    rows = await list_tokens(conn)
    return sum(1 for r in rows if r.status() == "active")


async def lookup(conn: AsyncConnection, token: str) -> tuple[Principal | None, str]:
    """The principal of a presented token, or (None, why) when it is unknown, revoked or expired.

    ``why`` never quotes the token.
    """
    row = (await conn.execute(select(t.api_tokens).where(t.api_tokens.c.token_hash == token_hash(token)))).first()
    if row is None:
        return None, "unknown API token"
    info = _info(row)
    status = info.status()
    if status != "active":
        return None, f"API token {info.id} is {status}"
    return Principal(info.id, info.name, info.role, info.namespace, info.expires_at), ""
