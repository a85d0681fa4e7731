"""Prometheus metrics of one control-plane replica, served on ``--metrics-port``.

Exposed (text format, ``GET http://HOST:PORT/metrics``):

- ``kestrel_task_queue_depth{task_type,worker_group}`` (gauge): task runs queued for a worker
  (rows of ``task_queue``, whether or not their ``available_at`` has come), sampled from Postgres.
- ``kestrel_dispatch_latency_seconds`` (histogram): from a task run becoming ready
  (``task_runs.ready_at``, set by the executor) to its claim by a worker's ``PollTaskRuns`` on
  this replica. Only first claims with a ``ready_at`` are observed.
- ``kestrel_executions{state}`` (gauge): executions per state, sampled from Postgres.
- ``kestrel_workers{state}`` (gauge): registered workers per state (ACTIVE, DEAD, STOPPED),
  sampled from Postgres.
- ``kestrel_lease_expiries_total`` (counter): attempts whose lease expired and that this
  replica's reaper turned into lost attempts (re-dispatched, killed or failed).
- ``kestrel_task_runs_claimed_total`` (counter): task runs claimed by workers on this replica.
- ``kestrel_metrics_sample_errors_total`` (counter): failed Postgres samples (the gauges keep
  their last values; a database outage shows up here, not as a crash).

The sampled gauges describe the whole cluster (every replica reads the same database); the
counters and the histogram count what happened on this replica, so sum them across replicas.
Each :class:`Metrics` has its own registry, so several control planes can live in one process
(tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from controlplane.engine.executor import Lost
from controlplane.engine.unit import Unit
from controlplane.model import State
from controlplane.service.dispatch import Assignment, Dispatcher
from controlplane.store import repository as repo
from controlplane.store import tables as t

log = logging.getLogger(__name__)

# Dispatch latency buckets (seconds): an idle fleet claims in milliseconds, a saturated one in
# seconds to minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_EXECUTION_STATES = tuple(s.value for s in State)
_WORKER_STATES = ("ACTIVE", "DEAD", "STOPPED")


class Metrics:
    """The metric objects of one replica and the loop that samples Postgres into the gauges.

    Args:
        sample_seconds: Interval of the Postgres sampling loop (seconds, > 0).
    """

    def __init__(self, sample_seconds: float = 5.0) -> None:
        if sample_seconds <= 0:
            raise ValueError(f"metrics sample interval must be > 0 s, got {sample_seconds}")
        self.sample_seconds = sample_seconds
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("kestrel_task_queue_depth", "Task runs queued for a worker, by task type and worker group.",
                                 ["task_type", "worker_group"], registry=r)
        self.dispatch_latency = Histogram("kestrel_dispatch_latency_seconds",
                                          "Task run ready (task_runs.ready_at) to claimed by a worker, seconds.",
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.executions = Gauge("kestrel_executions", "Executions by state (sampled from Postgres).", ["state"],
                                registry=r)
        self.workers = Gauge("kestrel_workers", "Registered workers by state (sampled from Postgres).", ["state"],
                             registry=r)
        self.lease_expiries = Counter("kestrel_lease_expiries", "Attempts whose lease expired, handled by this "
                                      "replica's reaper.", registry=r)
        self.claimed = Counter("kestrel_task_runs_claimed", "Task runs claimed by workers on this replica.", registry=r)
        self.sample_errors = Counter("kestrel_metrics_sample_errors", "Failed Postgres samples of the gauges.",
                                     registry=r)
        for state in _EXECUTION_STATES:
            self.executions.labels(state)
        for state in _WORKER_STATES:
            self.workers.labels(state)
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def observe_claims(self, assignments: list[Assignment]) -> None:
        """Record claimed task runs: the claim counter and, for first attempts, ready → now."""
        now = repo.utcnow()
        for a in assignments:
            self.claimed.inc()
            ready = a.claimed.ready_at
            if ready is not None and a.claimed.attempt == 1:
                self.dispatch_latency.observe(max(0.0, (now - ready).total_seconds()))

    async def sample(self, engine: AsyncEngine) -> None:
        """Read queue depth, executions and workers by state from Postgres into the gauges.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database could not be read.
        """
        async with engine.connect() as conn:
            queue = (await conn.execute(
                select(t.task_queue.c.task_type, t.task_queue.c.worker_group, func.count())
                .group_by(t.task_queue.c.task_type, t.task_queue.c.worker_group)
            )).all()
            executions = (await conn.execute(
                select(t.executions.c.state, func.count()).group_by(t.executions.c.state))).all()
            workers = (await conn.execute(select(t.workers.c.state, func.count()).group_by(t.workers.c.state))).all()
        self.queue_depth.clear()
        for task_type, group, n in queue:
            self.queue_depth.labels(task_type, group).set(n)
        seen = {state: n for state, n in executions}
        for state in {*_EXECUTION_STATES, *seen}:
            self.executions.labels(state).set(seen.get(state, 0))
        seen = {state: n for state, n in workers}
        for state in {*_WORKER_STATES, *seen}:
            self.workers.labels(state).set(seen.get(state, 0))

    async def _sample_forever(self, engine: AsyncEngine) -> None:
        while True:
            try:
                await self.sample(engine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.sample_errors.inc()
                log.warning("metrics: sampling Postgres failed (%s: %s); retrying in %.1f s",
                            type(exc).__name__, exc, self.sample_seconds)
            await asyncio.sleep(self.sample_seconds)

    def start(self, engine: AsyncEngine, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (a daemon thread) and start sampling ``engine``
        on the running event loop. Returns the bound port.

        Raises:
            OSError: the port cannot be bound.
        """
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self._task = asyncio.get_running_loop().create_task(self._sample_forever(engine))
        bound = int(self._http.server_port)
        log.info("Prometheus metrics served on http://%s:%d/metrics", host, bound)
        return bound

    async def stop(self) -> None:
        """Stop sampling and serving."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _LeaseExpiryCounter:
    """The executor as the dispatcher sees it, counting ``lose(..., Lost("LEASE_EXPIRED"))``
    calls that succeed; everything else is delegated unchanged."""

    def __init__(self, executor: Any, counter: Counter) -> None:
        self._inner = executor
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def lose(self, unit: Unit, claims: Any, lost: Lost) -> None:
        await self._inner.lose(unit, claims, lost)
        if lost.reason == "LEASE_EXPIRED":
            self._counter.inc()


class MeteredDispatcher(Dispatcher):
    """A :class:`Dispatcher` that feeds ``metrics``: claims (dispatch latency) from ``poll`` and
    lease expiries from the reaper. Same arguments as :class:`Dispatcher`, plus ``metrics``."""

    def __init__(self, transaction: Callable[..., AbstractAsyncContextManager[Unit]], executor: Any, *args: Any,
                 metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(transaction, _LeaseExpiryCounter(executor, metrics.lease_expiries), *args, **kwargs)
        self.metrics = metrics

    async def poll(self, *args: Any, **kwargs: Any) -> list[Assignment]:
        """:meth:`Dispatcher.poll` (same arguments), observing each claim."""
        assignments = await super().poll(*args, **kwargs)
        self.metrics.observe_claims(assignments)
        return assignments

    async def complete(self, *args: Any, **kwargs: Any) -> list[Assignment]:
        """:meth:`Dispatcher.complete` (same arguments), observing each eager claim."""
        assignments = await super().complete(*args, **kwargs)
        self.metrics.observe_claims(assignments)
        return assignments
