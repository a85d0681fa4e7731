"""Kestrel's own measurements: throughput, dispatch latency, single-execution latency, chain
overhead (one control plane, 2 workers), control-plane RSS with queued task runs (no worker) and
scheduler cron lateness."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.env import (
    BenchError,
    ControlPlaneProcess,
    control_plane,
    fresh_database,
    percentile,
    pg_dsn,
    workers,
)
from bench.probe import read_receipts
from worker_sdk.client import KestrelClient

NAMESPACE = "bench"


def three_task_flow(flow_id: str) -> str:
    """A 3-task flow of Log/Return-class tasks (a log line, two rendered Return values)."""
    return f"""\
id: {flow_id}
namespace: {NAMESPACE}
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "bench {{{{ execution.id }}}}"
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ execution.id }}}}"
  - id: ret2
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ outputs.ret.value }}}}-done"
"""


def chain_flow(tasks: int, sleep_ms: int) -> str:
    """One flow of ``tasks`` sequential ``flow.Sleep`` tasks of ``sleep_ms`` each."""
    body = "".join(
        f"  - id: s{i:02d}\n    type: io.kestra.plugin.core.flow.Sleep\n    duration: PT{sleep_ms / 1000:.3f}S\n"
        for i in range(tasks)
    )
    return f"id: chain\nnamespace: {NAMESPACE}\ntasks:\n{body}"


def parallel_flow(width: int) -> str:
    """A flow whose one ``Parallel`` task queues ``width`` Log task runs at once."""
    body = "".join(
        f"      - id: l{i:02d}\n        type: io.kestra.plugin.core.log.Log\n        message: queued {i}\n"
        for i in range(width)
    )
    return (f"id: fan\nnamespace: {NAMESPACE}\ntasks:\n  - id: par\n    type: io.kestra.plugin.core.flow.Parallel\n"
            f"    tasks:\n{body}")


def schedule_flow(index: int) -> str:
    """A flow fired every second by a Schedule trigger (``withSeconds``)."""
    return f"""\
id: cron{index:04d}
namespace: {NAMESPACE}
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: tick
triggers:
  - id: every-second
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "* * * * * *"
    withSeconds: true
"""


@dataclass
class Sizes:
    """Counts of one mode (``--smoke``, ``--quick`` or full)."""

    throughput_executions: int
    latency_executions: int
    chain_runs: int
    rss_points: tuple[int, ...]
    pg_rows: int
    celery_tasks: int
    cron_flows: int
    cron_seconds: float
    chain_tasks: int = 40
    warmups: int = 3
    cron_grace: float = 30.0
    census_executions: int = 30
    census_idle_s: float = 5.0
    settle_s: float = 2.0
    worker_concurrency: int = 4
    submit_threads: int = 8


SIZES = {
    # smoke proves the harness runs (CI): a 10-task chain, tiny counts.
    "smoke": Sizes(10, 5, 1, (0, 100, 300), 1000, 200, 2, 1.0, chain_tasks=10, warmups=1, cron_grace=5.0,
                   census_executions=5, census_idle_s=2.0, settle_s=0.5),
    "quick": Sizes(300, 30, 1, (0, 2_000, 10_000), 20_000, 3_000, 50, 6.0),
    "full": Sizes(2_000, 200, 3, (0, 10_000, 100_000), 100_000, 20_000, 200, 15.0, census_executions=100),
}


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000.0, 3)


_DB_STATS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_returned",
             "tup_fetched")


def _db_stats(conn: psycopg.Connection) -> dict[str, int]:
    """This database's cumulative counters from ``pg_stat_database`` (fresh snapshot)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        f"SELECT {', '.join(_DB_STATS)} FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    return dict(zip(_DB_STATS, (int(v) for v in row), strict=True))


