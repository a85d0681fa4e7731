"""Baselines measured in the same run: a raw Postgres ``SKIP LOCKED`` claim loop (psycopg, 2
processes) and Celery 5 on the local Redis (2 worker processes, no-op tasks)."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench.env import REDIS_URL, REPO, BenchError, fresh_database, pg_dsn

CLAIM_SQL = """DELETE FROM bench_queue WHERE id = (
    SELECT id FROM bench_queue ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, payload"""


def _claimer(dsn: str, start: Any, counts: Any, index: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
        start.wait()
        n = 0
        while conn.execute(CLAIM_SQL, prepare=True).fetchone() is not None:
            n += 1
        counts[index] = n


def run_pg_baseline(rows: int, results: dict[str, Any], processes: int = 2) -> None:
    """Claims ``rows`` queue rows, one per autocommit transaction, from ``processes`` processes;
    sets ``pg_skip_locked_claims_per_s``."""
    with fresh_database("pg") as url:
        dsn = pg_dsn(url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_queue (id bigserial PRIMARY KEY, payload text NOT NULL)")
            conn.execute("INSERT INTO bench_queue (payload) SELECT 'task-' || g FROM generate_series(1, %s) g", (rows,))
            conn.execute("VACUUM ANALYZE bench_queue")
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        start = ctx.Event()
        counts = ctx.Array("l", processes)
        procs = [ctx.Process(target=_claimer, args=(dsn, start, counts, i)) for i in range(processes)]
        for p in procs:
            p.start()
        time.sleep(1.0)  # connections open
        t0 = time.perf_counter()
        start.set()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
    claimed = sum(counts[:])
    if claimed != rows:
        raise BenchError(f"pg baseline claimed {claimed} of {rows} rows")
    results["pg_skip_locked_claims_per_s"] = round(claimed / wall, 1)
    results["pg_baseline"] = {
        "rows": rows, "processes": processes, "wall_s": round(wall, 3),
        "definition": "DELETE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING, one row per "
                      "autocommit transaction, prepared, psycopg 3",
    }


def celery_available() -> bool:
    """Whether Celery and its Redis transport are importable (the ``bench`` extra)."""
    return importlib.util.find_spec("celery") is not None and importlib.util.find_spec("redis") is not None


def run_celery_baseline(tasks: int, workdir: Path, results: dict[str, Any], processes: int = 2) -> None:
    """``tasks`` no-op Celery tasks through the local Redis with ``processes`` solo workers; sets
    ``celery_tasks_per_s`` (None with a note when Celery is not installed)."""
    if not celery_available():
        results["celery_tasks_per_s"] = None
        results["celery_note"] = "skipped: celery is not installed (pip install -e '.[bench]')"
        return
    import redis

    from bench import celery_app

    queue = f"kestrel-bench-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, KESTREL_BENCH_CELERY_QUEUE=queue, KESTREL_BENCH_REDIS_URL=REDIS_URL,
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    app = celery_app.make_app(queue, REDIS_URL)
    noop = app.tasks["bench.noop"]
    r = redis.Redis.from_url(REDIS_URL)
    counter = celery_app.counter_key(queue)
    r.delete(counter)
    procs = []
    try:
        for i in range(processes):
            log = open(workdir / f"celery-{i}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "--pool", "solo",
                 "--concurrency", "1", "--queues", queue, "--hostname", f"bench{i}-{queue}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            ))
        # Warm-up: every worker consumes until 20 tasks ran.
        for _ in range(20):
            noop.apply_async()
        deadline = time.monotonic() + 60
        while int(r.get(counter) or 0) < 20:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise BenchError(f"celery workers did not run the warm-up tasks; see {workdir}/celery-*.log")
            time.sleep(0.05)
        r.delete(counter)
        t0 = time.perf_counter()
        with app.producer_or_acquire() as producer:  # one connection for every send, as a real client
            for _ in range(tasks):
                noop.apply_async(producer=producer)
        sent = time.perf_counter() - t0
        deadline = time.monotonic() + max(60.0, tasks / 50)
        while int(r.get(counter) or 0) < tasks:
            if time.monotonic() > deadline:
                raise BenchError(f"celery ran {int(r.get(counter) or 0)} of {tasks} tasks in time")
            time.sleep(0.005)
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        r.delete(counter)
        r.delete(queue)
        r.close()
    import celery

    results["celery_tasks_per_s"] = round(tasks / wall, 1)
    results["celery"] = {
        "version": celery.__version__, "tasks": tasks, "workers": processes, "pool": "solo", "wall_s": round(wall, 3),
        "send_s": round(sent, 3),
        "definition": "first apply_async (one producer, default queue) -> the workers' Redis INCR counter reaches N (each no-op task does one "
                      "INCR so the client sees completion; ignore_result, no result backend, no durable state)",
    }
