"""Wake-ups: waiting polls and watchers are woken at once when work or changes arrive.

In-process, :class:`Events` wakes coroutines of this replica; :class:`RedisEvents` relays the
same signals to every replica through Redis pub/sub. Waiters always also wake on a timeout, so a
lost message only costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class Events:
    """In-process signals: "task runs were queued" and "execution X changed"."""

    def __init__(self) -> None:
        self._tasks_generation = 0
        self._tasks_cond: asyncio.Condition | None = None
        self._execution_waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def _cond(self) -> asyncio.Condition:
        if self._tasks_cond is None:
            self._tasks_cond = asyncio.Condition()
        return self._tasks_cond

    async def tasks_queued(self) -> None:
        """Wake every waiting poll of this replica."""
        cond = self._cond()
        async with cond:
            self._tasks_generation += 1
            cond.notify_all()

    async def wait_tasks(self, timeout: float) -> None:
        """Wait until :meth:`tasks_queued` is called or ``timeout`` seconds pass."""
        cond = self._cond()
        async with cond:
            seen = self._tasks_generation
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cond.wait_for(lambda: self._tasks_generation != seen), timeout)

    def execution_changed(self, execution_id: str) -> None:
        """Wake every watcher of ``execution_id`` on this replica."""
        for event in self._execution_waiters.get(execution_id, ()):
            event.set()

    @contextlib.contextmanager
    def watch_execution(self, execution_id: str):
        """Context manager yielding an ``asyncio.Event`` set whenever the execution changes."""
        event = asyncio.Event()
        self._execution_waiters[execution_id].add(event)
        try:
            yield event
        finally:
            waiters = self._execution_waiters.get(execution_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    self._execution_waiters.pop(execution_id, None)


class RedisEvents:
    """Relays :class:`Events` signals between replicas over Redis pub/sub.

    Args:
        redis: A redis.asyncio client.
        prefix: Key/channel prefix (``Settings.redis_prefix``).
        local: This replica's :class:`Events`.
    """

    def __init__(self, redis: aioredis.Redis, prefix: str, local: Events) -> None:
        self._redis = redis
        self._tasks_channel = f"{prefix}:wake:tasks"
        self._exec_channel = f"{prefix}:wake:execution"
        self._local = local
        self._task: asyncio.Task[None] | None = None

    async def publish_tasks_queued(self) -> None:
        """Tell every replica (this one included) that task runs were queued."""
        await self._local.tasks_queued()
        try:
            await self._redis.publish(self._tasks_channel, "1")
        except aioredis.RedisError as exc:  # Redis down: local replica still woken
            log.warning("redis publish failed: %s", exc)

    async def publish_execution_changed(self, execution_id: str) -> None:
        """Tell every replica that ``execution_id`` changed."""
        self._local.execution_changed(execution_id)
        try:
            await self._redis.publish(self._exec_channel, execution_id)
        except aioredis.RedisError as exc:
            log.warning("redis publish failed: %s", exc)

    def start(self) -> None:
        """Start relaying messages from other replicas into the local :class:`Events`."""
        self._task = asyncio.create_task(self._listen(), name="redis-events")

    async def stop(self) -> None:
        """Stop relaying."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._tasks_channel, self._exec_channel)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        channel = message["channel"]
                        channel = channel.decode() if isinstance(channel, bytes) else channel
                        if channel == self._tasks_channel:
                            await self._local.tasks_queued()
                        else:
                            data = message["data"]
                            self._local.execution_changed(data.decode() if isinstance(data, bytes) else data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect after Redis trouble
                log.warning("redis subscription lost (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
