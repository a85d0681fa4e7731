"""One control-plane process: the gRPC API, the executor sweep and the lease reaper.

``ControlPlane`` is what ``kestrel server standalone`` and ``kestrel server local`` run; several
may run side by side on one Postgres and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from controlplane import crypto, faults
from controlplane import secrets as secret_store
from controlplane.api.decoding import DecodeInterceptor
from controlplane.api.executions import ExecutionServicer
from controlplane.api.flows import FlowServicer
from controlplane.api.kv import KVServicer
from controlplane.api.logs import LogServicer
from controlplane.api.storage import StorageServicer
from controlplane.api.triggers import TriggerServicer
from controlplane.api.workers import WorkerServicer
from controlplane.auth import store as token_store
from controlplane.auth.interceptor import AuthInterceptor, TokenVerifier
from controlplane.auth.tls import server_credentials
from controlplane.auth.tokens import Role
from controlplane.config import Settings
from controlplane.coordination.events import Events, RedisEvents
from controlplane.coordination.leader import Leadership
from controlplane.engine.executor import Executor
from controlplane.engine.unit import Unit
from controlplane.errors import FailedPreconditionError
from controlplane.http import HttpServer, webhook_app
from controlplane.metrics import MeteredDispatcher, Metrics
from controlplane.scheduler import Scheduler, SchedulerOptions, run_forever
from controlplane.service.dispatch import Dispatcher
from controlplane.service.flow_registry import FlowRegistry
from controlplane.service.log_files import LogFileRequest, write_log_file
from controlplane.service.log_ingest import LogIngest
from controlplane.storage import InternalStorage, backend_from_settings
from controlplane.storage import render as storage_render
from controlplane.store import liveness
from controlplane.store import repository as repo
from controlplane.store.migrations import upgrade
from controlplane.tokens import TaskTokenSigner
from kestrel import logsetup
from kestrel.v1 import (
    execution_pb2_grpc,
    flow_pb2_grpc,
    kv_pb2_grpc,
    log_pb2_grpc,
    storage_pb2_grpc,
    trigger_pb2_grpc,
    worker_pb2_grpc,
)

log = logging.getLogger(__name__)

#: A task run queued this long (seconds) with no ACTIVE worker for its type gets a WARN log line.
UNSERVED_WARNING_SECONDS = 10.0

_SERVICES = ("kestrel.v1.FlowService", "kestrel.v1.ExecutionService", "kestrel.v1.WorkerService",
             "kestrel.v1.LogService", "kestrel.v1.StorageService", "kestrel.v1.KVService",
             "kestrel.v1.TriggerService")
# Give up on an execution the executor failed to advance this many times in a row.
_MAX_EXECUTOR_FAILURES = 5

MIN_LOOP_GAP_SECONDS = 0.01
"""Shortest pause between two runs of a woken background loop (no busy loop on a burst)."""


class ControlPlane:
    """The control plane's pieces wired together.

    Args:
        settings: Database/Redis URLs, bind address and timings.

    Use ``port = await cp.start()`` … ``await cp.stop()``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events = Events()
        self.engine: AsyncEngine | None = None
        self.redis: aioredis.Redis | None = None
        self.redis_events: RedisEvents | None = None
        self.flows: FlowRegistry
        self.executor: Executor
        self.dispatcher: Dispatcher
        self.signer: TaskTokenSigner
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._sweep_wake = asyncio.Event()  # set after a commit that queued executor work (Unit.sweep_soon)
        self._read_engine: AsyncEngine | None = None
        self._leaders: list[Leadership] = []
        self.scheduler: Scheduler
        self.http: HttpServer | None = None
        self.http_port = 0
        self.storage: InternalStorage
        self._lookups: storage_render.Lookups | None = None
        self._warned_unserved: dict[tuple[str, int], None] = {}  # insertion-ordered set
        self.metrics: Metrics | None = None  # Prometheus metrics when Settings.metrics_port is set
        self.metrics_port = 0

    @contextlib.asynccontextmanager
    async def transaction(self, *, autocommit: bool = False) -> AsyncIterator[Unit]:
        """One database transaction; its wake-ups are announced after it commits.

        ``autocommit``: no transaction, each statement commits on its own (no BEGIN and COMMIT
        round trips), for work that is one statement or whose statements are each atomic and
        idempotent (a worker's claim)."""
        assert self.engine is not None, "control plane not started"
        if autocommit:
            assert self._read_engine is not None
            async with self._read_engine.connect() as conn:
                unit = Unit(conn)
                yield unit
        else:
            async with self.engine.begin() as conn:
                unit = Unit(conn)
                yield unit
        assert self.redis_events is not None
        for request in unit.log_files:
            self._spawn(self._write_log_file(request))
        if unit.sweep_soon:
            self._sweep_wake.set()  # the leader elsewhere finds it at its next tick
        if unit.tasks_queued or unit.queued:
            faults.hit("queue.committed_before_wakeup")
        if unit.tasks_queued or unit.queued or unit.executions or unit.logs:
            await self.redis_events.announce(unit.tasks_queued, unit.executions, unit.logs, unit.queued)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit mode for reads that need no transaction (one statement is
        one consistent snapshot): no BEGIN and COMMIT round trips around it."""
        assert self._read_engine is not None, "control plane not started"
        async with self._read_engine.connect() as conn:
            yield conn

    def _spawn(self, coro) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_log_file(self, request: LogFileRequest) -> None:
        """Task ``logToFile``: write an ended attempt's log file (controlplane/service/log_files.py)."""
        assert self.engine is not None
        try:
            await write_log_file(self.engine.begin, self.storage, request)
        except Exception:
            log.exception("writing the log file of task run %s attempt %d failed", request.task_run_id, request.attempt)

    async def start(self) -> int:
        """Migrate the database, start the gRPC server and background loops.

        Returns:
            The bound gRPC port.

        Raises:
            sqlalchemy.exc.OperationalError: Postgres unreachable.
            RuntimeError: the port could not be bound.
        """
        s = self.settings
        try:
            crypto.configure(s.encryption_key)
        except ValueError as exc:
            raise RuntimeError(f"KESTREL_ENCRYPTION_KEY: {exc}") from None
        try:
            armed = faults.configure(s.fault_points)
        except ValueError as exc:
            raise RuntimeError(f"KESTREL_FAULT_POINTS: {exc}") from None
        if armed:
            log.warning("FAULT POINTS ARMED (chaos testing only, this process will crash on purpose): %s",
                        ", ".join(armed))
        count = len(secret_store.configure())
        secret_store.install_log_masking()
        if count:
            log.info("%d secret(s) loaded from SECRET_* environment variables", count)
        credentials = server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca)  # bad files: fail first
        await asyncio.to_thread(upgrade, s.database_url)
        # No pool_pre_ping (a SELECT 1 round trip before every transaction): dead connections are
        # found by a socket check on checkout instead (controlplane/store/liveness.py).
        self.engine = create_async_engine(s.database_url, pool_size=10, max_overflow=20)
        liveness.install(self.engine)
        self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        interceptors = [*await self._auth_interceptors(), DecodeInterceptor()]
        self.redis = aioredis.from_url(s.redis_url)
        self.redis_events = RedisEvents(self.redis, s.redis_prefix, self.events)
        self.redis_events.start()
        async with self.engine.begin() as conn:
            secret = s.token_secret or await repo.get_or_create_setting(conn, "task_token_secret", secrets.token_hex(32))
        self.signer = TaskTokenSigner(secret.encode())
        self.flows = FlowRegistry(self.engine)
        self.executor = Executor(self.flows.load, s.max_redeliveries, s.namespace_prefix_globals)
        self.log_ingest = LogIngest(self.flows.load, s.max_log_bytes_per_attempt)
        if s.metrics_port:
            self.metrics = Metrics(s.metrics_sample_seconds)
            self.dispatcher = MeteredDispatcher(self.transaction, self.executor, self.signer, self.events, s,
                                                metrics=self.metrics, logs=self.log_ingest)
        else:
            self.dispatcher = Dispatcher(self.transaction, self.executor, self.signer, self.events, s,
                                         logs=self.log_ingest)
        self.scheduler = Scheduler(self.transaction, self.flows.load, self.executor, options=SchedulerOptions(
            standby_delay=s.scheduler_standby_delay_seconds, missed_after=s.scheduler_missed_after_seconds,
        ), globals_=s.namespace_prefix_globals)
        self.storage = InternalStorage(backend_from_settings(s))
        self.executor.trigger_toggler = self.scheduler.toggle_in  # the Toggle task
        self.executor.storage = self.storage  # the ForEachItem merge file
        self._lookups = storage_render.install(s.database_url, self.storage)

        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.so_reuseport", 0),
                # Requests: flow sources (<= 2 MiB), log batches, outputs. Responses: poll batches
                # of rendered properties (<= 1 MiB each), executions with many task runs.
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ]
        )
        flow_pb2_grpc.add_FlowServiceServicer_to_server(FlowServicer(self), server)
        execution_pb2_grpc.add_ExecutionServiceServicer_to_server(ExecutionServicer(self), server)
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(self), server)
        log_pb2_grpc.add_LogServiceServicer_to_server(LogServicer(self), server)
        storage_pb2_grpc.add_StorageServiceServicer_to_server(StorageServicer(self), server)
        kv_pb2_grpc.add_KVServiceServicer_to_server(KVServicer(self), server)
        trigger_pb2_grpc.add_TriggerServiceServicer_to_server(TriggerServicer(self), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        if credentials is None:
            self.port = server.add_insecure_port(f"{s.host}:{s.port}")
        else:
            self.port = server.add_secure_port(f"{s.host}:{s.port}", credentials)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC port {s.host}:{s.port}")
        await server.start()
        for name in ("", *_SERVICES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self._leaders = [
            Leadership(self.redis, f"{s.redis_prefix}:leader:{name}", ttl_seconds=max(10.0, 5 * interval))
            for name, interval in (("reaper", s.reaper_interval_seconds), ("executor-sweep", s.executor_interval_seconds))
        ]
        self._loops = [
            asyncio.create_task(self._loop("reaper", s.reaper_interval_seconds, self.reap_once,
                                           self._leaders[0])),
            asyncio.create_task(self._loop("executor-sweep", s.executor_interval_seconds, self.sweep_once,
                                           self._leaders[1], self._sweep_wake)),
        ]
        # Scheduler: every replica runs it; the Redis leader fires on time, the others stand by.
        scheduler_leader = Leadership(self.redis, f"{s.redis_prefix}:leader:scheduler", ttl_seconds=3.0)
        self._leaders.append(scheduler_leader)
        if s.scheduler_enabled:
            self._loops.append(asyncio.create_task(
                run_forever(self.scheduler, scheduler_leader.is_leader, s.scheduler_interval_seconds)))
        if s.http_port is not None:
            self.http = HttpServer(webhook_app(self), s.http_host, s.http_port)
            self.http_port = await self.http.start()
            log.info("webhooks served on http://%s:%d", s.http_host, self.http_port)
        if self.metrics is not None and s.metrics_port:
            self.metrics_port = self.metrics.start(self.engine, s.host, s.metrics_port)
        tls = "plaintext" if credentials is None else ("mutual TLS" if s.tls_client_ca else "TLS")
        log.info("control plane listening on %s:%d (%s, authentication %s)", s.host, self.port, tls,
                 "on" if s.auth_enabled else "OFF")
        return self.port

    async def _auth_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The authentication interceptor when ``Settings.auth_enabled``; stores the bootstrap
        token first.

        Raises:
            FailedPreconditionError: authentication is on and the database holds no usable token
                (nobody could ever call this server).
        """
        s = self.settings
        if not s.auth_enabled:
            return []
        assert self.engine is not None
        async with self.engine.begin() as conn:
            if s.bootstrap_token:
                if await token_store.ensure_token(conn, s.bootstrap_token, Role.ADMIN, "bootstrap"):
                    log.info("bootstrap admin token stored (KESTREL_BOOTSTRAP_TOKEN, or the admin token of `server local --auth`)")
            usable = await token_store.count_usable(conn)
        if not usable:
            raise FailedPreconditionError(
                "authentication is on but the database holds no usable API token: create the first admin token "
                "with `kestrel token create --role admin --database-url URL` (or set KESTREL_BOOTSTRAP_TOKEN), "
                "or start with --no-auth"
            )
        return [AuthInterceptor(TokenVerifier(self.engine, s.auth_cache_seconds))]

    async def register_flow_source(self, source: str, origin: str = "") -> tuple[str, str, int, bool]:
        """Register a flow from YAML text (used by ``kestrel server local --flows``).

        Returns:
            (namespace, id, revision, created).

        Raises:
            FlowValidationError: the flow is invalid (``origin`` is only for the caller's messages).
        """
        async with self.transaction() as unit:
            row, created, _ = await self.flows.register(unit.conn, source)
        return row.namespace, row.flow_id, row.revision, created

    async def reap_once(self) -> int:
        """One round of the reaper: expired leases and timeouts (`Dispatcher.reap_once`), then
        ACTIVE workers silent longer than ``Settings.worker_dead_after_seconds`` marked DEAD.
        Returns how many attempts and workers were handled."""
        count = await self.dispatcher.reap_once()
        async with self.transaction() as unit:
            dead = await repo.mark_dead_workers(unit.conn, self.settings.worker_dead_after_seconds)
            await self._warn_unserved(unit)
        count += await self.dispatcher.fail_unserved_once()
        for worker_id in dead:
            log.warning("worker %s marked DEAD: no heartbeat for %.0f s", worker_id, self.settings.worker_dead_after_seconds)
        return count + len(dead)

    async def _warn_unserved(self, unit: Unit) -> None:
        """Log once, in the execution, each task run waiting in the queue for a task type that no
        ACTIVE worker of its group runs (otherwise it would wait silently)."""
        waiting = await repo.unserved_queued_task_runs(unit.conn, UNSERVED_WARNING_SECONDS)
        rows = []
        for run in waiting:
            key = (run.task_run_id, run.attempt)
            if key in self._warned_unserved:
                continue
            self._warned_unserved[key] = None
            group = f" in worker group '{run.worker_group}'" if run.worker_group else ""
            rows.append({
                "execution_id": run.execution_id, "task_run_id": run.task_run_id, "task_id": run.task_id,
                "attempt": run.attempt, "level": "WARN", "timestamp": repo.utcnow(),
                "message": f"no active worker runs task type {run.task_type}{group}: the task run waits in the "
                           "queue until one registers (see `kestrel workers`)",
            })
            unit.logs.add(run.execution_id)
        while len(self._warned_unserved) > 10_000:
            self._warned_unserved.pop(next(iter(self._warned_unserved)))
        await repo.append_logs(unit.conn, rows)

    async def sweep_once(self) -> int:
        """Advance executions waiting on the executor queue (timers, recovery) and start the
        attempts whose retry date has come (durable timers in ``task_runs.next_attempt_at``);
        returns how many were handled."""
        async with self.transaction() as unit:
            due_attempts = await repo.due_next_attempts(unit.conn)
        for execution_id, task_run_id in due_attempts:
            try:
                async with self.transaction() as unit:
                    await self.executor.start_due_attempt(unit, execution_id, task_run_id)
            except Exception:
                log.exception("starting the next attempt of task run %s failed; retrying in 2 s", task_run_id)
                async with self.transaction() as unit:
                    await repo.postpone_next_attempt(unit.conn, task_run_id, 2.0)
        async with self.transaction() as unit:
            due = await repo.due_dirty_executions(unit.conn)
        for execution_id in due:
            try:
                async with self.transaction() as unit:
                    await self.executor.advance(unit, execution_id)
            except Exception as exc:
                log.exception("executor failed on execution %s", execution_id)
                async with self.transaction() as unit:
                    failures = await repo.postpone_dirty(unit.conn, execution_id, 2.0)
                    if failures >= _MAX_EXECUTOR_FAILURES:
                        await self.executor.fail_execution(
                            unit, execution_id, f"executor error after {failures} tries: {type(exc).__name__}: {exc}"
                        )
        return len(due) + len(due_attempts)

    async def _loop(self, name: str, interval: float, once, leadership: Leadership,
                    wake: asyncio.Event | None = None) -> None:
        """Run ``once()`` every ``interval`` seconds while this replica leads ``name``; with
        ``wake``, also as soon as it is set (at most every :data:`MIN_LOOP_GAP_SECONDS`)."""
        while True:
            if wake is not None:
                wake.clear()  # set again during once(): run again right after it
            try:
                if await leadership.is_leader():
                    await once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s loop iteration failed", name)
            if wake is None:
                await asyncio.sleep(interval)
                continue
            await asyncio.sleep(MIN_LOOP_GAP_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, interval - MIN_LOOP_GAP_SECONDS))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls, let in-flight ones finish for ``grace`` seconds, close pools.

        Every step is bounded (`STOP_STEP_SECONDS`, plus ``grace`` for the gRPC server): a step
        that hangs is logged by name and skipped, so a stop always ends.
        """
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            await _bounded("background loop", task)
        for task in list(self._background):
            await _bounded("background write", task)
        for leadership in self._leaders:
            await _bounded("leadership release", leadership.resign())
        if self.http is not None:
            await _bounded("webhook HTTP server", self.http.stop())
        if self.metrics is not None:
            await _bounded("metrics server", self.metrics.stop())
        if self._server is not None:
            await _bounded("gRPC server", self._server.stop(grace), STOP_STEP_SECONDS + grace)
        if self.redis_events is not None:
            await _bounded("Redis events", self.redis_events.stop())
        if self.redis is not None:
            await _bounded("Redis client", self.redis.aclose())
        if self._lookups is not None:
            storage_render.uninstall(self._lookups)
            self._lookups = None
        if self.engine is not None:
            await _bounded("database pool", self.engine.dispose())

    async def wait_for_termination(self) -> None:
        """Block until the gRPC server stops."""
        assert self._server is not None
        await self._server.wait_for_termination()


STOP_STEP_SECONDS = 10.0
"""Longest wait for one step of `ControlPlane.stop` (seconds)."""


async def _bounded(name: str, awaitable: Awaitable[object], seconds: float = STOP_STEP_SECONDS) -> None:
    """Await ``awaitable`` for at most ``seconds``; a timeout or error is logged, not raised."""
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(awaitable)), seconds)
    except TimeoutError:
        log.warning("stop: %s did not finish within %.0f s; continuing without it", name, seconds)
    except (asyncio.CancelledError, Exception):  # a cancelled loop task ends this way
        pass


def freeze_startup_objects() -> None:
    """Move every object alive once the control plane has started (modules, protobuf and
    SQLAlchemy metadata, compiled templates…) out of the garbage collector's reach
    (:func:`gc.freeze`, after a full collection), for the rest of the process.

    Python's full (generation 2) collection walks every tracked object: with the startup objects
    included it paused the event loop for 80–95 ms every few seconds under load on the benchmark
    machine, which made the scheduler's fires of that second late by as much (issue 10). Only
    for a process that runs one control plane until it exits (``kestrel server standalone`` and
    ``local``), not for in-process servers of a test run, whose objects must stay collectable.
    """
    gc.collect()
    gc.freeze()


async def _serve(settings: Settings) -> None:
    cp = ControlPlane(settings)
    await cp.start()
    freeze_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"kestrel control plane listening on {settings.host}:{cp.port}", flush=True)
    if not settings.auth_enabled:
        log.warning("WARNING: AUTHENTICATION IS OFF (--no-auth): anyone who reaches %s:%d can read and change every "
                    "flow, execution, file and KV entry", settings.host, cp.port)
    await stop.wait()
    await cp.stop()


def run_standalone(settings: Settings) -> None:
    """Run one control-plane replica until SIGINT/SIGTERM (``kestrel server standalone``) on
    ``Settings.event_loop``.

    Raises:
        SystemExit: uvloop chosen but not installed.
    """
    logsetup.configure(logging.INFO)
    if settings.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise SystemExit("KESTREL_EVENT_LOOP=uvloop: uvloop is not installed (pip install uvloop)") from None
        log.info("event loop: uvloop %s", uvloop.__version__)
        uvloop.run(_serve(settings))
        return
    asyncio.run(_serve(settings))
