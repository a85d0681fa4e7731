"""Edges of eager dispatch (``CompleteTaskRunRequest.max_next_task_runs``) and of log lines
sent with a completion (``CompleteTaskRunRequest.logs``), through raw gRPC stubs.

Each test plays the worker itself (it holds the task tokens), in its own worker group, so the
module's tests do not take each other's task runs.
"""

from __future__ import annotations

import json

import grpc
import pytest

from kestrel.v1 import common_pb2, execution_pb2, log_pb2, worker_pb2
from tests.integration.harness import wait_until
from tests.integration.rpc import connect, state_name

SLEEP = "io.kestrel.tests.Sleep"
RETURN = "io.kestra.plugin.core.debug.Return"
NS = "tests.eager_edges"


def _chain(flow_id: str, group: str, extra: str = "") -> str:
    return f"""
id: {flow_id}
namespace: {NS}
{extra}tasks:
  - id: first
    type: {SLEEP}
    workerGroup: {{key: {group}}}
    seconds: 0
  - id: second
    type: {RETURN}
    workerGroup: {{key: {group}}}
    format: "second"
"""


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    s.register_worker([SLEEP])  # make the custom type known
    yield s
    s.close()


def _complete(stubs, token: str, **kw) -> worker_pb2.CompleteTaskRunResponse:
    kw.setdefault("state", common_pb2.STATE_SUCCESS)
    return stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=token, **kw), timeout=10)


def _line(message: str, level=common_pb2.LOG_LEVEL_INFO) -> log_pb2.LogEntry:
    return log_pb2.LogEntry(level=level, message=message)


def test_eager_claim_takes_only_the_workers_group_and_task_types(stubs):
    """Queued work of another worker group, or of a type the worker did not register, is never
    handed out eagerly; the worker's own next task run is."""
    stubs.deploy(_chain("mine", "eg-mine"))
    stubs.deploy(_chain("theirs", "eg-theirs"))
    theirs = stubs.start(NS, "theirs")  # 'first' queued in group eg-theirs
    only_sleep = stubs.register_worker([SLEEP], worker_group="eg-mine")
    mine = stubs.start(NS, "mine")
    a = wait_until(lambda: stubs.poll(only_sleep, wait=1), what="first task run")[0]
    assert a.execution_id == mine.id
    # 'second' (a Return) is queued by this result, but the worker does not run Returns; the
    # queued 'first' of the other group is not its either.
    assert list(_complete(stubs, a.task_token, outputs_json='{"slept": 0}', max_next_task_runs=10).assignments) == []
    other = stubs.register_worker([SLEEP, RETURN], worker_group="eg-theirs")
    got = wait_until(lambda: stubs.poll(other, wait=1), what="the other group's task run")
    assert [(x.execution_id, x.task_id) for x in got] == [(theirs.id, "first")]
    returns = stubs.register_worker([RETURN], worker_group="eg-mine")
    b = wait_until(lambda: stubs.poll(returns, wait=1), what="mine's second")[0]
    assert (b.execution_id, b.task_id) == (mine.id, "second")
    _complete(stubs, b.task_token, outputs_json='{"value": "second"}')
    _complete(stubs, got[0].task_token, outputs_json='{"slept": 0}')
    c = wait_until(lambda: stubs.poll(other, wait=1), what="theirs' second")[0]
    _complete(stubs, c.task_token, outputs_json='{"value": "second"}')
    assert state_name(stubs.wait(mine.id, timeout=30).state.current) == "SUCCESS"
    assert state_name(stubs.wait(theirs.id, timeout=30).state.current) == "SUCCESS"


def test_eager_claim_follows_a_re_registration(stubs):
    """A worker that re-registers (same id) with other task types or another group gets eager
    work by its new registration, not by what it registered when it claimed."""
    stubs.deploy(_chain("rereg", "eg-rereg"))
    worker = stubs.register_worker([SLEEP, RETURN], worker_group="eg-rereg", worker_id="eg-rereg-w")
    ex = stubs.start(NS, "rereg")
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="first")[0]
    stubs.register_worker([SLEEP], worker_group="eg-rereg", worker_id="eg-rereg-w")
    assert list(_complete(stubs, a.task_token, outputs_json='{"slept": 0}', max_next_task_runs=1).assignments) == []
    returns = stubs.register_worker([RETURN], worker_group="eg-rereg")
    b = wait_until(lambda: stubs.poll(returns, wait=1), what="second")[0]
    _complete(stubs, b.task_token, outputs_json='{"value": "second"}')
    assert state_name(stubs.wait(ex.id, timeout=30).state.current) == "SUCCESS"


