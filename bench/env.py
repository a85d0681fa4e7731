"""Processes and databases of a benchmark run: a fresh Postgres database, the control plane as a
``kestrel server standalone`` subprocess, and ``python -m worker_sdk`` worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "KESTREL_BENCH_ADMIN_URL",
    os.environ.get("KESTREL_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
)
REDIS_URL = os.environ.get("KESTREL_BENCH_REDIS_URL", os.environ.get("KESTREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))


class BenchError(RuntimeError):
    """A benchmark step could not run (the message says which and why)."""


def pg_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://…``) as a libpq URL for ``psycopg.connect``."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def fresh_database(label: str) -> Iterator[str]:
    """Creates ``kestrel_bench_<label>_<pid>_<hex>`` on the admin URL's server and yields its
    SQLAlchemy URL; drops it (``WITH (FORCE)``) afterwards.

    Raises:
        BenchError: Postgres is not reachable.
    """
    name = f"kestrel_bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(pg_dsn(ADMIN_URL), autocommit=True)
    except psycopg.OperationalError as exc:
        raise BenchError(f"Postgres is not reachable at {ADMIN_URL}: {exc}") from None
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _kestrel_command() -> list[str]:
    script = Path(sys.executable).parent / "kestrel"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from controlplane.cli import app; app()"]


class ControlPlaneProcess:
    """``kestrel server standalone`` on a free port, on its own database and Redis prefix.

    Args:
        database_url: SQLAlchemy URL of an existing, empty database.
        env: Extra ``KESTREL_*`` settings for the process.
        workdir: Where its data dir and log file go.
    """

    def __init__(self, database_url: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.extra_env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.log_path = workdir / f"controlplane-{uuid.uuid4().hex[:6]}.log"

    def start(self, timeout: float = 90.0) -> ControlPlaneProcess:
        """Starts the process and waits for its "listening on" line.

        Raises:
            BenchError: it exited or did not listen within ``timeout`` s (the log's tail is in the message).
        """
        env = dict(
            os.environ,
            KESTREL_REDIS_PREFIX=f"kestrel-bench-{uuid.uuid4().hex[:8]}",
            KESTREL_DATA_DIR=str(self.workdir / "data"),
            PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **self.extra_env,
        )
        log = open(self.log_path, "w")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen(
            [*_kestrel_command(), "server", "standalone", "--database-url", self.database_url,
             "--redis-url", REDIS_URL, "--port", "0", "--no-auth"],  # measures the engine, not auth
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=self.workdir,
        )
        found: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if "listening on" in line and not found:
                    found.append(line.rsplit(" ", 1)[-1].strip())
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True, name="cp-stdout").start()
        ready.wait(timeout)
        if not found:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"control plane did not start within {timeout:g} s; log tail:\n{tail}")
        self.address = found[0]
        return self

    @property
    def pid(self) -> int:
        """OS process id."""
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident set size of the control-plane process (and any children), in MiB."""
        p = psutil.Process(self.pid)
        total = p.memory_info().rss
        for child in p.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / (1024 * 1024)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@contextmanager
def control_plane(database_url: str, workdir: Path, env: dict[str, str] | None = None) -> Iterator[ControlPlaneProcess]:
    """A started :class:`ControlPlaneProcess`, stopped on exit."""
    cp = ControlPlaneProcess(database_url, workdir, env)
    try:
        yield cp.start()
    finally:
        cp.stop()


@contextmanager
def workers(
    address: str, database_url: str, count: int, concurrency: int, receipts: Path | None, workdir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` worker processes (``python -m worker_sdk --module bench.probe``), yielded once
    all of them are registered (rows in ``workers``); SIGTERM on exit.

    Raises:
        BenchError: a worker exited or did not register within 60 s.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    if receipts is not None:
        env["KESTREL_BENCH_RECEIPTS"] = str(receipts)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            log = open(workdir / f"worker-{i}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "worker_sdk", "--server", address, "--concurrency", str(concurrency),
                 "--module", "bench.probe", "--log-level", "WARNING"],
                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            ))
        deadline = time.monotonic() + 60
        with psycopg.connect(pg_dsn(database_url), autocommit=True) as conn:
            while True:
                n = conn.execute("SELECT count(*) FROM workers WHERE state = 'ACTIVE'").fetchone()[0]
                if n >= count:
                    break
                dead = [p for p in procs if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise BenchError(f"{count} workers did not register (registered: {n}); see {workdir}/worker-*.log")
                time.sleep(0.1)
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def scratch_dir() -> Path:
    """A new temporary directory for one run's logs and data."""
    return Path(tempfile.mkdtemp(prefix="kestrel-bench-"))


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation, None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
