"""A worker cut off from the network (issue 7, item 3).

The control plane runs on this host, bound to the host end of a veth link; the victim worker
runs in a network namespace behind that link (``tests/netns.py``). Once the victim holds every
``nap`` task run, the link is taken down (a pulled cable: the victim keeps running, nothing it
sends arrives). A rescuer worker on this host starts. The leases expire, the reaper re-queues the
task runs, the rescuer runs attempt 2. The link comes back once the victim has finished its naps
and is trying to report: each late result is refused (NOT_FOUND to its report, or to its
heartbeat while it was still sending the task's logs; the victim logs "result dropped" or
"dropping its result"), and each task run has exactly one SUCCESS attempt, the rescuer's."""

from __future__ import annotations

import time
from typing import Any

from tests.chaos.stack import (
    ChaosError,
    ChaosSkip,
    duplicate_completions,
    stack,
    start_worker,
    stop_processes,
    wait_all_terminal,
    wait_for,
    wait_registered,
)
from tests.netns import refusal, veth_host
from worker_sdk.client import KestrelClient

NAMESPACE = "tests.chaos"
NAP_SECONDS = 8.0


def _flow(flow_id: str) -> str:
    return f"""\
id: {flow_id}
namespace: {NAMESPACE}
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT{NAP_SECONDS:g}S
"""


def network_partition(sizes) -> dict[str, Any]:
    """Cut ``sizes.partition_in_flight`` running task runs' worker off the network; see the
    module docstring for what must happen."""
    from tests.chaos.scenarios import LEASE_SECONDS, SETTINGS  # noqa: PLC0415 - avoids an import cycle

    why = refusal()
    if why is not None:
        raise ChaosSkip(f"network partition needs network namespaces with veth: {why}")
    m = sizes.partition_in_flight
    flow_id = "partition"
    with veth_host("kestrel-cut") as far, stack("partition", SETTINGS, host=far.near_ip) as (cp, conn, workdir):
        victim = start_worker(cp.address, m, workdir, "victim", prefix=far.prefix, args=["--label", "role=victim"])
        workers = [victim]
        try:
            wait_registered(conn, 1)
            victim_id = conn.execute("SELECT id FROM workers WHERE state = 'ACTIVE'").fetchone()[0]
            with KestrelClient(cp.address, timeout=60) as client:
                client.deploy_flow(_flow(flow_id))
                for _ in range(m):
                    client.start_execution(NAMESPACE, flow_id)
            running = "SELECT count(*) FROM task_runs WHERE state = 'RUNNING' AND worker_id = %s AND attempt = 1"
            wait_for(lambda: conn.execute(running, (victim_id,)).fetchone()[0] >= m, sizes.timeout,
                     f"{m} naps running on the victim")
            claimed_at = time.time()
            far.cut()
            cut_at = time.time()
            workers.append(start_worker(cp.address, m, workdir, "rescuer", args=["--label", "role=rescuer"]))
            rescued = ("SELECT count(*), max(extract(epoch FROM a.started_at)) FROM task_run_attempts a "
                       "WHERE a.attempt = 2 AND a.worker_id <> %s")
            wait_for(lambda: conn.execute(rescued, (victim_id,)).fetchone()[0] >= m, sizes.timeout,
                     f"{m} naps re-dispatched to the rescuer")
            last_redispatch = float(conn.execute(rescued, (victim_id,)).fetchone()[1])
            # The victim's naps end NAP_SECONDS after they started; it then retries its reports
            # (for 30 s past its lease) against a link that drops everything. Reconnect then.
            time.sleep(max(0.0, claimed_at + NAP_SECONDS + 1.0 - time.time()))
            far.reconnect()
            reconnected_at = time.time()
            states = wait_all_terminal(conn, flow_id, m, sizes.timeout)
            # Refused at the report (NOT_FOUND from Complete) or, when the victim was still
            # flushing the task's logs at reconnection, at its next heartbeat (NOT_FOUND too).
            log_lines = {"at_report": "lost before its result was reported; result dropped",
                         "at_heartbeat": "lost; stopping it and dropping its result"}

            def refusals() -> dict[str, int]:
                text = (workdir / "victim.log").read_text(errors="replace")
                return {k: text.count(line) for k, line in log_lines.items()}

            wait_for(lambda: sum(refusals().values()) >= m, sizes.timeout / 4,
                     f"the victim's {m} late results to be refused")
            refused = refusals()
            rows = conn.execute(
                """SELECT tr.id, a.attempt, a.state, a.reason, a.worker_id = %s FROM task_runs tr
                     JOIN executions e ON e.id = tr.execution_id JOIN task_run_attempts a ON a.task_run_id = tr.id
                    WHERE e.flow_id = %s ORDER BY tr.id, a.attempt""", (victim_id, flow_id)).fetchall()
            by_run: dict[str, list[tuple]] = {}
            for row in rows:
                by_run.setdefault(row[0], []).append(row[1:])
            problems = [f"{tr}: attempts {a}" for tr, a in by_run.items()
                        if a != [(1, "FAILED", "LEASE_EXPIRED", True), (2, "SUCCESS", None, False)]]
            dups = duplicate_completions(conn, flow_id)
            if states != {"SUCCESS": m}:
                problems.append(f"final states {states}, expected {m} SUCCESS")
            if dups:
                problems.append(f"duplicate completions {dups}")
            if problems:
                raise ChaosError(f"{flow_id}: " + "; ".join(problems[:20]))
            return {
                "in_flight_on_cut_off_worker": m, "lease_s": LEASE_SECONDS,
                "redispatch_after_cut_s": round(last_redispatch - cut_at, 1),
                "cut_off_s": round(reconnected_at - cut_at, 1),
                "late_results_refused": refused, "states": states,
                "attempts_per_task_run": {"1 LEASE_EXPIRED (cut-off worker) + 1 SUCCESS (rescuer)": len(by_run)},
                "duplicate_completions": len(dups),
            }
        finally:
            far.reconnect()
            stop_processes(workers)
