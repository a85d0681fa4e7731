"""Leadership through a Redis lock: one replica runs a background loop at a time.

For efficiency only. If Redis is unreachable every replica acts as leader: the loops it guards
(lease reaper, executor sweep) are correct with any number of runners, because rows are claimed
with ``SKIP LOCKED`` and every change is fenced in Postgres.
"""

from __future__ import annotations

import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Leadership:
    """Holds (and renews) the lock ``<prefix>:leader:<name>`` while this replica leads.

    Args:
        redis: A redis.asyncio client.
        key: Full Redis key of the lock.
        ttl_seconds: Lock lifetime; a leader that stops renewing loses it after this long.
    """

    def __init__(self, redis: aioredis.Redis, key: str, ttl_seconds: float = 10.0) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = int(ttl_seconds * 1000)
        self._token = uuid.uuid4().hex
        self._redis_ok = True

    async def is_leader(self) -> bool:
        """Take or renew the lock; True while this replica holds it (or Redis is down)."""
        try:
            # Renew only our own lock (compare-and-extend), else try to take a free one.
            renewed = await self._redis.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then "
                "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end",
                1, self._key, self._token, self._ttl_ms,
            )
            if renewed:
                leader = True
            else:
                leader = bool(await self._redis.set(self._key, self._token, nx=True, px=self._ttl_ms))
            if not self._redis_ok:
                log.info("redis reachable again; leadership of %s decided by the lock", self._key)
            self._redis_ok = True
            return leader
        except (RedisError, OSError) as exc:
            if self._redis_ok:
                log.warning("redis unreachable (%s); acting as leader for %s", exc, self._key)
            self._redis_ok = False
            return True

    async def resign(self) -> None:
        """Release the lock if held (best effort)."""
        try:
            await self._redis.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
                1, self._key, self._token,
            )
        except (RedisError, OSError):
            pass
