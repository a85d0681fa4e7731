"""Statement census: SQL statements the control plane sends per completed task run.

Wall-clock figures on a shared machine are noisy; the number of statements and of round trips
to Postgres is not. This section runs the control plane **in this process** (on its own event
loop in a thread, as ``tests/integration/harness.py`` does) so that wrappers of psycopg's
cursor ``execute``, ``commit`` and ``pipeline`` can count every statement, commit and round
trip (a pipeline of several statements is one), while 2 worker processes run
executions of the 3-task flow one after another. Background loops (reaper, executor sweep,
scheduler, heartbeats) run as usual and are counted too.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from bench.env import REDIS_URL, fresh_database, pg_dsn, workers
from controlplane.config import Settings
from controlplane.server import ControlPlane
from worker_sdk.client import KestrelClient

_SHAPE = re.compile(
    r"^\s*(?:WITH\b.*?\)\s*)?(?P<verb>SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|BEGIN|COMMIT|ROLLBACK)\b"
    r"(?:.*?\bFROM\s+|\s+)?(?P<table>[a-z_]+)?",
    re.IGNORECASE | re.DOTALL,
)


_CTE_NAME = re.compile(r"(?:\bWITH|,)\s*([a-z_]+)\s+AS\s*\(", re.IGNORECASE)


def _shape(statement: str) -> str:
    """``VERB table`` of a SQL statement (``SELECT executions``, ``UPDATE task_runs``…); a
    statement with common table expressions is named by them (``WITH picked+deleted+claimed+
    attempts``: the one-statement claim)."""
    if statement.lstrip()[:4].upper() == "WITH":
        names = [n for n in _CTE_NAME.findall(statement) if n.lower() != "select"]
        if names:
            return "WITH " + "+".join(dict.fromkeys(names))
    m = _SHAPE.match(statement)
    if not m:
        return statement.split(None, 1)[0].upper() if statement.strip() else "?"
    verb = m.group("verb").split()[0].upper()
    table = m.group("table") or ""
    if verb == "SELECT":
        table = _outer_from(statement)
    return f"{verb} {table}".strip()


def _outer_from(statement: str) -> str:
    """The table of the outer query's FROM (outside parentheses: not a sub-select's)."""
    for m in re.finditer(r"\bFROM\s+([a-z_]+)", statement, re.IGNORECASE):
        before = statement[:m.start()]
        if before.count("(") == before.count(")"):
            return m.group(1)
    return "(no table)"


def run_census(executions: int, workdir: Path, results: dict[str, Any], idle_seconds: float = 3.0) -> None:
    """Counts statements and transactions while ``executions`` 3-task executions run one at a
    time, then for ``idle_seconds`` with nothing to run (the background rate, subtracted pro rata);
    sets ``sql_statements_per_task_run``, ``sql_commits_per_task_run`` and ``census``."""
    from bench.kestrel_bench import NAMESPACE, three_task_flow

    with fresh_database("census") as url:
        # poll_recheck_seconds: an idle poll claims again every second by default; those claims
        # happen in the idle window but hardly while work flows (polls are woken by it), so the
        # pro-rata subtraction would remove claims that never happened. Nothing in the census
        # flow needs the recheck (no retries, one replica).
        settings = Settings(database_url=url, redis_url=REDIS_URL, redis_prefix=f"kestrel-bench-{uuid.uuid4().hex[:8]}",
                            port=0, data_dir=workdir / "census-data", poll_recheck_seconds=30.0,
                            # The background loops (not needed by this flow: results advance
                            # inline) run at a fixed rate per second, so on a loaded machine,
                            # where the census takes several times longer, their pro-rata
                            # subtraction dominates the figure: slow them down instead.
                            scheduler_interval_seconds=3600.0, executor_interval_seconds=3600.0,
                            reaper_interval_seconds=3600.0)
        cp = ControlPlane(settings)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True, name="census-control-plane")
        thread.start()
        port = asyncio.run_coroutine_threadsafe(cp.start(), loop).result(90)
        address = f"127.0.0.1:{port}"
        shapes: Counter[str] = Counter()
        idle: Counter[str] = Counter()
        target: list[Counter[str] | None] = [None]

        # Counted at psycopg (the control plane sends its hot-path SQL on psycopg directly,
        # controlplane/store/pipeline.py, and the rest through SQLAlchemy, which calls the same
        # cursor method): every statement; a BEGIN where psycopg sends one; every COMMIT; and
        # the round trips, where a pipeline of several statements (and its BEGIN/COMMIT) is one.
        def count_execute(cursor: Any, statement: Any) -> None:
            c = target[0]
            if c is None:
                return
            conn = cursor.connection
            text = statement.decode() if isinstance(statement, bytes) else str(statement)
            piped = conn._pipeline is not None
            if text.strip().upper() == "COMMIT":  # sent in a pipeline (controlplane/store/pipeline.py)
                c["(commit)"] += 1
                if not piped:
                    c["(round trip)"] += 1
                return
            c[_shape(text)] += 1
            if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                c["(begin)"] += 1
                if not piped:
                    c["(round trip)"] += 1
            if not piped:
                c["(round trip)"] += 1

        def count_commit(conn: Any) -> None:
            c = target[0]
            if c is not None and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                c["(commit)"] += 1
                if conn._pipeline is None:
                    c["(round trip)"] += 1

        def count_pipeline(conn: Any) -> None:
            c = target[0]
            if c is not None and conn._pipeline is None:
                c["(round trip)"] += 1

        restore = _patch_psycopg(count_execute, count_commit, count_pipeline)
        try:
            with KestrelClient(address, timeout=60) as client, \
                    workers(address, url, 2, 4, None, workdir):
                client.deploy_flow(three_task_flow("census"))
                for _ in range(3):  # warm-up
                    client.wait_execution(client.start_execution(NAMESPACE, "census").id, timeout=120)
                target[0] = shapes
                t0 = time.perf_counter()
                for _ in range(executions):
                    client.wait_execution(client.start_execution(NAMESPACE, "census").id, timeout=120)
                wall = time.perf_counter() - t0
                # The same background (polls, heartbeats, reaper, sweeps, scheduler) with no work.
                target[0] = idle
                time.sleep(idle_seconds)
                target[0] = None
            with psycopg.connect(pg_dsn(url)) as conn:
                task_runs = conn.execute(
                    "SELECT count(*) FROM task_runs tr JOIN executions e ON e.id = tr.execution_id "
                    "WHERE e.flow_id = 'census'").fetchone()[0] - 3 * 3
        finally:
            restore()
            asyncio.run_coroutine_threadsafe(cp.stop(1.0), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    scale = wall / idle_seconds
    net = Counter({k: v - idle.get(k, 0) * scale for k, v in shapes.items()})
    statements = sum(v for k, v in net.items() if not k.startswith("("))
    results["sql_statements_per_task_run"] = round(statements / task_runs, 2)
    results["sql_commits_per_task_run"] = round(net["(commit)"] / task_runs, 2)
    results["sql_round_trips_per_task_run"] = round(net["(round trip)"] / task_runs, 2)
    results["census"] = {
        "executions": executions, "task_runs": task_runs, "wall_s": round(wall, 3),
        "statements_gross": sum(v for k, v in shapes.items() if not k.startswith("(")), "commits_gross": shapes["(commit)"],
        "background_statements_per_s": round(
            sum(v for k, v in idle.items() if not k.startswith("(")) / idle_seconds, 1),
        "per_task_run_net": {k: round(v / task_runs, 2) for k, v in net.most_common() if v / task_runs >= 0.01},
        "background_per_s": {k: round(v / idle_seconds, 2) for k, v in idle.most_common()},
        "definition": "SQL statements (psycopg cursor executes), commits and round trips (a pipeline is one) of an in-process control "
                      "plane per task run, executions of the 3-task flow run one at a time with 2 worker "
                      "processes, minus the background rate (idle window with the same workers) pro rata; "
                      "the client's WatchExecution reads are included",
    }


def _patch_psycopg(on_execute: Any, on_commit: Any, on_pipeline: Any) -> Any:
    """Wrap psycopg's async cursor ``execute``, connection ``commit`` and ``pipeline`` with
    counters (this process only); returns a function that undoes it."""
    import contextlib

    cursor_execute = psycopg.AsyncCursor.execute
    commit = psycopg.AsyncConnection.commit
    pipeline = psycopg.AsyncConnection.pipeline

    async def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        on_execute(self, query)
        return await cursor_execute(self, query, *args, **kwargs)

    async def commit_(self: Any) -> None:
        on_commit(self)
        await commit(self)

    @contextlib.asynccontextmanager
    async def pipeline_(self: Any) -> Any:
        on_pipeline(self)
        async with pipeline(self) as p:
            yield p

    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
    psycopg.AsyncConnection.commit = commit_  # type: ignore[method-assign]
    psycopg.AsyncConnection.pipeline = pipeline_  # type: ignore[method-assign]

    def restore() -> None:
        psycopg.AsyncCursor.execute = cursor_execute  # type: ignore[method-assign]
        psycopg.AsyncConnection.commit = commit  # type: ignore[method-assign]
        psycopg.AsyncConnection.pipeline = pipeline  # type: ignore[method-assign]

    return restore
