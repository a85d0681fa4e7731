"""Wake-ups between replicas over the real Redis (controlplane/coordination/events.py): a
replica alone on its channels publishes nothing, and starts publishing once another replica
listens, so that replica's watchers and polls are woken by the first one's changes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import redis.asyncio as aioredis

from controlplane.coordination.events import OTHERS_RECHECK_SECONDS, Events, RedisEvents
from tests.conftest import REDIS_URL


async def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def test_a_lone_replica_publishes_nothing_until_another_listens_then_wakes_it():
    async def scenario():
        async with _two_replicas() as (a, b, b_local):
            # Alone: once its own subscription is counted, it sees no one else.
            alone = await _until(lambda: _negated(a._others_listen()), timeout=5)
            b.start()
            # The second replica subscribes: within the recheck period the first one publishes
            # again and the second one's watcher wakes.
            woken = await _announce_until_woken(a, b_local, "ex-1", OTHERS_RECHECK_SECONDS + 5)
            both = await a._others_listen() and await b._others_listen()
            return alone, woken, both

    alone, woken, both = asyncio.run(scenario())
    assert alone, "a replica alone on its channels still counted another listener"
    assert woken, "the second replica's watcher was never woken by the first replica's change"
    assert both, "two replicas did not see each other"


@contextlib.asynccontextmanager
async def _two_replicas():
    """(a, b, b's local Events) on one fresh prefix of the real Redis: ``a`` started, ``b`` not."""
    redis = aioredis.from_url(REDIS_URL)
    prefix = f"kestrel-test-{uuid.uuid4().hex}"
    a = RedisEvents(redis, prefix, Events())
    a.start()
    b_local = Events()
    b = RedisEvents(redis, prefix, b_local)
    try:
        yield a, b, b_local
    finally:
        await a.stop()
        await b.stop()
        await redis.aclose()


async def _announce_until_woken(a: RedisEvents, b_local: Events, execution_id: str, seconds: float) -> bool:
    """Announce a change of ``execution_id`` on ``a`` every 0.2 s until a watcher of it on
    ``b_local`` wakes (True) or ``seconds`` pass (False)."""
    with b_local.watch_execution(execution_id) as changed:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await a.announce(False, [execution_id])
            try:
                await asyncio.wait_for(changed.wait(), 0.2)
                return True
            except TimeoutError:
                pass
    return False


async def _negated(awaitable) -> bool:
    return not await awaitable


def test_a_replica_that_joins_says_hello_so_the_lone_one_publishes_again_at_once(monkeypatch):
    """With the periodic check pushed out of reach, only the newcomer's hello can tell a replica
    that believed itself alone that someone listens again: its next change must wake the
    newcomer's watcher."""
    import controlplane.coordination.events as events

    monkeypatch.setattr(events, "OTHERS_RECHECK_SECONDS", 3600.0)

    async def scenario():
        async with _two_replicas() as (a, b, b_local):
            subscribed = await _until(lambda: _true(a._subscribed), timeout=5)
            alone = await _until(lambda: _negated(a._others_listen()), timeout=5)
            b.start()
            woken = await _announce_until_woken(a, b_local, "ex-2", 10)
            return subscribed and alone, woken

    alone, woken = asyncio.run(scenario())
    assert alone
    assert woken, "the lone replica never heard of the newcomer (no hello)"


async def _true(value) -> bool:
    return bool(value)


def test_a_message_that_is_not_utf8_keeps_the_subscription():
    """Bytes that are not UTF-8 on a wake-up channel (not a replica's message) are read and
    ignored: the listener keeps its subscription instead of dropping it for a second."""

    async def scenario():
        redis = aioredis.from_url(REDIS_URL)
        prefix = f"kestrel-test-{uuid.uuid4().hex}"
        b = RedisEvents(redis, prefix, Events())
        b.start()
        try:
            await _until(lambda: _true(b._subscribed), timeout=5)
            await redis.publish(f"{prefix}:wake:execution", b"\xff\xfe garbage")
            await redis.publish(f"{prefix}:wake:tasks", b"\xff")
            kept = True
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                kept = kept and b._subscribed
                await asyncio.sleep(0.01)
            return kept
        finally:
            await b.stop()
            await redis.aclose()

    assert asyncio.run(scenario()), "the subscription was dropped after a message that is not UTF-8"
