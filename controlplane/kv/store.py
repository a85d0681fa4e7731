"""KV entries in Postgres (table ``kv_entries``): async functions for the API, one synchronous
read for ``kv()`` in expressions (rendered synchronously by the executor).

An expired row is treated as absent by every read and deleted when a read meets it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection

from controlplane.kv import KVEntry, ancestors
from controlplane.store import tables as t

_T = t.kv_entries


def _now() -> datetime:
    return datetime.now(UTC)


def _entry(row: Any) -> KVEntry:
    return KVEntry(row.namespace, row.key, row.type, row.value, row.expires_at, row.updated_at)


def _alive(now: datetime):
    return or_(_T.c.expires_at.is_(None), _T.c.expires_at > now)


async def set_entry(conn: AsyncConnection, namespace: str, key: str, kv_type: str, value: Any,
                    ttl_seconds: float | None, overwrite: bool) -> KVEntry | None:
    """Store a value; returns None (nothing changed) when ``overwrite`` is false and an
    unexpired value exists."""
    now = _now()
    expires = now + timedelta(seconds=ttl_seconds) if ttl_seconds else None
    values = {"namespace": namespace, "key": key, "type": kv_type, "value": value, "expires_at": expires,
              "created_at": now, "updated_at": now}
    stmt = insert(_T).values(**values)
    update = {k: stmt.excluded[k] for k in ("type", "value", "expires_at", "updated_at")}
    if overwrite:
        stmt = stmt.on_conflict_do_update(constraint="pk_kv_entries", set_=update)
    else:
        # Replace only an expired row: a live one stays and nothing is returned.
        stmt = stmt.on_conflict_do_update(
            constraint="pk_kv_entries", set_=update,
            where=and_(_T.c.expires_at.is_not(None), _T.c.expires_at <= now),
        )
    row = (await conn.execute(stmt.returning(_T))).first()
    return _entry(row) if row is not None else None


async def get_entry(conn: AsyncConnection, namespace: str, key: str, inherit: bool = False) -> KVEntry | None:
    """The live value of ``key`` in ``namespace`` (or, with ``inherit``, its nearest ancestor
    holding the key); expired rows met are deleted. Kestra's inheritance stops at the nearest
    namespace holding the key, even if that one expired."""
    now = _now()
    for ns in ancestors(namespace) if inherit else [namespace]:
        row = (await conn.execute(select(_T).where(_T.c.namespace == ns, _T.c.key == key))).first()
        if row is None:
            continue
        if row.expires_at is not None and row.expires_at <= now:
            await conn.execute(delete(_T).where(_T.c.namespace == ns, _T.c.key == key, _T.c.expires_at <= now))
            return None
        return _entry(row)
    return None


async def list_entries(conn: AsyncConnection, namespace: str, prefix: str = "") -> list[KVEntry]:
    """Live keys of one namespace (not inherited), ordered by key."""
    query = select(_T).where(_T.c.namespace == namespace, _alive(_now()))
    if prefix:
        query = query.where(_T.c.key.startswith(prefix, autoescape=True))
    rows = await conn.execute(query.order_by(_T.c.key))
    return [_entry(r) for r in rows]


async def delete_entry(conn: AsyncConnection, namespace: str, key: str) -> bool:
    """Delete a key; False when there was no live one."""
    now = _now()
    result = await conn.execute(
        delete(_T).where(_T.c.namespace == namespace, _T.c.key == key).returning(_T.c.expires_at)
    )
    row = result.first()
    return row is not None and (row.expires_at is None or row.expires_at > now)


def get_entry_sync(engine: Engine, namespace: str, key: str, inherit: bool) -> KVEntry | None:
    """:func:`get_entry` on a synchronous engine (expired rows read as missing, not deleted)."""
    now = _now()
    with engine.connect() as conn:
        for ns in ancestors(namespace) if inherit else [namespace]:
            row = conn.execute(select(_T).where(_T.c.namespace == ns, _T.c.key == key)).first()
            if row is None:
                continue
            if row.expires_at is not None and row.expires_at <= now:
                return None
            return _entry(row)
    return None