def test_nothing_of_a_killed_execution_is_handed_out_eagerly(stubs):
    """Kill while a task run is on the worker: its completion (with max_next) gets nothing of
    the killed execution, and the execution ends KILLED."""
    stubs.deploy(f"""
id: killme
namespace: {NS}
tasks:
  - id: par
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: a
        type: {SLEEP}
        workerGroup: {{key: eg-kill}}
        seconds: 0
      - id: b
        type: {SLEEP}
        workerGroup: {{key: eg-kill}}
        seconds: 0
  - id: after
    type: {SLEEP}
    workerGroup: {{key: eg-kill}}
    seconds: 0
""")
    worker = stubs.register_worker([SLEEP], worker_group="eg-kill")
    ex = stubs.start(NS, "killme")
    held = wait_until(lambda: stubs.poll(worker, wait=1, max_task_runs=1), what="one branch")[0]
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
    resp = _complete(stubs, held.task_token, outputs_json='{"slept": 0}', max_next_task_runs=5)
    assert list(resp.assignments) == []
    final = stubs.wait(ex.id, timeout=30)
    assert state_name(final.state.current) == "KILLED"
    assert "after" not in {tr.task_id for tr in final.task_runs}
    assert stubs.poll(worker, wait=0.5) == []


@pytest.mark.parametrize(("sent", "shown"), [
    ("", None), ("{}", {}), ('{"a": null, "b": {"c": [1, null, {"d": null}]}, "e": ""}',
                            {"a": None, "b": {"c": [1, None, {"d": None}]}, "e": ""}),
])
def test_outputs_round_trip_after_the_plain_sql_writes(stubs, sent, shown):
    """Outputs None, {} and nested JSON nulls come back as sent, and the next task's
    expression sees them."""
    flow_id = f"rt-{len(sent)}"
    stubs.deploy(f"""
id: {flow_id}
namespace: {NS}
tasks:
  - id: first
    type: {SLEEP}
    workerGroup: {{key: eg-rt}}
    seconds: 0
  - id: second
    type: {RETURN}
    workerGroup: {{key: eg-rt}}
    format: "{{{{ outputs.first ?? 'none' }}}}"
outputs:
  - id: o
    type: STRING
    value: "{{{{ outputs.second.value }}}}"
""")
    worker = stubs.register_worker([SLEEP, RETURN], worker_group="eg-rt")
    ex = stubs.start(NS, flow_id)
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="first")[0]
    nxt = _complete(stubs, a.task_token, outputs_json=sent, max_next_task_runs=1).assignments
    assert [x.task_id for x in nxt] == ["second"]
    rendered = json.loads(nxt[0].properties_json)["format"]
    _complete(stubs, nxt[0].task_token, outputs_json=json.dumps({"value": rendered}))
    final = stubs.wait(ex.id, timeout=30)
    assert state_name(final.state.current) == "SUCCESS", final
    first = next(tr for tr in final.task_runs if tr.task_id == "first")
    assert (json.loads(first.outputs_json) if first.outputs_json else None) == shown
    assert rendered == ("none" if shown is None else shown)
    assert json.loads(final.outputs_json)["o"] in (rendered, json.dumps(rendered, separators=(",", ":")))


