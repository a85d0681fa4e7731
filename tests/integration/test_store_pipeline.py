"""controlplane/store/pipeline.py on the real Postgres: deferred writes reach the database with
the transaction's next statement or its COMMIT, in order, and never after a rollback; pipelined
reads see what a lock waited for; errors come out as SQLAlchemy's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from controlplane.store import pipeline
from tests.conftest import fresh_database_url

INSERT = "INSERT INTO items (id, v) VALUES (%(id)s, %(v)s)"
COUNT = "SELECT count(*) AS n FROM items"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    yield from fresh_database_url()


@pytest_asyncio.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(url)
    async with eng.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE IF EXISTS items")
        await conn.exec_driver_sql("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)")
    yield eng
    await eng.dispose()


async def stored(engine: AsyncEngine) -> list[tuple[int, int]]:
    """What another connection sees committed."""
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.exec_driver_sql("SELECT id, v FROM items ORDER BY id")).all()]


@pytest.mark.asyncio
async def test_a_deferred_write_is_seen_by_the_next_read_and_committed(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await pipeline.defer(conn, INSERT, {"id": 1, "v": 10})
        await pipeline.defer(conn, "UPDATE items SET v = v + 1 WHERE id = %(id)s", {"id": 1})
        assert await stored(engine) == []  # not sent yet, and not committed
        rows = await pipeline.fetch(conn, "SELECT id, v FROM items")
        assert [(r.id, r.v) for r in rows] == [(1, 11)]  # in order, before the read
        await pipeline.defer(conn, INSERT, {"id": 2, "v": 20})  # only the COMMIT sends this one
    assert await stored(engine) == [(1, 11), (2, 20)]


@pytest.mark.asyncio
async def test_a_statement_sent_by_sqlalchemy_comes_after_the_deferred_writes(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
        assert (await conn.exec_driver_sql(COUNT)).scalar_one() == 1


@pytest.mark.asyncio
async def test_a_rollback_drops_what_was_deferred(engine: AsyncEngine) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with engine.begin() as conn:
            await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
            raise Boom
    assert await stored(engine) == []
    # The pooled connection carries nothing over into its next transaction.
    async with engine.begin() as conn:
        assert (await pipeline.fetch(conn, COUNT))[0].n == 0
    assert await stored(engine) == []


@pytest.mark.asyncio
async def test_a_rollback_to_a_savepoint_drops_only_what_came_after_it(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
        nested = await conn.begin_nested()  # SAVEPOINT: sends the write before it
        await pipeline.defer(conn, INSERT, {"id": 2, "v": 2})
        await nested.rollback()
        await pipeline.defer(conn, INSERT, {"id": 3, "v": 3})
    assert await stored(engine) == [(1, 1), (3, 3)]


@pytest.mark.asyncio
async def test_a_deferred_write_that_fails_raises_sqlalchemys_error_and_nothing_is_stored(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError, match="duplicate key"):
        async with engine.begin() as conn:
            await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
            await pipeline.defer(conn, INSERT, {"id": 1, "v": 2})
            await pipeline.fetch(conn, COUNT)
    with pytest.raises(IntegrityError, match="duplicate key"):
        async with engine.begin() as conn:
            await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
            await pipeline.defer(conn, INSERT, {"id": 1, "v": 2})  # raised by the COMMIT that sends it
    assert await stored(engine) == []


@pytest.mark.asyncio
async def test_fetch_with_commit_ends_the_transaction_in_the_same_round_trip(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
        rows = await pipeline.fetch(conn, COUNT, commit=True)
        assert rows[0].n == 1
        assert await stored(engine) == [(1, 1)]  # committed before the block ends


@pytest.mark.asyncio
async def test_on_an_autocommit_connection_a_write_is_sent_at_once(engine: AsyncEngine) -> None:
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
        assert await stored(engine) == [(1, 1)]


@pytest.mark.asyncio
async def test_a_read_pipelined_after_a_lock_sees_what_the_lock_holder_committed(engine: AsyncEngine) -> None:
    """fetch_many([lock, read]): the read starts once the lock is granted, so it sees the rows
    the holder changed before committing (one statement with both would not: its snapshot
    would predate the wait)."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql("INSERT INTO items VALUES (1, 0), (2, 0)")
    holder = await engine.connect()
    try:
        await holder.begin()
        await holder.exec_driver_sql("SELECT * FROM items WHERE id = 1 FOR UPDATE")

        async def waiter() -> tuple[list, list]:
            async with engine.begin() as conn:
                return await pipeline.fetch_many(conn, [
                    ("SELECT v FROM items WHERE id = 1 FOR UPDATE", None),
                    ("SELECT v FROM items WHERE id = 2", None),
                ])

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.3)
        assert not task.done()  # blocked on the lock
        await holder.exec_driver_sql("UPDATE items SET v = 5 WHERE id = 2")
        await holder.commit()
        locked, read = await asyncio.wait_for(task, 10)
        assert [r.v for r in locked] == [0]
        assert [r.v for r in read] == [5]
    finally:
        await holder.close()


@pytest.mark.asyncio
async def test_a_cancelled_statement_ends_in_cancellation_not_in_a_rollback_error(engine: AsyncEngine) -> None:
    """The rollback hook must not raise on the invalidated connection a cancelled statement
    leaves (SQLAlchemy's Connection.connection would): the caller sees CancelledError."""
    async def slow() -> None:
        async with engine.begin() as conn:
            await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
            await conn.exec_driver_sql("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await stored(engine) == []


@pytest.mark.asyncio
async def test_a_failing_write_flushed_inside_a_savepoint_rolls_back_only_the_savepoint(engine: AsyncEngine) -> None:
    """As Executor.advance_safely does: flush at the end of the savepoint, so a deferred write
    that fails is undone with it and the outer transaction keeps the rest."""
    async with engine.begin() as conn:
        await pipeline.defer(conn, INSERT, {"id": 1, "v": 1})
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await pipeline.defer(conn, INSERT, {"id": 2, "v": 2})
                await pipeline.defer(conn, INSERT, {"id": 2, "v": 3})
                await pipeline.flush(conn)
        await pipeline.defer(conn, INSERT, {"id": 3, "v": 3})
    assert await stored(engine) == [(1, 1), (3, 3)]