def _wait_all_terminal(conn: psycopg.Connection, flow_id: str, count: int, timeout: float) -> int:
    """Waits until ``count`` executions of ``flow_id`` ended; returns how many queries it made."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        polls += 1
        done = conn.execute(
            "SELECT count(*) FROM executions WHERE flow_id = %s AND ended_at IS NOT NULL", (flow_id,)
        ).fetchone()[0]
        if done >= count:
            return polls
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {count} executions of {flow_id} ended within {timeout:g} s")
        time.sleep(0.05)


def _dispatch_stats(conn: psycopg.Connection, flow_id: str, receipts: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Dispatch latency of the task runs of ``flow_id``: ready_at → worker receipt (probe), split
    at the claim (first attempt's ``started_at``, the control plane's clock in the claim)."""
    rows = conn.execute(
        """SELECT tr.id, extract(epoch FROM a.started_at)
             FROM task_runs tr JOIN executions e ON e.id = tr.execution_id
             JOIN task_run_attempts a ON a.task_run_id = tr.id AND a.attempt = 1
            WHERE e.flow_id = %s""",
        (flow_id,),
    ).fetchall()
    total, to_claim, to_worker = [], [], []
    for task_run_id, claimed in rows:
        got = receipts.get(task_run_id)
        if got is None or got[0] != got[0]:  # no receipt, or NaN ready_at
            continue
        ready, received = got
        total.append(received - ready)
        if claimed is not None:
            to_claim.append(float(claimed) - ready)
            to_worker.append(received - float(claimed))
    return {
        "n": len(total),
        "p50_ms": _ms(percentile(total, 50)),
        "p99_ms": _ms(percentile(total, 99)),
        "max_ms": _ms(max(total) if total else None),
        "ready_to_claim_p50_ms": _ms(percentile(to_claim, 50)),
        "claim_to_receipt_p50_ms": _ms(percentile(to_worker, 50)),
    }


def run_main(sizes: Sizes, workdir: Path, results: dict[str, Any], profile_dir: Path | None) -> None:
    """Throughput, dispatch latency, single-execution latency and chain overhead on one control
    plane with 2 local worker processes. Fills ``results``."""
    receipts_path = workdir / "receipts.txt"
    with fresh_database("main") as url, control_plane(url, workdir) as cp, \
            psycopg.connect(pg_dsn(url), autocommit=True) as conn, KestrelClient(cp.address, timeout=60) as client:
        client.deploy_flow(three_task_flow("three-tasks"))
        client.deploy_flow(three_task_flow("three-tasks-latency"))
        client.deploy_flow(three_task_flow("three-tasks-warmup"))
        client.deploy_flow(chain_flow(sizes.chain_tasks, 10))
        with workers(cp.address, url, 2, sizes.worker_concurrency, receipts_path, workdir) as procs:
            # Warm-up: first executions pay imports and connection set-up.
            for _ in range(sizes.warmups):
                client.wait_execution(client.start_execution(NAMESPACE, "three-tasks-warmup").id, timeout=60)

            _throughput(sizes, client, conn, cp, [p.pid for p in procs], results, profile_dir)
            _latency(sizes, client, results)
            _chain(sizes, client, results)

        receipts = read_receipts(str(receipts_path))
        idle = _dispatch_stats(conn, "three-tasks-latency", receipts)
        loaded = _dispatch_stats(conn, "three-tasks", receipts)
        results["dispatch_p50_ms"] = idle["p50_ms"]
        results["dispatch_p99_ms"] = idle["p99_ms"]
        results["dispatch"] = {
            "definition": "TaskAssignment.ready_at (control plane, set when the executor makes the task run ready, "
                          "before commit) -> worker receipt (bench.probe, when the PollTaskRuns response is decoded); "
                          "measured on the sequential single-execution runs (idle workers)",
            "idle": idle,
            "under_throughput_load": loaded,
        }
        results["dispatch_loaded_p50_ms"] = loaded["p50_ms"]
        results["dispatch_loaded_p99_ms"] = loaded["p99_ms"]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def _throughput(sizes: Sizes, client: KestrelClient, conn: psycopg.Connection, cp: ControlPlaneProcess,
                worker_pids: list[int], results: dict[str, Any], profile_dir: Path | None) -> None:
    n = sizes.throughput_executions
    spy = _start_profiler(cp.pid, profile_dir, "controlplane") if profile_dir else None
    cpu_cp, cpu_workers = _cpu_seconds([cp.pid]), _cpu_seconds(worker_pids)
    time.sleep(1.5)  # backends flush their statistics at most once a second
    stats0 = _db_stats(conn)
    t0 = time.time()
    try:
        with ThreadPoolExecutor(sizes.submit_threads) as pool:
            list(pool.map(lambda _: client.start_execution(NAMESPACE, "three-tasks"), range(n)))
        submitted = time.time()
        # Generous: a measurement on a loaded machine is slow, not wrong.
        polls = _wait_all_terminal(conn, "three-tasks", n, timeout=max(600.0, n * 2.0))
        cpu_cp, cpu_workers = _cpu_seconds([cp.pid]) - cpu_cp, _cpu_seconds(worker_pids) - cpu_workers
    finally:
        if spy is not None:
            _stop_profiler(spy)
    time.sleep(1.5)
    stats1 = _db_stats(conn)
    last_end, task_runs, ok = conn.execute(
        """SELECT extract(epoch FROM max(e.ended_at)),
                  (SELECT count(*) FROM task_runs tr JOIN executions x ON x.id = tr.execution_id
                    WHERE x.flow_id = 'three-tasks'),
                  count(*) FILTER (WHERE e.state = 'SUCCESS')
             FROM executions e WHERE e.flow_id = 'three-tasks'"""
    ).fetchone()
    wall = float(last_end) - t0
    results["throughput"] = {
        "executions": n, "task_runs": task_runs, "succeeded": ok, "wall_s": round(wall, 3),
        "submit_s": round(submitted - t0, 3), "workers": 2, "worker_concurrency": sizes.worker_concurrency,
        "submit_threads": sizes.submit_threads,
        "control_plane_cpu_s": round(cpu_cp, 3), "workers_cpu_s": round(cpu_workers, 3),
        "definition": "first StartExecution sent -> last execution's ended_at; executions submitted concurrently "
                      "while the workers run",
    }
    results["executions_per_s"] = round(n / wall, 2)
    results["task_runs_per_s"] = round(task_runs / wall, 2)
    # Postgres work per task run (pg_stat_database of this database; the benchmark's own polling
    # queries, one transaction each, are subtracted; background loops of the control plane count).
    delta = {k: stats1[k] - stats0[k] for k in _DB_STATS}
    delta["xact_commit"] -= polls + 2
    results["pg_per_task_run"] = {k: round(v / task_runs, 2) for k, v in delta.items()}
    results["pg_xacts_per_task_run"] = results["pg_per_task_run"]["xact_commit"]
    results["pg_rows_written_per_task_run"] = round(
        (delta["tup_inserted"] + delta["tup_updated"] + delta["tup_deleted"]) / task_runs, 2)
    # CPU time per task run is less sensitive to other load on the machine than wall-clock rates.
    results["control_plane_cpu_ms_per_task_run"] = round(cpu_cp * 1000 / task_runs, 3)
    results["workers_cpu_ms_per_task_run"] = round(cpu_workers * 1000 / task_runs, 3)
    if ok != n:
        results.setdefault("notes", []).append(f"throughput: {n - ok} of {n} executions did not end in SUCCESS")