def test_log_lines_with_a_completion_are_checked_masked_and_filtered(stubs):
    """Lines sent with a completion: an unknown level or 10,001 lines refuse the call before
    anything is recorded; NUL is replaced; SECRET inputs are masked; lines below the task's
    logLevel are dropped, as AppendLogs does."""
    stubs.deploy(f"""
id: logs
namespace: {NS}
inputs:
  - id: password
    type: SECRET
tasks:
  - id: first
    type: {SLEEP}
    workerGroup: {{key: eg-logs}}
    logLevel: WARN
    seconds: 0
""")
    worker = stubs.register_worker([SLEEP], worker_group="eg-logs")
    ex = stubs.start(NS, "logs", inputs={"password": "hunter2-s3cret"})
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="first")[0]
    for bad in ([_line("x", level=99)], [_line("x")] * 10_001):
        with pytest.raises(grpc.RpcError) as err:
            _complete(stubs, a.task_token, outputs_json="{}", logs=bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "logs" in err.value.details()
    assert state_name(next(tr for tr in stubs.get(ex.id).task_runs if tr.task_id == "first").state.current) == "RUNNING"
    _complete(stubs, a.task_token, outputs_json="{}", logs=[
        _line("dropped info"), _line("warn a\x00b", common_pb2.LOG_LEVEL_WARN),
        _line("pw=hunter2-s3cret", common_pb2.LOG_LEVEL_ERROR),
    ])
    stored = [(e.level, e.message) for e in stubs.logs_stub_list(ex.id) if e.task_id == "first"]
    assert stored == [(common_pb2.LOG_LEVEL_WARN, "warn a\ufffdb"), (common_pb2.LOG_LEVEL_ERROR, "pw=******")]
    assert state_name(stubs.wait(ex.id, timeout=30).state.current) == "SUCCESS"


def test_log_lines_of_a_stale_completion_are_kept_as_appendlogs_keeps_them(stubs):
    """A completion whose lease was lost (here: its worker shut down, the task run was handed
    back) is NOT_FOUND, but its log lines are the attempt's evidence: they are stored tagged
    with the old attempt, as ``AppendLogs`` stores a stale attempt's lines (the SDK sends them
    nowhere else)."""
    stubs.deploy(_chain("stale", "eg-stale"))
    worker = stubs.register_worker([SLEEP, RETURN], worker_group="eg-stale")
    ex = stubs.start(NS, "stale")
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="first")[0]
    stubs.workers.ShutdownWorker(worker_pb2.ShutdownWorkerRequest(worker_id=worker), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        _complete(stubs, a.task_token, outputs_json='{"slept": 0}', max_next_task_runs=1,
                  logs=[_line("last words of attempt 1")])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stored = [(e.task_id, e.attempt, e.message) for e in stubs.logs_stub_list(ex.id)]
    assert ("first", 1, "last words of attempt 1") in stored
    w2 = stubs.register_worker([SLEEP, RETURN], worker_group="eg-stale")
    b = wait_until(lambda: stubs.poll(w2, wait=1), what="first again")[0]
    assert (b.task_id, b.attempt) == ("first", 2)
    nxt = _complete(stubs, b.task_token, outputs_json='{"slept": 0}', max_next_task_runs=1).assignments
    _complete(stubs, nxt[0].task_token, outputs_json='{"value": "second"}')
    assert state_name(stubs.wait(ex.id, timeout=30).state.current) == "SUCCESS"


WD = "io.kestra.plugin.core.flow.WorkingDirectory"


def test_eager_dispatch_keeps_a_working_directory_on_its_worker(stubs):
    """Two directory-keeping workers: the one that ran child 1 gets child 2 eagerly (same
    directory, marked last); a group whose first child is claimed eagerly is pinned to that
    worker (the other never gets its children); the group outputs sent with the last child
    (JSON nulls, nesting) merge into the WorkingDirectory's outputs."""
    types = [RETURN, WD]
    stubs.deploy(f"""
id: wdeager
namespace: {NS}
tasks:
  - id: wd
    type: {WD}
    workerGroup: {{key: eg-wd}}
    tasks:
      - {{id: r1, type: {RETURN}, format: one}}
      - {{id: r2, type: {RETURN}, format: two}}
""")
    a = stubs.register_worker(types, worker_group="eg-wd")
    b = stubs.register_worker(types, worker_group="eg-wd")
    ex1 = stubs.start(NS, "wdeager")
    [one] = wait_until(lambda: stubs.poll(a, wait=1), what="r1 of ex1")
    ex2 = stubs.start(NS, "wdeager")  # its r1 is queued: a takes it eagerly below
    wait_until(lambda: any(tr.task_id == "r1" for tr in stubs.get(ex2.id).task_runs), what="ex2's r1")
    got = _complete(stubs, one.task_token, outputs_json='{"value": "one"}', max_next_task_runs=5).assignments
    assert sorted((x.execution_id, x.task_id) for x in got) == sorted([(ex1.id, "r2"), (ex2.id, "r1")])
    by_ex = {x.execution_id: x for x in got}
    assert by_ex[ex1.id].working_directory.id == one.working_directory.id and by_ex[ex1.id].working_directory.last
    assert stubs.poll(b, wait=0.5) == []
    group_out = '{"n": null, "deep": {"list": [1, null]}, "empty": {}}'
    more = _complete(stubs, by_ex[ex2.id].task_token, outputs_json='{"value": "one"}', max_next_task_runs=5).assignments
    assert [(x.execution_id, x.task_id) for x in more] == [(ex2.id, "r2")]  # pinned: for a only
    assert stubs.poll(b, wait=0.5) == []
    for last in (by_ex[ex1.id], more[0]):
        _complete(stubs, last.task_token, outputs_json='{"value": "two"}', working_directory_outputs_json=group_out)
    for ex in (ex1, ex2):
        final = stubs.wait(ex.id, timeout=30)
        assert state_name(final.state.current) == "SUCCESS"
        wd = next(tr for tr in final.task_runs if tr.task_id == "wd")
        outs = json.loads(wd.outputs_json)
        assert {k: outs.get(k, "missing") for k in ("n", "deep", "empty")} == json.loads(group_out), outs
        assert {att.worker_id for tr in final.task_runs for att in tr.attempts} == {a}


def test_a_token_signed_without_the_task_id_still_completes_with_logs_and_eager_work(server, stubs):
    """Tokens signed before they carried the task id (a worker that survived the upgrade):
    the lines sent with its completion get the task id from the task run, and eager dispatch
    works as for a new token."""
    from controlplane.tokens import TaskTokenClaims

    stubs.deploy(_chain("oldtok", "eg-oldtok"))
    worker = stubs.register_worker([SLEEP, RETURN], worker_group="eg-oldtok")
    ex = stubs.start(NS, "oldtok")
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="first")[0]
    signer = server.cp.signer
    c = signer.verify(a.task_token)
    assert c.task_id == "first"
    old = signer.sign(TaskTokenClaims(c.execution_id, c.task_run_id, c.attempt, c.lease_epoch, c.worker_id))
    assert signer.verify(old).task_id == ""
    nxt = _complete(stubs, old, outputs_json='{"slept": 0}', max_next_task_runs=1, logs=[_line("old token line")])
    assert [x.task_id for x in nxt.assignments] == ["second"]
    assert ("first", 1, "old token line") in [(e.task_id, e.attempt, e.message) for e in stubs.logs_stub_list(ex.id)]
    _complete(stubs, nxt.assignments[0].task_token, outputs_json='{"value": "second"}')
    assert state_name(stubs.wait(ex.id, timeout=30).state.current) == "SUCCESS"


