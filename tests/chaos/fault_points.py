"""Kill the control plane at each named fault point (``controlplane/faults.py``) in turn.

One stack (database, Redis prefix, two workers) for all rounds. Each round restarts the control
plane with ``KESTREL_FAULT_POINTS=<point>:crash``, starts executions of a three-task chain (each
with a ``request_id``, as a careful client does), waits for the process to crash at the point,
restarts it clean, re-sends the start requests that got no answer (same ``request_id``) and
checks in Postgres: every execution SUCCESS (nothing stuck), one execution per request, no task
run left without a queue row or a worker (orphan), no duplicate task run, exactly one SUCCESS
attempt per task run. Prints one table row per point."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from controlplane.faults import FAULT_EXIT_CODE, POINTS
from tests.chaos.stack import (
    ChaosError,
    duplicate_completions,
    execution_states,
    stack,
    start_worker,
    stop_processes,
    task_run_counts,
    wait_all_terminal,
    wait_registered,
)
from worker_sdk.client import KestrelClient
from worker_sdk.errors import RPCError

NAMESPACE = "tests.chaos"
TASKS = ("one", "two", "three")


def chain_flow(flow_id: str) -> str:
    """Three Return tasks in a row: each result goes through result -> advance -> enqueue."""
    tasks = "\n".join(f"""  - id: {t}
    type: io.kestra.plugin.core.debug.Return
    format: "{t} {{{{ execution.id }}}}\"""" for t in TASKS)
    return f"id: {flow_id}\nnamespace: {NAMESPACE}\ntasks:\n{tasks}\n"


ORPHANS = """
SELECT tr.id, tr.state, tr.task_id FROM task_runs tr JOIN executions e ON e.id = tr.execution_id
 WHERE e.flow_id = %s
   AND ((tr.state = 'CREATED' AND tr.next_attempt_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM task_queue q WHERE q.task_run_id = tr.id))
     OR (tr.state = 'RUNNING' AND tr.worker_id IS NULL
         AND NOT EXISTS (SELECT 1 FROM task_queue q WHERE q.task_run_id = tr.id)))"""
"""Task runs nobody will ever run: CREATED with no queue row and no retry timer, or RUNNING on
no worker and not queued (runnable task runs only: the chain has no flowables)."""


def _start(client: KestrelClient, flow_id: str, request_id: str) -> str | None:
    try:
        return client.start_execution(NAMESPACE, flow_id, request_id=request_id).id
    except RPCError:
        return None  # no answer (the control plane died): re-sent after the restart


