"""Leadership over the real Redis: one leader at a time, hand-over on resign, and every replica
leads when Redis is unreachable (correctness never depends on the lock)."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from controlplane.coordination.leader import Leadership
from tests.conftest import REDIS_URL


def test_one_leader_then_hand_over_then_redis_down():
    async def scenario():
        redis = aioredis.from_url(REDIS_URL)
        key = f"kestrel-test-{uuid.uuid4().hex}:leader:reaper"
        a, b = Leadership(redis, key, ttl_seconds=5), Leadership(redis, key, ttl_seconds=5)
        first = [await a.is_leader(), await b.is_leader()]
        again = [await a.is_leader(), await b.is_leader()]  # renewal keeps the same leader
        await a.resign()
        after = await b.is_leader()
        await b.resign()
        await redis.aclose()
        down = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        both_lead = [await Leadership(down, key).is_leader(), await Leadership(down, key).is_leader()]
        await down.aclose()
        return first, again, after, both_lead

    first, again, after, both_lead = asyncio.run(scenario())
    assert first == [True, False]
    assert again == [True, False]
    assert after is True
    assert both_lead == [True, True]
