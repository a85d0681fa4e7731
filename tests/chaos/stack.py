"""Processes of a chaos scenario: a restartable ``kestrel server standalone`` subprocess on a
fixed port and Redis prefix, worker processes, and Postgres checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

REPO = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("KESTREL_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KESTREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TERMINAL = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "RETRIED", "SKIPPED")


class ChaosError(AssertionError):
    """A scenario step could not run or a guarantee was broken (the message says which)."""


class ChaosSkip(Exception):  # noqa: N818 - a skip, not an error
    """This machine cannot run the scenario (e.g. no network namespaces); the message says why."""


def pg_dsn(url: str) -> str:
    """A SQLAlchemy URL as a libpq URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fresh_database(label: str) -> Iterator[str]:
    """A new empty database (SQLAlchemy URL), dropped afterwards."""
    name = f"kestrel_chaos_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_dsn(ADMIN_URL), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _kestrel() -> list[str]:
    script = Path(sys.executable).parent / "kestrel"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from controlplane.cli import app; app()"]


@dataclass
class ControlPlaneProcess:
    """``kestrel server standalone`` that can be SIGKILLed and started again on the same port,
    database and Redis prefix. ``settings`` are extra ``KESTREL_*`` variables."""

    database_url: str
    workdir: Path
    settings: dict[str, str]
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.port = free_port()
        self.redis_prefix = f"kestrel-chaos-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0
        self.log_path = self.workdir / "controlplane.log"

    @property
    def address(self) -> str:
        """``HOST:PORT`` (``host`` is the interface it binds, 127.0.0.1 by default)."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        """Start it and wait for its "listening on" line.

        Raises:
            ChaosError: it exited or did not listen in time (with the log's tail).
        """
        env = dict(os.environ, KESTREL_REDIS_PREFIX=self.redis_prefix, KESTREL_DATA_DIR=str(self.workdir / "data"),
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **self.settings)
        log = open(self.log_path, "a")  # noqa: SIM115 - kept open for the process's life
        log.write(f"---- start #{self.starts + 1}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [*_kestrel(), "server", "standalone", "--database-url", self.database_url, "--redis-url", REDIS_URL,
             "--port", str(self.port), "--host", self.host, "--no-auth"],  # auth is tested in tests/integration/test_auth*.py
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=self.workdir,
        )
        ready = threading.Event()
        proc = self.proc

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True, name="cp-stdout").start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.2):
            if time.monotonic() > deadline:
                break
        if proc.poll() is not None or not ready.is_set():
            self.stop()
            raise ChaosError(f"control plane did not start within {timeout:g} s; log tail:\n{self.log_tail()}")
        self.starts += 1

    def sigkill(self) -> None:
        """SIGKILL the process and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of its stderr log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def start_worker(address: str, concurrency: int, workdir: Path, name: str, *, prefix: list[str] | None = None,
                 args: list[str] | None = None, log_level: str = "WARNING") -> subprocess.Popen[bytes]:
    """One ``python -m worker_sdk`` process (built-in task types); its log in ``workdir/NAME.log``.

    ``prefix`` runs it through another command (``ip netns exec NS``: on another "host");
    ``args`` are extra worker flags (``--worker-id``, ``--worker-group``…)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "worker_sdk", "--server", address, "--concurrency", str(concurrency),
         "--log-level", log_level, *(args or [])],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each still-running process, SIGKILL after 20 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@contextmanager
def stack(label: str, settings: dict[str, str],
          host: str = "127.0.0.1") -> Iterator[tuple[ControlPlaneProcess, psycopg.Connection, Path]]:
    """A fresh database, a started control plane on it (gRPC bound on ``host``), and an
    autocommit connection to it."""
    workdir = Path(tempfile.mkdtemp(prefix=f"kestrel-chaos-{label}-"))
    with fresh_database(label) as url:
        cp = ControlPlaneProcess(url, workdir, dict(settings), host)
        try:
            cp.start()
            with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
                yield cp, conn, workdir
        finally:
            cp.stop()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until truthy; ChaosError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_registered(conn: psycopg.Connection, count: int, timeout: float = 120.0) -> None:
    """Wait until ``count`` workers are ACTIVE."""
    wait_for(lambda: conn.execute("SELECT count(*) FROM workers WHERE state = 'ACTIVE'").fetchone()[0] >= count,
             timeout, f"{count} worker(s) to register")


def execution_states(conn: psycopg.Connection, flow_id: str) -> dict[str, int]:
    """Executions of ``flow_id`` per state."""
    rows = conn.execute("SELECT state, count(*) FROM executions WHERE flow_id = %s GROUP BY state", (flow_id,))
    return {state: n for state, n in rows}


def wait_all_terminal(conn: psycopg.Connection, flow_id: str, count: int, timeout: float) -> dict[str, int]:
    """Wait until ``count`` executions of ``flow_id`` are terminal; returns the states seen at
    the end (whether or not all got there: the caller asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        states = execution_states(conn, flow_id)
        done = sum(n for s, n in states.items() if s in TERMINAL)
        if done >= count or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def duplicate_completions(conn: psycopg.Connection, flow_id: str) -> list[tuple[str, int]]:
    """Task runs of ``flow_id`` that ended SUCCESS without exactly one SUCCESS attempt:
    (task run id, SUCCESS attempts). Empty when every completion was recorded once."""
    rows = conn.execute(
        """SELECT tr.id, count(a.*) FILTER (WHERE a.state = 'SUCCESS')
             FROM task_runs tr JOIN executions e ON e.id = tr.execution_id
             LEFT JOIN task_run_attempts a ON a.task_run_id = tr.id
            WHERE e.flow_id = %s AND tr.state = 'SUCCESS'
            GROUP BY tr.id
           HAVING count(a.*) FILTER (WHERE a.state = 'SUCCESS') <> 1""", (flow_id,))
    return [(r[0], r[1]) for r in rows]


def task_run_counts(conn: psycopg.Connection, flow_id: str) -> dict[int, int]:
    """Executions of ``flow_id`` by how many task runs they have (a duplicate task run would show
    as an execution with one too many)."""
    rows = conn.execute(
        """SELECT n, count(*) FROM (SELECT e.id, count(tr.id) AS n FROM executions e
             LEFT JOIN task_runs tr ON tr.execution_id = e.id WHERE e.flow_id = %s GROUP BY e.id) x GROUP BY n""",
        (flow_id,))
    return {n: c for n, c in rows}


def attempts_histogram(conn: psycopg.Connection, flow_id: str, task_id: str) -> dict[int, int]:
    """Task runs ``task_id`` of ``flow_id`` by number of attempts (1 = never re-dispatched)."""
    rows = conn.execute(
        """SELECT n, count(*) FROM (SELECT tr.id, count(a.*) AS n FROM task_runs tr
             JOIN executions e ON e.id = tr.execution_id LEFT JOIN task_run_attempts a ON a.task_run_id = tr.id
            WHERE e.flow_id = %s AND tr.task_id = %s GROUP BY tr.id) x GROUP BY n""", (flow_id, task_id))
    return {n: c for n, c in rows}


def delete_prefix_keys(url: str, prefix: str) -> int:
    """Delete every Redis key under ``prefix`` (a FLUSHALL limited to one stack); returns how many."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()
