"""The hot path's plain SQL sent on psycopg directly, with its writes sent behind (issue 10).

A worker's result is one transaction of a handful of statements: lock the execution, read its
task runs, finish the attempt, queue the next task run, save the execution, claim the worker's
next task run, commit. Sent one by one through SQLAlchemy's asyncio layer each costs a round
trip plus ~0.13 ms of CPU of greenlet switching and result metadata (``bench/``, this machine);
the writes among them need no answer. This module sends them on the psycopg connection under
the SQLAlchemy one, in psycopg's pipeline mode:

- :func:`fetch` runs a statement and returns its rows (named tuples: ``row.column``). The writes
  :func:`defer`\\ red before it, and the transaction's ``BEGIN``, go in the same pipeline: one
  round trip for all of them.
- :func:`defer` queues a write whose result nobody reads. It is sent with the transaction's
  next statement, whichever sends it: a :func:`fetch`, any statement SQLAlchemy sends (a
  ``SAVEPOINT`` included) or the ``COMMIT``, in the same round trip as that ``COMMIT``
  (SQLAlchemy engine events, installed on every engine at import). A transaction's last read
  can carry its ``COMMIT`` too (``fetch(..., commit=True)``: a worker's eager claim). A
  rollback drops what was deferred (it would have been undone), and so does the connection's
  return to the pool; a ``ROLLBACK TO SAVEPOINT`` is a statement SQLAlchemy sends, so what was
  deferred since the savepoint is sent just before it and undone by it. On an autocommit
  connection a write is sent at once.

Errors are raised as SQLAlchemy's (:class:`sqlalchemy.exc.IntegrityError`,
:class:`~sqlalchemy.exc.OperationalError`…, wrapping psycopg's), as if SQLAlchemy had sent the
statement, so callers handle them as before; a deferred write's error is raised by the statement
that sends it (the transaction is aborted either way). Statements are the same text and
parameters as SQLAlchemy's ``exec_driver_sql`` would send (psycopg's ``%(name)s`` style), and
psycopg prepares them after a few uses as it does for SQLAlchemy.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import Pool
from sqlalchemy.util import await_only

Params = Mapping[str, Any] | None

#: Writes deferred on a psycopg connection (its transaction), oldest first.
_pending: weakref.WeakKeyDictionary[psycopg.AsyncConnection, list[tuple[str, Params]]] = weakref.WeakKeyDictionary()


def driver_connection(conn: AsyncConnection) -> psycopg.AsyncConnection:
    """The psycopg connection under a started SQLAlchemy ``AsyncConnection``."""
    return conn.sync_connection.connection.driver_connection  # type: ignore[union-attr,return-value]


async def fetch(conn: AsyncConnection, sql: str, params: Params = None, *, commit: bool = False) -> list[Any]:
    """Run ``sql`` on ``conn`` and return all its rows (named tuples), the deferred writes of the
    transaction and its ``BEGIN`` sent before it in the same round trip.

    ``commit``: the statement is the transaction's last: its ``COMMIT`` goes in the same round
    trip (the SQLAlchemy transaction's own commit then finds nothing to do; anything sent on
    ``conn`` afterwards would be a new transaction). Ignored on an autocommit connection.

    Raises:
        sqlalchemy.exc.DBAPIError: (its subclass by psycopg's error) this statement or a deferred
            write failed.
    """
    return (await fetch_many(conn, [(sql, params)], commit=commit))[0]


async def fetch_many(
    conn: AsyncConnection, statements: Sequence[tuple[str, Params]], *, commit: bool = False
) -> list[list[Any]]:
    """Run ``statements`` in order in one round trip (with the deferred writes and ``BEGIN``
    before them) and return the rows of each. Postgres runs them one after another: in READ
    COMMITTED each one sees what was committed before it started, so a statement after a
    ``FOR UPDATE`` sees the rows as they are once the lock is held, as if sent separately.

    ``commit``: as for :func:`fetch`.

    Raises:
        sqlalchemy.exc.DBAPIError: as :func:`fetch`.
    """
    raw = driver_connection(conn)
    writes = _pending.pop(raw, None) or []
    commit = commit and not raw.autocommit
    begins = not raw.autocommit and raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    try:
        if writes or commit or begins or len(statements) > 1:
            cursors = await _send(raw, writes, statements, commit)
        else:
            cursors = [raw.cursor(row_factory=namedtuple_row)]
            await cursors[0].execute(*statements[0])
        return [await c.fetchall() if c.description is not None else [] for c in cursors]
    except psycopg.Error as exc:
        raise _error(raw, conn.dialect, statements[-1], exc) from exc


async def defer(conn: AsyncConnection, sql: str, params: Params = None) -> None:
    """Queue the write ``sql`` to go with the transaction's next statement or its ``COMMIT``
    (see the module); sent at once on an autocommit connection.

    Raises:
        sqlalchemy.exc.DBAPIError: only on an autocommit connection (else the statement that
            sends it raises).
    """
    raw = driver_connection(conn)
    if raw.autocommit:
        await fetch(conn, sql, params)
        return
    _pending.setdefault(raw, []).append((sql, params))


async def flush(conn: AsyncConnection) -> None:
    """Send ``conn``'s deferred writes now (one round trip; nothing when there are none), so
    that their errors are raised here: at the end of a savepoint, whose release would otherwise
    send them and leave the transaction aborted when one fails.

    Raises:
        sqlalchemy.exc.DBAPIError: a deferred write failed.
    """
    raw = driver_connection(conn)
    if writes := _pending.pop(raw, None):
        try:
            await _send(raw, writes)
        except psycopg.Error as exc:
            raise _error(raw, conn.dialect, writes[-1], exc) from exc


async def _send(
    raw: psycopg.AsyncConnection, writes: Sequence[tuple[str, Params]],
    statements: Sequence[tuple[str, Params]] = (), commit: bool = False,
) -> list[psycopg.AsyncCursor[Any]]:
    """One pipeline: ``writes``, then ``statements`` (their cursors are returned), then the
    ``COMMIT`` when asked (sent in the pipeline: ``commit()`` would sync it on its own;
    SQLAlchemy's own commit then finds the transaction ended and sends nothing)."""
    cursors = []
    async with raw.pipeline():
        for sql, params in writes:
            await raw.execute(sql, params)
        for sql, params in statements:
            cursor = raw.cursor(row_factory=namedtuple_row)
            await cursor.execute(sql, params)
            cursors.append(cursor)
        if commit:
            await raw.execute("COMMIT")
    return cursors


def _error(raw: psycopg.AsyncConnection, dialect: Any, statement: tuple[str, Params],
           exc: psycopg.Error) -> DBAPIError:
    """``exc`` as SQLAlchemy would have raised it for ``statement`` (its class by psycopg's)."""
    return DBAPIError.instance(statement[0], statement[1], exc, psycopg.Error, dialect=dialect,
                               connection_invalidated=bool(raw.closed or raw.broken))


def _flush_before(conn: Any, commit: bool) -> None:
    """Send ``conn``'s deferred writes now, inside SQLAlchemy's greenlet, before the statement it
    is about to send or, with ``commit``, together with the ``COMMIT``."""
    raw = _raw_of(conn)
    if raw is not None and (writes := _pending.pop(raw, None)):
        try:
            await_only(_send(raw, writes, commit=commit))
        except psycopg.Error as exc:
            raise _error(raw, conn.dialect, writes[-1], exc) from exc


def _raw_of(conn: Any) -> Any:
    """The psycopg connection of a sync SQLAlchemy ``Connection``, or None when it has none
    (``Connection.connection`` would raise on an invalidated one, e.g. a statement cancelled
    mid-way: a rollback hook must not replace the error it is rolling back for)."""
    return getattr(getattr(conn, "_dbapi_connection", None), "driver_connection", None)


@event.listens_for(Engine, "before_cursor_execute")
def _before_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:  # noqa: ARG001
    _flush_before(conn, commit=False)


@event.listens_for(Engine, "commit")
def _before_commit(conn: Any) -> None:
    _flush_before(conn, commit=True)


@event.listens_for(Engine, "rollback")
def _on_rollback(conn: Any) -> None:
    raw = _raw_of(conn)
    if raw is not None:
        _pending.pop(raw, None)


@event.listens_for(Pool, "checkin")
def _on_checkin(dbapi_connection: Any, record: Any) -> None:  # noqa: ARG001
    raw = getattr(dbapi_connection, "driver_connection", None)
    if raw is not None:
        _pending.pop(raw, None)
