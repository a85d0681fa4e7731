"""A real control plane for tests: runs in a background thread on its own event loop, on a free
port, against the real Postgres and Redis; workers run as separate processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controlplane.config import Settings
from controlplane.server import ControlPlane

REPO = Path(__file__).resolve().parents[2]


class ServerThread:
    """A :class:`ControlPlane` running in a daemon thread; ``address`` is ``127.0.0.1:PORT``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cp = ControlPlane(settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="control-plane")
        self.address = ""

    def start(self) -> ServerThread:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self.cp.start(), self.loop).result(60)
        self.address = f"127.0.0.1:{port}"
        return self

    def run(self, coro, timeout: float = 60):
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(self.cp.stop(1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def test_settings(database_url: str, **overrides) -> Settings:
    """Settings for a test control plane: port 0, short leases, a unique Redis prefix."""
    base = dict(
        database_url=database_url,
        redis_url=os.environ.get("KESTREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=f"kestrel-test-{uuid.uuid4().hex[:8]}",
        port=0,
        lease_seconds=3.0,
        heartbeat_interval_seconds=0.5,
        reaper_interval_seconds=0.3,
        poll_wait_seconds=5.0,
        encryption_key="kestrel-integration-tests-encryption-key",  # SECRET inputs work
    )
    base.update(overrides)
    return Settings(**base)


@contextmanager
def worker_process(address: str, *extra: str, concurrency: int = 4,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A Python SDK worker as a separate OS process (``python -m worker_sdk``), with ``env``
    (default this process's environment)."""
    env = dict(env if env is not None else os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker_sdk", "--server", address, "--concurrency", str(concurrency), *extra],
        env=env,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
