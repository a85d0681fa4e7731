"""The chaos scenarios. Each takes its sizes, runs against fresh processes, raises
:class:`~tests.chaos.stack.ChaosError` (an AssertionError) when a guarantee is broken, and
returns its figures (a dict, printed by the callers)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.chaos.fault_points import fault_points
from tests.chaos.partition import network_partition
from tests.chaos.stack import (
    REDIS_URL,
    ChaosError,
    attempts_histogram,
    delete_prefix_keys,
    duplicate_completions,
    execution_states,
    stack,
    start_worker,
    stop_processes,
    task_run_counts,
    wait_all_terminal,
    wait_for,
    wait_registered,
)
from worker_sdk.client import KestrelClient
from worker_sdk.errors import UnavailableError

NAMESPACE = "tests.chaos"
# Short leases and heartbeats so lost attempts are found in seconds.
LEASE_SECONDS = 4.0
HEARTBEAT_SECONDS = 1.0
SETTINGS = {
    "KESTREL_LEASE_SECONDS": str(LEASE_SECONDS),
    "KESTREL_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
    "KESTREL_REAPER_INTERVAL_SECONDS": "0.3",
    "KESTREL_WORKER_DEAD_AFTER_SECONDS": "10",
    "KESTREL_POLL_WAIT_SECONDS": "5",
}


def sleep_flow(flow_id: str, seconds: float) -> str:
    """Two tasks run by workers: ``nap`` sleeps ``seconds`` (Kestra's ``flow.Sleep``, built into
    every worker, so the flow deploys before any worker connects), then ``ret`` returns a value."""
    return f"""\
id: {flow_id}
namespace: {NAMESPACE}
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT{seconds:g}S
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "after the nap of {{{{ taskrun.startDate }}}}"
"""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (CI or full)."""

    cp_kill_executions: int
    cp_kill_workers: int
    cp_kill_concurrency: int
    worker_kill_in_flight: int
    worker_kill_killed: int
    outage_executions: int
    outage_rounds: int
    fault_point_executions: int
    fault_points: tuple[str, ...] | None  # None = every point of controlplane/faults.py
    partition_in_flight: int
    timeout: float


CI = Sizes(cp_kill_executions=30, cp_kill_workers=2, cp_kill_concurrency=8, worker_kill_in_flight=10,
           worker_kill_killed=2, outage_executions=20, outage_rounds=3, fault_point_executions=3, partition_in_flight=2,
           fault_points=("result.committed",),  # each point restarts the stack (~1 min): the full run takes all
           timeout=300.0)
FULL = Sizes(cp_kill_executions=500, cp_kill_workers=4, cp_kill_concurrency=25, worker_kill_in_flight=50,
             worker_kill_killed=5, outage_executions=200, outage_rounds=5, fault_point_executions=20, partition_in_flight=10, fault_points=None,
             timeout=1800.0)


def _start_many(client: KestrelClient, flow_id: str, n: int) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return [e.id for e in pool.map(lambda _: client.start_execution(NAMESPACE, flow_id), range(n))]


def _check_no_loss_no_duplicate(conn, flow_id: str, n: int, states: dict[str, int], tasks: int) -> dict[str, Any]:
    """The common end-of-scenario checks; returns their figures."""
    total = sum(states.values())
    unfinished = {s: c for s, c in states.items() if s not in ("SUCCESS", "WARNING", "FAILED", "KILLED")}
    dups = duplicate_completions(conn, flow_id)
    shapes = task_run_counts(conn, flow_id)
    figures = {"executions": total, "states": states, "unfinished": sum(unfinished.values()),
               "duplicate_completions": len(dups), "task_runs_per_execution": shapes}
    if total != n:
        raise ChaosError(f"{flow_id}: {n} executions started, {total} recorded")
    if unfinished:
        raise ChaosError(f"{flow_id}: executions never finished (lost): {unfinished}")
    if dups:
        raise ChaosError(f"{flow_id}: task runs with a SUCCESS state but not exactly one SUCCESS attempt "
                         f"(task run, SUCCESS attempts): {dups[:20]}")
    if set(shapes) != {tasks}:
        raise ChaosError(f"{flow_id}: executions by task-run count {shapes}, expected all {tasks}")
    return figures


