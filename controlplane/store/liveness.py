"""A pooled Postgres connection checked for liveness without a round trip.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` on every checkout: one more round trip for
every transaction of the hot path. A connection whose backend was terminated
(``pg_terminate_backend``, a Postgres restart) has a readable socket while idle in the pool (the
server's error message, or end of file), whereas a healthy idle connection has nothing to read.
So a zero-timeout ``select()`` on the socket (a system call, no network round trip) finds the
dead ones; they are replaced before use, as with ``pool_pre_ping``.
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine


def _dead(dbapi_connection: Any) -> bool:
    """True when the idle psycopg connection behind a pooled DBAPI connection is unusable."""
    raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    try:
        if raw.closed or raw.broken:
            return True
        readable, _, _ = select.select([raw.pgconn.socket], [], [], 0)
    except (OSError, ValueError, AttributeError):
        return True  # no usable socket
    return bool(readable)


def install(engine: AsyncEngine) -> None:
    """Check every connection on checkout from ``engine``'s pool; a dead one is replaced by a new
    connection and every older pooled connection is invalidated
    (:class:`sqlalchemy.exc.DisconnectionError` with ``invalidate_pool``; the pool reconnects the
    record, up to 3 times)."""

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:  # noqa: ARG001 - event signature
        if _dead(dbapi_connection):
            # One dead connection usually means all of them (Postgres restarted, backends
            # terminated): invalidate every pooled connection older than now, as SQLAlchemy does
            # for a disconnect met while executing, so the next checkouts reconnect at once.
            error = DisconnectionError("connection found closed by the server; replaced")
            error.invalidate_pool = True
            raise error
