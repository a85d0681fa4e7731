"""Wake-ups: waiting polls and watchers are woken at once when work or changes arrive.

In-process, :class:`Events` wakes coroutines of this replica; :class:`RedisEvents` relays the
same signals to every replica through Redis pub/sub. Waiters always also wake on a timeout, so a
lost message only costs latency, never correctness.

Two kinds of execution signal: "changed" (state, task runs, outputs: what ``WatchExecution``
streams) and "logs appended" (only log tails care), so a worker's log batch does not make every
watcher re-read the execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

OTHERS_RECHECK_SECONDS = 1.0
"""How often a replica asks Redis whether anyone else listens to its signals (``PUBSUB
NUMSUB``); while no one does, it publishes nothing."""

_HELLO = "h"
"""Kind of the execution-channel message a replica sends once subscribed, so that the others
know at once that someone listens (it wakes nothing)."""


class PollWaiter:
    """One long poll of this replica, registered for the whole poll (claims included) so a
    wake-up sent while it claims is not lost.

    Attributes:
        task_types: Task types its worker runs. worker_group: Its worker group.
        woken: Set when task runs it may claim were queued; the poll clears it before each claim.
    """

    __slots__ = ("task_types", "worker_group", "woken")

    def __init__(self, task_types: Iterable[str], worker_group: str) -> None:
        self.task_types = frozenset(task_types)
        self.worker_group = worker_group
        self.woken = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Wait until woken or ``timeout`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), timeout)


class Events:
    """In-process signals: "task runs were queued", "execution X changed" and "execution X has
    new log lines"."""

    def __init__(self) -> None:
        self._pollers: list[PollWaiter] = []  # registration order: the longest waiting first
        #: How many "task runs were queued" signals this replica has seen (local or relayed).
        self.queued_signals = 0
        # execution id -> {event: also woken by log appends}
        self._execution_waiters: dict[str, dict[asyncio.Event, bool]] = defaultdict(dict)

    @contextlib.contextmanager
    def poll_waiter(self, task_types: Iterable[str], worker_group: str) -> Iterator[PollWaiter]:
        """Register a poll for the duration of the block (see :class:`PollWaiter`)."""
        waiter = PollWaiter(task_types, worker_group)
        self._pollers.append(waiter)
        try:
            yield waiter
        finally:
            self._pollers.remove(waiter)
            if waiter.woken.is_set():
                # Woken for work this poll did not take (it ended with other task runs, or
                # timed out): hand the wake-up to another idle poll that could take it.
                for other in self._pollers:
                    if (not other.woken.is_set() and other.worker_group == waiter.worker_group
                            and other.task_types & waiter.task_types):
                        other.woken.set()
                        break

    async def tasks_queued(self, queued: Iterable[tuple[str, str]] | None = None) -> None:
        """Wake the polls that may claim what was queued.

        Args:
            queued: ``(task_type, worker_group)`` of each queued task run: one poll able to take
                it is woken per task run (the one registered longest, not woken already), so
                ten idle workers do not race for one task run. None: wake every poll (the
                queued work is not known, e.g. a signal from another replica).
        """
        self.queued_signals += 1
        if queued is None:
            for waiter in self._pollers:
                waiter.woken.set()
            return
        for task_type, worker_group in queued:
            for waiter in self._pollers:
                if not waiter.woken.is_set() and waiter.worker_group == worker_group and task_type in waiter.task_types:
                    waiter.woken.set()
                    break
            # No idle poll can take it: the matching ones are claiming already (their claim, or
            # the next one, sees it) or their workers are full (they claim when a slot frees).

    def execution_changed(self, execution_id: str) -> None:
        """Wake every watcher of ``execution_id`` on this replica."""
        for event in self._execution_waiters.get(execution_id, ()):
            event.set()

    def logs_appended(self, execution_id: str) -> None:
        """Wake the watchers of ``execution_id``'s logs on this replica (not the state watchers)."""
        for event, logs in self._execution_waiters.get(execution_id, {}).items():
            if logs:
                event.set()

    @contextlib.contextmanager
    def watch_execution(self, execution_id: str, *, logs: bool = False) -> Iterator[asyncio.Event]:
        """Context manager yielding an ``asyncio.Event`` set whenever the execution changes (and,
        with ``logs``, also when log lines are appended to it)."""
        event = asyncio.Event()
        self._execution_waiters[execution_id][event] = logs
        try:
            yield event
        finally:
            waiters = self._execution_waiters.get(execution_id)
            if waiters is not None:
                waiters.pop(event, None)
                if not waiters:
                    self._execution_waiters.pop(execution_id, None)