def _latency(sizes: Sizes, client: KestrelClient, results: dict[str, Any]) -> None:
    lat = []
    bad = 0
    for _ in range(sizes.latency_executions):
        t = time.perf_counter()
        ex = client.start_execution(NAMESPACE, "three-tasks-latency")
        done = client.wait_execution(ex.id, timeout=60)
        lat.append(time.perf_counter() - t)
        bad += done.state.current.name != "SUCCESS"
    results["execution_latency_p50_ms"] = _ms(percentile(lat, 50))
    results["execution_latency_p99_ms"] = _ms(percentile(lat, 99))
    results["execution_latency"] = {
        "n": len(lat), "not_success": bad, "flow": "3 tasks (Log, Return, Return)",
        "definition": "StartExecution sent -> terminal SUCCESS seen on WatchExecution by the client, one at a time",
    }


def _chain(sizes: Sizes, client: KestrelClient, results: dict[str, Any]) -> None:
    walls = []
    for _ in range(sizes.chain_runs):
        t = time.perf_counter()
        ex = client.start_execution(NAMESPACE, "chain")
        done = client.wait_execution(ex.id, timeout=300)
        walls.append(time.perf_counter() - t)
        if done.state.current.name != "SUCCESS":
            raise BenchError(f"chain execution {ex.id} ended {done.state.current.name}")
    wall = statistics.median(walls)
    n = sizes.chain_tasks
    results["chain_overhead_ms_per_task"] = round((wall - n * 0.010) * 1000.0 / n, 3)
    results["chain"] = {
        "runs": len(walls), "wall_s_median": round(wall, 3), "tasks": n, "sleep_ms": 10,
        "definition": f"(StartExecution -> SUCCESS seen by the client, minus {n * 10} ms of sleeps) / {n}",
    }


