"""Statement census: SQL statements the control plane sends per completed task run.

Wall-clock figures on a shared machine are noisy; the number of statements (each one a round
trip to Postgres) is not. This section runs the control plane **in this process** (on its own
event loop in a thread, as ``tests/integration/harness.py`` does) so that a SQLAlchemy
``before_cursor_execute`` listener can count every statement, while 2 worker processes run
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
from sqlalchemy import event

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

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            c = target[0]
            if c is not None:
                c[_shape(statement)] += 1

        def commit(conn: Any) -> None:
            c = target[0]
            if c is not None:
                c["(commit)"] += 1

        def begin(conn: Any) -> None:
            c = target[0]
            if c is not None and not conn.connection.driver_connection.autocommit:  # autocommit: no BEGIN sent
                c["(begin)"] += 1

        assert cp.engine is not None
        event.listen(cp.engine.sync_engine, "before_cursor_execute", count)
        event.listen(cp.engine.sync_engine, "commit", commit)
        event.listen(cp.engine.sync_engine, "begin", begin)
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
            asyncio.run_coroutine_threadsafe(cp.stop(1.0), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    scale = wall / idle_seconds
    net = Counter({k: v - idle.get(k, 0) * scale for k, v in shapes.items()})
    statements = sum(v for k, v in net.items() if k not in ("(commit)", "(begin)"))
    results["sql_statements_per_task_run"] = round(statements / task_runs, 2)
    results["sql_commits_per_task_run"] = round(net["(commit)"] / task_runs, 2)
    # psycopg sends BEGIN as its own round trip before a transaction's first statement.
    results["sql_round_trips_per_task_run"] = round((statements + net["(commit)"] + net["(begin)"]) / task_runs, 2)
    results["census"] = {
        "executions": executions, "task_runs": task_runs, "wall_s": round(wall, 3),
        "statements_gross": sum(v for k, v in shapes.items() if k not in ("(commit)", "(begin)")), "commits_gross": shapes["(commit)"],
        "background_statements_per_s": round(
            sum(v for k, v in idle.items() if k not in ("(commit)", "(begin)")) / idle_seconds, 1),
        "per_task_run_net": {k: round(v / task_runs, 2) for k, v in net.most_common() if v / task_runs >= 0.01},
        "background_per_s": {k: round(v / idle_seconds, 2) for k, v in idle.most_common()},
        "definition": "SQL statements (SQLAlchemy before_cursor_execute) and commits of an in-process control "
                      "plane per task run, executions of the 3-task flow run one at a time with 2 worker "
                      "processes, minus the background rate (idle window with the same workers) pro rata; "
                      "the client's WatchExecution reads are included",
    }