def _round(cp, conn, flow_id: str, point: str, executions: int, timeout: float) -> dict[str, Any]:
    cp.settings["KESTREL_FAULT_POINTS"] = f"{point}:crash"
    cp.sigkill()  # everything is settled: the quickest way to restart it with the point armed
    cp.start()
    request_ids = [f"{flow_id}-{i}" for i in range(executions)]
    with KestrelClient(cp.address, timeout=20) as client, ThreadPoolExecutor(4) as pool:
        answered = list(pool.map(lambda r: _start(client, flow_id, r), request_ids))
    assert cp.proc is not None
    try:
        code = cp.proc.wait(timeout)
    except Exception:
        raise ChaosError(f"fault point {point}: not reached within {timeout:g} s (the workload never passed it); "
                         f"log tail:\n{cp.log_tail()}") from None
    if code != FAULT_EXIT_CODE or f"FAULT POINT {point}" not in cp.log_tail(10**6):
        raise ChaosError(f"fault point {point}: the control plane exited with {code}, not the fault point's "
                         f"{FAULT_EXIT_CODE}; log tail:\n{cp.log_tail()}")
    at_crash = execution_states(conn, flow_id)
    cp.settings["KESTREL_FAULT_POINTS"] = ""
    restarted = time.monotonic()
    cp.start()
    unanswered = [r for r, a in zip(request_ids, answered, strict=True) if a is None]
    with KestrelClient(cp.address, timeout=60) as client:
        for request_id in unanswered:
            client.start_execution(NAMESPACE, flow_id, request_id=request_id)
    orphans_after_restart = conn.execute(ORPHANS, (flow_id,)).fetchall()
    states = wait_all_terminal(conn, flow_id, executions, timeout)
    recovered_s = time.monotonic() - restarted
    final_orphans = conn.execute(ORPHANS, (flow_id,)).fetchall()
    dups = duplicate_completions(conn, flow_id)
    shapes = task_run_counts(conn, flow_id)
    unfinished_task_runs = conn.execute(
        """SELECT count(*) FROM task_runs tr JOIN executions e ON e.id = tr.execution_id
            WHERE e.flow_id = %s AND tr.state NOT IN ('SUCCESS', 'WARNING', 'FAILED', 'KILLED', 'SKIPPED')""",
        (flow_id,)).fetchone()[0]
    redispatched = conn.execute(
        """SELECT count(*) FROM task_run_attempts a JOIN task_runs tr ON tr.id = a.task_run_id
             JOIN executions e ON e.id = tr.execution_id WHERE e.flow_id = %s AND a.attempt > 1""",
        (flow_id,)).fetchone()[0]
    row = {"point": point, "crashed": True, "executions_at_crash": sum(at_crash.values()),
           "starts_resent": len(unanswered), "executions": sum(states.values()), "states": states,
           "recovered_s": round(recovered_s, 1), "redispatched_attempts": redispatched,
           "orphans_after_restart": len(orphans_after_restart), "orphans_at_end": len(final_orphans),
           "unfinished_task_runs": unfinished_task_runs, "duplicate_completions": len(dups),
           "task_runs_per_execution": shapes}
    problems = []
    if states != {"SUCCESS": executions}:
        problems.append(f"final states {states}, expected {executions} SUCCESS (one per request_id)")
    if final_orphans or unfinished_task_runs:
        problems.append(f"{unfinished_task_runs} unfinished task runs, orphans {final_orphans[:10]}")
    if dups:
        problems.append(f"duplicate completions {dups[:10]}")
    if set(shapes) != {len(TASKS)}:
        problems.append(f"executions by task-run count {shapes}, expected all {len(TASKS)}")
    row["outcome"] = "OK" if not problems else "BROKEN: " + "; ".join(problems)
    return row


KILL_CHILD = """\
id: fp-kill-child
namespace: tests.chaos
tasks:
  - id: wait_forever
    type: io.kestra.plugin.core.flow.Pause
"""
KILL_PARENT = """\
id: fp-kill-parent
namespace: tests.chaos
tasks:
  - id: child
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.chaos
    flowId: fp-kill-child
    wait: true
"""