class RedisEvents:
    """Relays :class:`Events` signals between replicas over Redis pub/sub.

    Local waiters are woken at once; the Redis messages are sent by a background task (one
    pipeline per batch), so a caller never waits for Redis: an RPC answers as soon as its
    transaction has committed. Each replica tags its messages with its own origin id and ignores
    them when they come back, so a signal wakes this replica's waiters once, not twice.

    A replica alone on its channels (Redis counts no subscriber but its own, checked every
    :data:`OTHERS_RECHECK_SECONDS`) publishes nothing: a single control plane sends and reads
    back no message per transaction. A replica that subscribes says hello on the channel, and a
    message from another replica makes one publish again at once; a hello lost (Redis
    trouble) leaves the others publishing from their next check, within that period, while the
    newcomer's polls and watchers wake on their own timeouts, as for a lost message.

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
        self._origin = uuid.uuid4().hex[:12]
        self._task: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._outbox: list[tuple[str, str]] = []
        self._outbox_ready: asyncio.Event | None = None
        self._stopping = False
        self._subscribed = False  # our own subscription is confirmed (Redis counts it)
        self._others = True  # someone else listens (as last checked; True until checked)
        self._others_checked = float("-inf")  # time.monotonic() of that check

    async def announce(
        self, tasks_queued: bool, changed: Iterable[str] = (), logs: Iterable[str] = (),
        queued: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Wake this replica's waiters now and queue the same signals for the other replicas.

        Args:
            tasks_queued: task runs were put on the dispatch queue (which ones is not known:
                every poll is woken).
            changed: ids of executions that changed.
            logs: ids of executions that only got new log lines.
            queued: ``(task_type, worker_group)`` of each task run queued (one matching poll is
                woken per task run; see :meth:`Events.tasks_queued`).
        """
        changed = set(changed)
        if tasks_queued or queued:
            await self._local.tasks_queued(None if tasks_queued else queued)
            self._send(self._tasks_channel, self._origin)
        for execution_id in changed:
            self._local.execution_changed(execution_id)
            self._send(self._exec_channel, f"{self._origin} x {execution_id}")
        for execution_id in set(logs) - changed:
            self._local.logs_appended(execution_id)
            self._send(self._exec_channel, f"{self._origin} l {execution_id}")

    async def publish_tasks_queued(self) -> None:
        """Tell every replica (this one included) that task runs were queued."""
        await self.announce(True)

    async def publish_execution_changed(self, execution_id: str) -> None:
        """Tell every replica that ``execution_id`` changed."""
        await self.announce(False, (execution_id,))

    def _send(self, channel: str, data: str) -> None:
        if self._outbox_ready is None:  # not started (tests driving Events directly)
            return
        self._outbox.append((channel, data))
        self._outbox_ready.set()

    def start(self) -> None:
        """Start relaying messages from other replicas into the local :class:`Events`, and
        sending this replica's."""
        self._outbox_ready = asyncio.Event()
        self._task = asyncio.create_task(self._listen(), name="redis-events")
        self._sender = asyncio.create_task(self._send_loop(), name="redis-events-sender")

    async def stop(self) -> None:
        """Stop relaying (signals not yet sent are dropped: waiters wake on their timeouts).

        Both loops also end on a flag: redis-py's asyncio client can swallow a cancellation
        that lands inside one of its calls, and the loop would then wait on."""
        self._stopping = True
        if self._outbox_ready is not None:
            self._outbox_ready.set()
        for task in (self._task, self._sender):
            if task:
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=5.0)
                if not done:
                    log.warning("redis events: %s did not stop within 5 s; left behind", task.get_name())
                elif not task.cancelled():
                    task.exception()  # retrieved: an error of a stopped loop is not reported

    async def _send_loop(self) -> None:
        assert self._outbox_ready is not None
        while not self._stopping:
            await self._outbox_ready.wait()
            if self._stopping:
                return
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, []
            if not batch:
                continue
            try:
                if not await self._others_listen():
                    continue
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, data in dict.fromkeys(batch):  # same signal twice: once
                        pipe.publish(channel, data)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the local replica was still woken
                log.warning("redis publish failed: %s", exc)

    async def _others_listen(self) -> bool:
        """Whether a subscriber other than this replica's listener is on either channel (asked
        of Redis at most every :data:`OTHERS_RECHECK_SECONDS`; raises as Redis does)."""
        now = time.monotonic()
        if now - self._others_checked >= OTHERS_RECHECK_SECONDS:
            # Read before asking: our subscription confirmed meanwhile errs towards publishing.
            mine = 1 if self._subscribed else 0
            counts = await self._redis.pubsub_numsub(self._tasks_channel, self._exec_channel)
            self._others = any(count > mine for _, count in counts)
            self._others_checked = now
        return self._others

    async def _listen(self) -> None:
        while not self._stopping:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._tasks_channel, self._exec_channel)
                    async for message in pubsub.listen():
                        if self._stopping:
                            return
                        if message.get("type") == "subscribe":
                            # Counted by Redis from now on; check who else listens afresh, and
                            # say hello: a replica that thought itself alone publishes again
                            # at once instead of at its next check.
                            if not self._subscribed:
                                self._send(self._exec_channel, f"{self._origin} {_HELLO} -")
                                self._subscribed, self._others_checked = True, float("-inf")
                        if message.get("type") != "message":
                            continue
                        channel = message["channel"]
                        channel = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else channel
                        data = message["data"]
                        # Not ours if it is not UTF-8 text; kept as such, it only wakes in vain.
                        data = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                        origin, _, rest = data.partition(" ")
                        if origin == self._origin:
                            continue  # this replica's own signal: its waiters were woken already
                        self._others, self._others_checked = True, time.monotonic()  # someone else is here
                        if channel == self._tasks_channel:
                            await self._local.tasks_queued()
                        else:
                            kind, _, execution_id = rest.partition(" ")
                            if kind == _HELLO:
                                continue
                            if kind == "l":
                                self._local.logs_appended(execution_id)
                            else:
                                self._local.execution_changed(execution_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect after Redis trouble
                self._subscribed = False
                log.warning("redis subscription lost (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
