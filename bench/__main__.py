"""``python -m bench [--quick | --smoke] [--json FILE] [--profile DIR] [--skip SECTION]…``

Runs every section, prints a table and (with ``--json``) writes the figures. Sections that
cannot run (Celery not installed, no scheduler in the tree) are reported as skipped with the
reason; a section that fails is reported with its error and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baselines, census, dashboard_bench, kestrel_bench
from bench.env import REPO, scratch_dir

SECTIONS = ("pg", "celery", "main", "census", "memory", "scheduler", "dashboard")

# (key, label, unit, target / reference shown beside the figure)
ROWS: list[tuple[str, str, str, str]] = [
    ("task_runs_per_s", "throughput: task runs/s (3-task flow, 2 workers)", "/s", ">= 500; ~Celery/2"),
    ("executions_per_s", "throughput: executions/s", "/s", ""),
    ("control_plane_cpu_ms_per_task_run", "control-plane CPU per task run (throughput run)", "ms", "2 cores: <= 4 for 500/s"),
    ("workers_cpu_ms_per_task_run", "workers' CPU per task run (both processes)", "ms", ""),
    ("pg_xacts_per_task_run", "Postgres transactions per task run", "", "(pg_stat_database)"),
    ("pg_rows_written_per_task_run", "Postgres rows inserted+updated+deleted per task run", "", ""),
    ("sql_statements_per_task_run", "SQL statements per task run (census, net)", "", ""),
    ("sql_commits_per_task_run", "transactions committed per task run (census, net)", "", ""),
    ("sql_round_trips_per_task_run", "round trips to Postgres per task run (census)", "", "a pipeline is one"),
    ("dispatch_p50_ms", "dispatch ready -> worker receipt p50 (idle)", "ms", "<= 2"),
    ("dispatch_p99_ms", "dispatch ready -> worker receipt p99 (idle)", "ms", "<= 10"),
    ("dispatch_loaded_p50_ms", "dispatch p50 under throughput load", "ms", "(queueing included)"),
    ("dispatch_loaded_p99_ms", "dispatch p99 under throughput load", "ms", ""),
    ("execution_latency_p50_ms", "single execution Start -> SUCCESS p50", "ms", "<= 15"),
    ("execution_latency_p99_ms", "single execution Start -> SUCCESS p99", "ms", ""),
    ("chain_overhead_ms_per_task", "chain overhead per task (N x 10 ms, N=40; smoke 10)", "ms", "<= 10 (Hatchet ~30, Kestra ~150)"),
    ("rss_growth_mb", "control-plane RSS growth, 0 -> max queued", "MiB", "<= 20 (0 -> 100k)"),
    ("cron_lateness_p50_ms", "cron lateness p50", "ms", ""),
    ("cron_lateness_p99_ms", "cron lateness p99", "ms", "<= 50"),
    ("cron_lateness_max_ms", "cron lateness max", "ms", ""),
    ("dashboard_list_p50_ms", "dashboard executions page call p50 (100k stored*)", "ms", "< 300 (*quick 20k, smoke 1k)"),
    ("dashboard_list_p99_ms", "dashboard executions page call p99", "ms", ""),
    ("pg_skip_locked_claims_per_s", "baseline: Postgres SKIP LOCKED claims/s (2 procs)", "/s", "machine limit"),
    ("celery_tasks_per_s", "baseline: Celery no-op tasks/s (2 workers, Redis)", "/s", ""),
    ("ratio_to_celery", "Kestrel task runs/s / Celery tasks/s", "x", ">= 0.5"),
    ("ratio_to_pg_claims", "Kestrel task runs/s / raw SKIP LOCKED claims/s", "x", ""),
]


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def print_table(results: dict[str, Any]) -> None:
    """Prints the figures as a fixed-width table, then the skip notes and errors."""
    print()
    print(f"Kestrel benchmark ({results['meta']['mode']} mode, {results['meta']['cpus']} CPUs, "
          f"load avg at start {results['meta']['loadavg_start']}, "
          f"control-plane event loop {results['meta'].get('event_loop', 'asyncio')})")
    print(f"{'metric':<52} {'value':>12} {'unit':<5} target / reference")
    print("-" * 100)
    for key, label, unit, ref in ROWS:
        print(f"{label:<52} {_fmt(results.get(key)):>12} {unit:<5} {ref}")
    rss = results.get("control_plane_rss_mb")
    if rss:
        print(f"{'control-plane RSS by queued task runs':<52} " + ", ".join(f"{k}: {v} MiB" for k, v in rss.items()))
    for key in ("celery_note", "scheduler_note"):
        if results.get(key):
            print(f"note: {results[key]}")
    for note in results.get("notes", []):
        print(f"note: {note}")
    for section, err in results.get("errors", {}).items():
        print(f"ERROR in {section}: {err.splitlines()[-1] if err else err}")
    census_ = results.get("census")
    if census_:
        print("SQL statements per task run by shape (census): " + ", ".join(
            [f"{k} {v}" for k, v in census_["per_task_run_net"].items() if not k.startswith("(")][:12]))
    prof = results.get("profile")
    if prof:
        for name, summary in prof.items():
            print(f"\nprofile of {name} during the throughput run (py-spy, % of samples), top self time:")
            for func, pct in summary.get("self", [])[:12]:
                print(f"  {pct:5.1f}%  {func}")
            print("  self time by package: " + ", ".join(f"{k} {v}%" for k, v in summary.get("by_package", [])[:8]))
            print("  inclusive time of Kestrel functions:")
            for func, pct in summary.get("project", [])[:15]:
                print(f"  {pct:5.1f}%  {func}")


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; returns the process exit code (1 when a section failed)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller counts (a few minutes)")
    mode.add_argument("--smoke", action="store_true", help="smallest counts: proves the harness runs (CI)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the control plane during the throughput run")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="skip a section (repeatable)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (path printed)")
    args = parser.parse_args(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = kestrel_bench.SIZES[mode_name]
    workdir = scratch_dir()
    results: dict[str, Any] = {
        "meta": {
            "mode": mode_name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "commit": _git_commit(), "sizes": sizes.__dict__,
            # The control plane's event loop (KESTREL_EVENT_LOOP is passed to its process).
            "event_loop": os.environ.get("KESTREL_EVENT_LOOP", "asyncio"),
        },
        "task_runs_per_s": None, "executions_per_s": None, "celery_tasks_per_s": None,
        "dispatch_p50_ms": None, "dispatch_p99_ms": None, "chain_overhead_ms_per_task": None,
        "execution_latency_p50_ms": None, "execution_latency_p99_ms": None, "sql_statements_per_task_run": None,
        "pg_skip_locked_claims_per_s": None, "control_plane_rss_mb": None, "rss_growth_mb": None,
        "cron_lateness_p50_ms": None, "cron_lateness_p99_ms": None, "cron_lateness_max_ms": None,
        "errors": {},
    }
    profile_dir = Path(args.profile) if args.profile else None
    steps = {
        "pg": lambda: baselines.run_pg_baseline(sizes.pg_rows, results),
        "celery": lambda: baselines.run_celery_baseline(sizes.celery_tasks, workdir, results),
        "main": lambda: kestrel_bench.run_main(sizes, workdir, results, profile_dir),
        "census": lambda: census.run_census(sizes.census_executions, workdir, results, sizes.census_idle_s),
        "memory": lambda: kestrel_bench.run_memory(sizes, workdir, results),
        "scheduler": lambda: kestrel_bench.run_scheduler(sizes, workdir, results),
        "dashboard": lambda: dashboard_bench.run_dashboard(mode_name, workdir, results),
    }
    t_all = time.perf_counter()
    for name in SECTIONS:
        if name in args.skip:
            continue
        t = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            steps[name]()
        except Exception:
            results["errors"][name] = traceback.format_exc()
        print(f"[bench] {name} done in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    if "celery" in args.skip:
        results["celery_note"] = "skipped: --skip celery"
    if "scheduler" in args.skip:
        results["scheduler_note"] = "skipped: --skip scheduler"
    kr, cr, pr = results.get("task_runs_per_s"), results.get("celery_tasks_per_s"), results.get("pg_skip_locked_claims_per_s")
    results["ratio_to_celery"] = round(kr / cr, 3) if kr and cr else None
    results["ratio_to_pg_claims"] = round(kr / pr, 3) if kr and pr else None
    if profile_dir is not None:
        from bench.profile import summarise

        folded = profile_dir / "controlplane.folded"
        if folded.exists():
            results["profile"] = {"controlplane": summarise(folded, top=25)}
        else:
            results.setdefault("notes", []).append("profile: py-spy produced nothing (installed? ptrace allowed?)")
    results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["wall_s"] = round(time.perf_counter() - t_all, 1)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.keep_logs or results["errors"]:
        print(f"\nlogs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