def _kill_round(cp, conn, executions: int, timeout: float) -> dict[str, Any]:
    """``kill.committed``: parents whose Subflow child waits forever (a Pause) are killed; the
    control plane crashes once the first parent's kill is committed, before its child is
    killed. After the restart every child must end KILLED too (a kill is durable), with no
    help from the client (which only gets FAILED_PRECONDITION if it asks again)."""
    point = "kill.committed"
    with KestrelClient(cp.address, timeout=60) as client:
        client.deploy_flow(KILL_CHILD)
        client.deploy_flow(KILL_PARENT)
    cp.settings["KESTREL_FAULT_POINTS"] = f"{point}:crash"
    cp.sigkill()
    cp.start()
    with KestrelClient(cp.address, timeout=20) as client:
        parents = [client.start_execution(NAMESPACE, "fp-kill-parent").id for _ in range(executions)]
        paused = "SELECT count(*) FROM executions WHERE flow_id = 'fp-kill-child' AND state = 'PAUSED'"
        deadline = time.monotonic() + timeout
        while conn.execute(paused).fetchone()[0] < executions and time.monotonic() < deadline:
            time.sleep(0.2)
        for parent in parents:
            try:
                client.kill_execution(parent)
            except RPCError:
                break  # the control plane crashed at the point
    assert cp.proc is not None
    try:
        code = cp.proc.wait(timeout)
    except Exception:
        raise ChaosError(f"fault point {point}: not reached within {timeout:g} s; log tail:\n{cp.log_tail()}") from None
    if code != FAULT_EXIT_CODE:
        raise ChaosError(f"fault point {point}: exit code {code}; log tail:\n{cp.log_tail()}")
    cp.settings["KESTREL_FAULT_POINTS"] = ""
    restarted = time.monotonic()
    cp.start()
    with KestrelClient(cp.address, timeout=60) as client:
        for parent in parents:
            try:
                client.kill_execution(parent)  # the ones not killed before the crash
            except RPCError:
                pass  # FAILED_PRECONDITION: already KILLED
    parent_states = wait_all_terminal(conn, "fp-kill-parent", executions, timeout)
    child_states = wait_all_terminal(conn, "fp-kill-child", executions, timeout)
    recovered_s = time.monotonic() - restarted
    problems = []
    if parent_states != {"KILLED": executions}:
        problems.append(f"parents {parent_states}, expected {executions} KILLED")
    if child_states != {"KILLED": executions}:
        problems.append(f"subflow executions {child_states}, expected {executions} KILLED (a parent's kill was lost)")
    return {"point": point, "crashed": True, "executions_at_crash": executions, "starts_resent": 0,
            "executions": sum(parent_states.values()), "states": {"parents": parent_states, "children": child_states},
            "recovered_s": round(recovered_s, 1), "redispatched_attempts": 0, "orphans_after_restart": 0,
            "orphans_at_end": 0, "unfinished_task_runs": 0, "duplicate_completions": 0,
            "outcome": "OK" if not problems else "BROKEN: " + "; ".join(problems)}


def fault_points(sizes) -> dict[str, Any]:
    """Crash the control plane at every fault point in turn (``sizes.fault_point_executions``
    executions per point; CI: ``sizes.fault_points``, one per path) and check that each crash
    left nothing stuck, orphaned or doubled."""
    n = sizes.fault_point_executions
    from tests.chaos.scenarios import SETTINGS  # noqa: PLC0415 - shared timings, avoids an import cycle

    rows: list[dict[str, Any]] = []
    with stack("faults", SETTINGS) as (cp, conn, workdir):
        workers = [start_worker(cp.address, 4, workdir, f"worker-{i}") for i in range(2)]
        try:
            wait_registered(conn, len(workers))
            points = sizes.fault_points or tuple(POINTS)
            flows = {point: f"fp-{i}" for i, point in enumerate(points) if point != "kill.committed"}
            with KestrelClient(cp.address, timeout=60) as client:
                for flow_id in flows.values():
                    client.deploy_flow(chain_flow(flow_id))
            for point in points:
                if point == "kill.committed":
                    rows.append(_kill_round(cp, conn, min(n, 5), sizes.timeout / 4))
                else:
                    rows.append(_round(cp, conn, flows[point], point, n, sizes.timeout / 4))
        finally:
            stop_processes(workers)
    print(_table(rows), flush=True)
    broken = [r for r in rows if r["outcome"] != "OK"]
    if broken:
        raise ChaosError("fault points broke a guarantee: " + "; ".join(f"{r['point']}: {r['outcome']}" for r in broken))
    return {"points": len(rows), "executions_per_point": n,
            "table": {r["point"]: {k: r[k] for k in ("outcome", "starts_resent", "redispatched_attempts",
                                                     "orphans_after_restart", "duplicate_completions",
                                                     "recovered_s")} for r in rows}}


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("point", "outcome", "execs", "resent", "redisp.", "orphans", "dups", "recovered s")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(" | ".join(str(v) for v in (
            r["point"], r["outcome"], r["executions"], r["starts_resent"], r["redispatched_attempts"],
            f"{r['orphans_after_restart']}/{r['orphans_at_end']}", r["duplicate_completions"], r["recovered_s"])))
    return "\n".join(lines)