@pytest.fixture(scope="module")
def small_logs_server(database_url):
    from tests.integration.harness import ServerThread, test_settings

    srv = ServerThread(test_settings(database_url, max_log_bytes_per_attempt=2000)).start()
    yield srv
    srv.stop()


def test_lines_over_the_log_limit_fail_the_attempt_and_leak_no_eager_claim(small_logs_server):
    """A completion whose lines go over the attempt's log limit is NOT_FOUND (the attempt
    failed): the eager claim made in the rolled-back transaction is undone, so the queued task
    run it took is still there for the next poll (first attempt, not leased to anyone)."""
    s = connect(small_logs_server.address)
    try:
        s.register_worker([SLEEP])
        s.deploy(_chain("overlog", "eg-overlog"))
        worker = s.register_worker([SLEEP, RETURN], worker_group="eg-overlog")
        first = s.start(NS, "overlog")
        a = wait_until(lambda: s.poll(worker, wait=1), what="first of the first execution")[0]
        second = s.start(NS, "overlog")
        wait_until(lambda: s.get(second.id).task_runs, what="the second execution's first task run")
        with pytest.raises(grpc.RpcError) as err:
            _complete(s, a.task_token, outputs_json='{"slept": 0}', max_next_task_runs=5,
                      logs=[_line("z" * 1000) for _ in range(3)])
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert state_name(s.wait(first.id, timeout=30).state.current) == "FAILED"
        b = wait_until(lambda: s.poll(worker, wait=1), what="the second execution's task run")[0]
        assert (b.execution_id, b.task_id, b.attempt) == (second.id, "first", 1)
        nxt = _complete(s, b.task_token, outputs_json='{"slept": 0}', max_next_task_runs=1).assignments
        _complete(s, nxt[0].task_token, outputs_json='{"value": "second"}')
        assert state_name(s.wait(second.id, timeout=30).state.current) == "SUCCESS"
    finally:
        s.close()


def test_a_signed_token_of_an_unknown_execution_is_not_found_with_logs_and_max_next(server, stubs):
    """A genuine signature over an execution that does not exist (deleted): NOT_FOUND, nothing
    stored, nothing claimed (not an internal error from the log store)."""
    from controlplane.tokens import TaskTokenClaims

    worker = stubs.register_worker([SLEEP], worker_group="eg-ghost")
    token = server.cp.signer.sign(TaskTokenClaims("no-such-execution", "no-such-task-run", 1, 1, worker, "t"))
    with pytest.raises(grpc.RpcError) as err:
        _complete(stubs, token, outputs_json="{}", max_next_task_runs=3, logs=[_line("ghost")])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_completion_with_logs_for_an_execution_deleted_meanwhile_is_not_found(server, stubs):
    """The execution is deleted after a log batch cached its log rules: the completion with
    lines is NOT_FOUND (the lines cannot be kept), not an internal error."""
    import sqlalchemy as sa

    stubs.deploy(_chain("gone", "eg-gone"))
    worker = stubs.register_worker([SLEEP, RETURN], worker_group="eg-gone")
    ex = stubs.start(NS, "gone")
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="first")[0]
    stubs.logs.AppendLogs(log_pb2.AppendLogsRequest(task_token=a.task_token, entries=[_line("early")]), timeout=10)

    async def delete():
        async with server.cp.transaction() as unit:
            await unit.conn.execute(sa.text("DELETE FROM executions WHERE id = :id"), {"id": ex.id})

    server.run(delete())
    with pytest.raises(grpc.RpcError) as err:
        _complete(stubs, a.task_token, outputs_json='{"slept": 0}', max_next_task_runs=1, logs=[_line("late")])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