def _start_profiler(pid: int, profile_dir: Path, name: str) -> subprocess.Popen[bytes] | None:
    import shutil

    exe = shutil.which("py-spy")
    if exe is None:
        return None
    profile_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--nonblocking",
         "--output", str(profile_dir / f"{name}.folded")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    import signal

    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_memory(sizes: Sizes, workdir: Path, results: dict[str, Any]) -> None:
    """Control-plane RSS with 0, then more, queued task runs (no worker running): executions of a
    flow whose Parallel task queues 10 Log task runs, started through the API."""
    points: dict[str, float] = {}
    with fresh_database("mem") as url, control_plane(url, workdir) as cp, \
            psycopg.connect(pg_dsn(url), autocommit=True) as conn, KestrelClient(cp.address, timeout=60) as client:
        client.deploy_flow(parallel_flow(10))
        started = 0
        for target in sizes.rss_points:
            needed = (target - started * 10 + 9) // 10
            if needed > 0:
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda _: client.start_execution(NAMESPACE, "fan"), range(needed)))
                started += needed
            deadline = time.monotonic() + max(60.0, target / 50)
            while conn.execute("SELECT count(*) FROM task_queue").fetchone()[0] < target:
                if time.monotonic() > deadline:
                    raise BenchError(f"queue did not reach {target} task runs")
                time.sleep(0.2)
            time.sleep(sizes.settle_s)  # let background loops settle
            points[str(target)] = round(cp.rss_mb(), 1)
    results["control_plane_rss_mb"] = points
    values = list(points.values())
    results["rss_growth_mb"] = round(values[-1] - values[0], 1)


def run_scheduler(sizes: Sizes, workdir: Path, results: dict[str, Any]) -> None:
    """Lateness of Schedule fires: execution ``created_at`` minus the tick's ``scheduled_date``
    (``trigger_fires``), with ``cron_flows`` every-second schedules and no worker."""
    if importlib.util.find_spec("controlplane.scheduler") is None:
        results["scheduler_note"] = "not available: controlplane/scheduler is not in this tree"
        return
    with fresh_database("cron") as url, control_plane(url, workdir) as cp, \
            psycopg.connect(pg_dsn(url), autocommit=True) as conn, KestrelClient(cp.address, timeout=60) as client:
        for i in range(sizes.cron_flows):
            client.deploy_flow(schedule_flow(i))
        # Warm-up: wait until every schedule has fired once (triggers synced, leadership taken).
        deadline = time.monotonic() + 60
        try:
            while conn.execute("SELECT count(DISTINCT flow_id) FROM trigger_fires").fetchone()[0] < sizes.cron_flows:
                if time.monotonic() > deadline:
                    results["scheduler_note"] = "not available: not every schedule fired within 60 s of deploy"
                    return
                time.sleep(0.1)
        except psycopg.errors.UndefinedTable:
            results["scheduler_note"] = "not available: no trigger_fires table (scheduler migration missing)"
            return
        start = float(int(time.time()) + 2)  # whole seconds: ticks from here on
        end = start + sizes.cron_seconds
        expected = sizes.cron_flows * int(sizes.cron_seconds)
        query = """SELECT extract(epoch FROM e.created_at - f.scheduled_date)
                     FROM trigger_fires f JOIN executions e ON e.id = f.execution_id
                    WHERE f.scheduled_date >= to_timestamp(%s) AND f.scheduled_date < to_timestamp(%s)"""
        time.sleep(max(0.0, end - time.time()))
        # Then wait for the window's ticks to have fired (a late scheduler fires them late).
        deadline = time.monotonic() + sizes.cron_grace
        while True:
            rows = conn.execute(query, (start, end)).fetchall()
            if len(rows) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    late = [float(r[0]) for r in rows]
    if not late:
        results["scheduler_note"] = "not available: the scheduler fired nothing in the window (is it enabled?)"
        return
    if len(late) < expected:
        results.setdefault("notes", []).append(
            f"scheduler: only {len(late)} of {expected} ticks fired within {sizes.cron_grace:g} s after their window")
    results["cron_lateness_p50_ms"] = _ms(percentile(late, 50))
    results["cron_lateness_p99_ms"] = _ms(percentile(late, 99))
    results["cron_lateness_max_ms"] = _ms(max(late))
    results["scheduler"] = {
        "schedules": sizes.cron_flows, "seconds": sizes.cron_seconds, "fires": len(late), "expected_fires": expected,
        "definition": "executions.created_at - trigger_fires.scheduled_date, every-second cron, no worker",
    }