def control_plane_sigkill(sizes: Sizes) -> dict[str, Any]:
    """SIGKILL the control plane twice while ``cp_kill_executions`` executions run, and start it
    again: once down shorter than a lease (workers hold their results and report them late),
    once down longer than a lease (the reaper re-dispatches what the workers held; their late
    reports are refused by the fencing check). Every execution finishes SUCCESS, none is lost,
    no completion is recorded twice."""
    n = sizes.cp_kill_executions
    flow_id = "cp-kill"
    running_nap = "SELECT count(*) FROM task_runs WHERE task_id = 'nap' AND state = 'RUNNING' AND worker_id IS NOT NULL"
    nap_done = "SELECT count(*) FROM task_runs WHERE task_id = 'nap' AND state = 'SUCCESS'"
    with stack("cpkill", SETTINGS) as (cp, conn, workdir):
        # Every execution is started before the workers come, so all n are running at the kill.
        with KestrelClient(cp.address, timeout=60) as client:
            client.deploy_flow(sleep_flow(flow_id, 3.0))
            _start_many(client, flow_id, n)
        workers = [start_worker(cp.address, sizes.cp_kill_concurrency, workdir, f"worker-{i}")
                   for i in range(sizes.cp_kill_workers)]
        try:
            wait_registered(conn, len(workers))
            slots = sizes.cp_kill_workers * sizes.cp_kill_concurrency
            kills: list[dict[str, Any]] = []
            for down in (LEASE_SECONDS / 2, LEASE_SECONDS + 1.5):
                # Kill 1: once half the worker slots hold a nap. Kill 2: once the restarted control
                # plane has recorded more naps and holds new ones.
                want_running = max(1, min(n, slots) // 2) if not kills else 1
                want_done = kills[-1]["nap_succeeded"] + 1 if kills else 0

                def ready(want_running=want_running, want_done=want_done) -> bool:
                    return (conn.execute(running_nap).fetchone()[0] >= want_running
                            and conn.execute(nap_done).fetchone()[0] >= want_done)

                try:
                    wait_for(ready, sizes.timeout / 4, "work in flight on the workers")
                except ChaosError:
                    pass  # the run ended before this kill: the figures show 0 in flight
                kills.append({"down_s": down, "executions": execution_states(conn, flow_id),
                              "nap_running_on_workers": conn.execute(running_nap).fetchone()[0],
                              "nap_succeeded": conn.execute(nap_done).fetchone()[0]})
                cp.sigkill()
                time.sleep(down)
                cp.start()
            states = wait_all_terminal(conn, flow_id, n, sizes.timeout)
            figures = _check_no_loss_no_duplicate(conn, flow_id, n, states, tasks=2)
            if states.get("SUCCESS", 0) != n:
                raise ChaosError(f"{flow_id}: not every execution succeeded: {states}")
            figures.update(kills=kills, nap_attempts=attempts_histogram(conn, flow_id, "nap"),
                           control_plane_starts=cp.starts)
            return figures
        finally:
            stop_processes(workers)


def worker_sigkill(sizes: Sizes) -> dict[str, Any]:
    """SIGKILL a worker holding ``worker_kill_in_flight`` task runs, kill
    ``worker_kill_killed`` of their executions meanwhile, start a new worker: each other task run
    is re-dispatched exactly once, after its lease expired; the killed executions' task runs are
    never re-dispatched; every execution finishes."""
    m, k = sizes.worker_kill_in_flight, sizes.worker_kill_killed
    flow_id = "worker-kill"
    with stack("wkill", SETTINGS) as (cp, conn, workdir):
        victim = start_worker(cp.address, m, workdir, "victim")
        workers = [victim]
        try:
            wait_registered(conn, 1)
            with KestrelClient(cp.address, timeout=60) as client:
                client.deploy_flow(sleep_flow(flow_id, 5.0))
                ids = _start_many(client, flow_id, m)
                wait_for(lambda: conn.execute(
                    "SELECT count(*) FROM task_runs WHERE task_id = 'nap' AND state = 'RUNNING' AND attempt = 1"
                ).fetchone()[0] >= m, sizes.timeout, f"{m} task runs in flight on the victim worker")
                victim.kill()
                victim.wait(30)
                killed_at = time.time()
                killed_ids = ids[:k]
                for execution_id in killed_ids:
                    client.kill_execution(execution_id)
                workers.append(start_worker(cp.address, m, workdir, "rescuer"))
                states = wait_all_terminal(conn, flow_id, m, sizes.timeout)
            rows = conn.execute(
                """SELECT e.id, e.state, tr.state, a.attempt, a.state, a.reason, extract(epoch FROM a.started_at)
                     FROM executions e JOIN task_runs tr ON tr.execution_id = e.id AND tr.task_id = 'nap'
                     JOIN task_run_attempts a ON a.task_run_id = tr.id
                    WHERE e.flow_id = %s ORDER BY e.id, a.attempt""", (flow_id,)).fetchall()
            by_exec: dict[str, list[tuple]] = {}
            for row in rows:
                by_exec.setdefault(row[0], []).append(row)
            problems = []
            redispatched = killed_not_redispatched = 0
            earliest_expiry = killed_at - HEARTBEAT_SECONDS - 0.5 + LEASE_SECONDS  # last renewal was <= 1 hb ago
            for execution_id in ids:
                attempts = by_exec.get(execution_id, [])
                if execution_id in killed_ids:
                    if len(attempts) != 1 or attempts[0][1] != "KILLED":
                        problems.append(f"killed execution {execution_id}: state/attempts {attempts}")
                    else:
                        killed_not_redispatched += 1
                    continue
                if len(attempts) != 2:
                    problems.append(f"{execution_id}: {len(attempts)} attempts of 'nap' (expected 2): {attempts}")
                    continue
                first, second = attempts
                if first[5] != "LEASE_EXPIRED" or second[4] != "SUCCESS" or first[1] != "SUCCESS":
                    problems.append(f"{execution_id}: attempts {attempts}")
                elif second[6] < earliest_expiry:
                    problems.append(f"{execution_id}: re-dispatched {earliest_expiry - second[6]:.2f} s before the "
                                    f"lease of attempt 1 could have expired")
                else:
                    redispatched += 1
            final = execution_states(conn, flow_id)
            dups = duplicate_completions(conn, flow_id)
            figures = {"in_flight_at_kill": m, "killed_meanwhile": k,
                       "redispatched_once_after_expiry": redispatched,
                       "killed_not_redispatched": killed_not_redispatched, "states": final,
                       "duplicate_completions": len(dups)}
            if dups:
                problems.append(f"duplicate completions: {dups[:20]}")
            expected = {"SUCCESS": m - k, "KILLED": k} if k else {"SUCCESS": m}
            if final != expected or states != final:
                problems.append(f"final states {final}, expected {expected}")
            if problems:
                raise ChaosError(f"{flow_id}: " + "; ".join(problems[:20]))
            return figures
        finally:
            stop_processes(workers)


def postgres_and_redis_outage(sizes: Sizes) -> dict[str, Any]:
    """While executions run, terminate every Postgres connection of the control plane
    (``pg_terminate_backend``) and delete its Redis keys, ``outage_rounds`` times: the control
    plane keeps running (no crash, no restart) and every execution finishes SUCCESS once."""
    n = sizes.outage_executions
    flow_id = "outage"
    with stack("outage", SETTINGS) as (cp, conn, workdir):
        workers = [start_worker(cp.address, 8, workdir, f"worker-{i}") for i in range(2)]
        try:
            wait_registered(conn, len(workers))
            database = conn.info.dbname
            terminated = deleted = 0
            with KestrelClient(cp.address, timeout=60) as client:
                client.deploy_flow(sleep_flow(flow_id, 1.0))
                ids = _start_many(client, flow_id, n)
                for _ in range(sizes.outage_rounds):
                    time.sleep(1.0)
                    terminated += conn.execute(
                        """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                            WHERE datname = %s AND pid <> pg_backend_pid()""", (database,)).fetchone()[0]
                    deleted += delete_prefix_keys(REDIS_URL, cp.redis_prefix)
                states = wait_all_terminal(conn, flow_id, n, sizes.timeout)
                # The API still answers after the outages (a crash loop would not). UNAVAILABLE
                # ("retry later") is the documented answer while connections are being replaced:
                # a client retries it, as this one does for up to 30 s.
                _answers_within(client, ids[0], 30.0)
            figures = _check_no_loss_no_duplicate(conn, flow_id, n, states, tasks=2)
            if states.get("SUCCESS", 0) != n:
                raise ChaosError(f"{flow_id}: not every execution succeeded: {states}")
            if not cp.alive() or cp.starts != 1:
                raise ChaosError(f"{flow_id}: the control plane exited or restarted; log tail:\n{cp.log_tail()}")
            if terminated == 0:
                raise ChaosError(f"{flow_id}: no Postgres connection was terminated: the fault was not injected")
            figures.update(rounds=sizes.outage_rounds, pg_connections_terminated=terminated,
                           control_plane_log_tracebacks=cp.log_tail(10**8).count("Traceback"),
                           redis_keys_deleted=deleted, control_plane_alive=cp.alive(),
                           control_plane_starts=cp.starts)
            return figures
        finally:
            stop_processes(workers)


SCENARIOS = {
    "control_plane_sigkill": control_plane_sigkill,
    "worker_sigkill": worker_sigkill,
    "postgres_and_redis_outage": postgres_and_redis_outage,
    "network_partition": network_partition,
    "fault_points": fault_points,
}


def _answers_within(client: KestrelClient, execution_id: str, seconds: float) -> None:
    """GetExecution succeeds within ``seconds``, retrying UNAVAILABLE every 0.5 s.

    Raises:
        ChaosError: it still answered UNAVAILABLE after ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.get_execution(execution_id)
            return
        except UnavailableError as exc:
            if time.monotonic() > deadline:
                raise ChaosError(f"the API still answers UNAVAILABLE {seconds:g} s after the outages: {exc}") from exc
            time.sleep(0.5)
