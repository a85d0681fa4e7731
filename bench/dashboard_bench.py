"""Section ``dashboard``: the executions page's server call with many executions stored.

Issue 9's target: with 100k executions in the database, the call the dashboard's executions page
makes (``ListExecutions``, first page of 50, newest first; also with a namespace + flow filter
and with a state filter, and page 2 through its token) answers in under 300 ms.

How: a control plane (``kestrel server standalone``) on a fresh database; one flow deployed and
10 real executions started through the API (no worker: they stay CREATED); then the database is
filled to N executions by copying those rows in SQL (new ids, spread creation dates, half of them
marked SUCCESS), which is how a long-lived installation looks to the query. Each call is timed
from the client (gRPC round trip included), 30 times after 3 warm-ups; p50/p99 in ms.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg

from bench.env import control_plane, fresh_database, percentile, pg_dsn
from bench.kestrel_bench import NAMESPACE, three_task_flow
from worker_sdk.client import KestrelClient

COUNTS = {"smoke": 1_000, "quick": 20_000, "full": 100_000}
"""Executions stored, by mode."""
_CALLS = 30


def _fill(conn: psycopg.Connection, total: int) -> None:
    """Copy the stored executions until there are ``total`` (every column copied as is except
    the id, the creation/update dates and, for half of them, the state)."""
    columns = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'executions' ORDER BY ordinal_position"
    )]
    have = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
    missing = total - have
    if missing <= 0:
        return
    replaced = {
        "id": "substr(md5(random()::text || g::text), 1, 22)",
        "created_at": "e.created_at - (g || ' seconds')::interval",
        "updated_at": "e.updated_at - (g || ' seconds')::interval",
        "request_id": "NULL",
        "state": "CASE WHEN g %% 2 = 0 THEN 'SUCCESS' ELSE e.state END",
    }
    select = ", ".join(replaced.get(c, f"e.{c}") for c in columns)
    conn.execute(
        "WITH src AS (SELECT *, row_number() OVER (ORDER BY id) - 1 AS rn FROM executions) "
        f"INSERT INTO executions ({', '.join(columns)}) "  # noqa: S608 - column names come from the catalog
        f"SELECT {select} FROM generate_series(1, %s) AS g JOIN src AS e ON e.rn = g %% %s",
        (missing, have),
    )
    conn.execute("ANALYZE executions")


def _time(call: Any) -> dict[str, float | None]:
    for _ in range(3):
        call()
    samples = []
    for _ in range(_CALLS):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}


def run_dashboard(mode: str, workdir: Path, results: dict[str, Any]) -> None:
    """Fill the database, time the executions page's calls; writes ``dashboard_*`` keys."""
    total = COUNTS[mode]
    with fresh_database("dashboard") as url:
        with control_plane(url, workdir) as cp, KestrelClient(cp.address, timeout=60) as client:
            client.deploy_flow(three_task_flow("dash"))
            for _ in range(10):
                client.start_execution(NAMESPACE, "dash")
            with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
                started = time.perf_counter()
                _fill(conn, total)
                fill_s = time.perf_counter() - started
                stored = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
            first = client.list_executions(page_size=50)
            figures = {
                "first_page": _time(lambda: client.list_executions(page_size=50)),
                "flow_filter": _time(lambda: client.list_executions(namespace=NAMESPACE, flow_id="dash", page_size=50)),
                "state_filter": _time(lambda: client.list_executions(states=["SUCCESS"], page_size=50)),
                "page_2": _time(lambda: client.list_executions(page_size=50, page_token=first.next_page_token)),
            }
    results["dashboard"] = {"executions_stored": stored, "fill_s": round(fill_s, 1), **figures}
    results["dashboard_list_p50_ms"] = figures["first_page"]["p50_ms"]
    results["dashboard_list_p99_ms"] = figures["first_page"]["p99_ms"]
