"""CI smoke test of the benchmark harness: ``python -m bench --smoke`` runs end to end and writes
every figure. No timing assertions: speed is measured by hand with ``python -m bench``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

REQUIRED = (
    "task_runs_per_s", "executions_per_s", "dispatch_p50_ms", "dispatch_p99_ms", "chain_overhead_ms_per_task",
    "execution_latency_p50_ms", "execution_latency_p99_ms", "pg_skip_locked_claims_per_s",
    "control_plane_cpu_ms_per_task_run", "workers_cpu_ms_per_task_run", "pg_xacts_per_task_run",
    "sql_statements_per_task_run",
)


@pytest.mark.timeout(600)
def test_bench_smoke_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=540,
    )
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    results = json.loads(out.read_text())
    assert results["errors"] == {}
    assert results["meta"]["mode"] == "smoke"
    # The table is printed with the headline figures.
    assert "throughput: task runs/s" in proc.stdout and "chain overhead per task" in proc.stdout

    for key in REQUIRED:
        assert isinstance(results[key], int | float) and results[key] > 0, (key, results[key])
    assert isinstance(results["rss_growth_mb"], int | float)
    assert set(results["control_plane_rss_mb"]) == {"0", "100", "300"}
    assert all(v > 0 for v in results["control_plane_rss_mb"].values())

    # Every execution of the throughput run succeeded, with 3 task runs each.
    tp = results["throughput"]
    assert tp["succeeded"] == tp["executions"] and tp["task_runs"] == 3 * tp["executions"]
    assert results["execution_latency"]["not_success"] == 0
    # Dispatch latency came from real receipts of both worker processes' probe.
    assert results["dispatch"]["idle"]["n"] == 3 * results["execution_latency"]["n"]
    assert results["dispatch_p99_ms"] >= results["dispatch_p50_ms"]

    # The census counted the claim of every task run (one statement each, see
    # repository.claim_task_runs) and its completion.
    census = results["census"]
    assert census["task_runs"] == 3 * census["executions"]
    assert census["per_task_run_net"]["WITH picked+deleted+claimed+attempts"] >= 1
    assert census["per_task_run_net"]["WITH finished_attempt"] >= 1

    # The Celery key is always present: a figure when the bench extra is installed, else a skip note.
    assert "celery_tasks_per_s" in results
    if results["celery_tasks_per_s"] is None:
        assert "not installed" in results["celery_note"]
    else:
        assert results["celery_tasks_per_s"] > 0 and results["celery"]["tasks"] == 200

    # Scheduler: lateness figures, or a clear "not available" note.
    if results["cron_lateness_p50_ms"] is None:
        assert results["scheduler_note"].startswith(("not available", "skipped"))
    else:
        assert results["cron_lateness_max_ms"] >= results["cron_lateness_p50_ms"]
