"""Retries and timeouts end to end: gRPC API, a live control plane and real worker processes.

Kestra's semantics (FEATURES.md §7): a failed attempt is retried by the task's ``retry``, else
the nearest ancestor's, else the flow's; the task run is RETRYING (and the execution too while
nothing else runs) until the retry date; ``errors`` run only once retries are exhausted.

Timing: assertions use the control plane's own timestamps; a gap between attempts is asserted
at least the policy's delay (the retry date cannot come early) and below a generous bound.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import grpc
import pytest

from controlplane.server import ControlPlane
from kestrel.v1 import common_pb2, execution_pb2, flow_pb2, worker_pb2
from tests.conformance.runner import corpus_dir, corpus_missing_reason, load_corpus_flows
from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as settings_for
from tests.integration.rpc import connect, state_name, wait_state

NS = "tests.retry"
FLAKY = "io.kestrel.tests.Flaky"
SLACK = timedelta(seconds=15)  # generous upper bound on scheduling lag (sweep, poll, CI load)


@pytest.fixture(scope="module")
def server(database_url: str):
    """A control plane whose server-side timeout grace is short (1 s)."""
    srv = ServerThread(settings_for(database_url, timeout_grace_seconds=1.0)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    with worker_process(server.address, "--module", "tests.integration.tasks.flaky", "--module",
                        "tests.integration.tasks.slow", concurrency=4):
        wait_until(lambda: _worker_ready(s), what="worker registration")
        yield s
    s.close()


def _worker_ready(stubs) -> bool:
    try:
        stubs.deploy(f"id: probe\nnamespace: {NS}\ntasks:\n  - id: p\n    type: {FLAKY}\n")
        return True
    except grpc.RpcError:
        return False


def _flow(flow_id: str, body: str) -> str:
    return f"id: {flow_id}\nnamespace: {NS}\n{body}"


def _states(info) -> list[str]:
    return [state_name(h.state) for h in info.histories]


def _run(stubs, flow_id: str, timeout: float = 90):
    return stubs.wait(stubs.start(NS, flow_id).id, timeout=timeout)


def _task_run(execution, task_id: str):
    return next(tr for tr in execution.task_runs if tr.task_id == task_id)


def _gaps(tr) -> list[timedelta]:
    """Time between the end of each attempt and the start of the next (server clock)."""
    return [
        b.start_date.ToDatetime() - a.end_date.ToDatetime()
        for a, b in zip(tr.attempts, tr.attempts[1:], strict=False)
    ]


# -- RETRY_FAILED_TASK --------------------------------------------------------------------------


def test_task_fails_twice_then_succeeds_with_retrying_visible_in_the_api(stubs):
    stubs.deploy(_flow("flaky", f"""
tasks:
  - id: flaky
    type: {FLAKY}
    succeedOn: 3
    retry:
      type: constant
      interval: PT2S
      maxAttempt: 5
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: "done after {{{{ outputs.flaky.attempt }}}} attempts"
"""))
    ex = stubs.start(NS, "flaky")
    waiting = wait_state(stubs, ex.id, {"RETRYING"}, timeout=30)
    tr = _task_run(waiting, "flaky")
    assert state_name(tr.state.current) == "RETRYING"
    assert state_name(tr.attempts[0].state.current) == "FAILED"
    final = stubs.wait(ex.id, timeout=90)
    assert state_name(final.state.current) == "SUCCESS", final
    tr = _task_run(final, "flaky")
    assert [a.attempt for a in tr.attempts] == [1, 2, 3]
    assert [state_name(a.state.current) for a in tr.attempts] == ["FAILED", "FAILED", "SUCCESS"]
    assert _states(tr.state) == ["CREATED", "RUNNING", "RETRYING", "RUNNING", "RETRYING", "RUNNING", "SUCCESS"]
    assert _states(final.state) == ["CREATED", "RUNNING", "RETRYING", "RUNNING", "RETRYING", "RUNNING", "SUCCESS"]
    assert json.loads(tr.outputs_json) == {"attempt": 3} and tr.error == ""
    for gap in _gaps(tr):
        assert timedelta(seconds=2) <= gap < timedelta(seconds=2) + SLACK
    messages = [e.message for e in stubs.logs_stub_list(ex.id)]
    assert "done after 3 attempts" in messages
    assert any("attempt 1 failed; attempt 2 of 5 starts at" in m for m in messages)


def test_execution_is_retrying_only_while_nothing_else_runs(stubs):
    stubs.deploy(_flow("parallel-retry", f"""
tasks:
  - id: both
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: flaky
        type: {FLAKY}
        succeedOn: 2
        retry:
          type: constant
          interval: PT6S
          maxAttempt: 2
      - id: nap
        type: io.kestrel.tests.Sleep
        seconds: 0.5
"""))
    final = _run(stubs, "parallel-retry")
    assert state_name(final.state.current) == "SUCCESS", final
    # RUNNING while the sibling sleeps, RETRYING once it is done and only the retry is pending.
    assert _states(final.state) == ["CREATED", "RUNNING", "RETRYING", "RUNNING", "SUCCESS"]
    retrying_since = final.state.histories[2].date.ToDatetime()
    assert retrying_since >= _task_run(final, "nap").state.histories[-1].date.ToDatetime()
    assert state_name(_task_run(final, "flaky").state.current) == "SUCCESS"


def test_retries_exhausted_then_errors_run_once(stubs):
    stubs.deploy(_flow("exhausted", f"""
tasks:
  - id: always
    type: {FLAKY}
    succeedOn: 0
    retry:
      type: constant
      interval: PT0.5S
      maxAttempt: 3
  - id: never
    type: io.kestra.plugin.core.log.Log
    message: unreachable
errors:
  - id: handler
    type: io.kestra.plugin.core.log.Log
    message: handled
"""))
    final = _run(stubs, "exhausted")
    assert state_name(final.state.current) == "FAILED"
    assert [(tr.task_id, state_name(tr.state.current)) for tr in final.task_runs] == [
        ("always", "FAILED"), ("handler", "SUCCESS")
    ]
    always = _task_run(final, "always")
    assert len(always.attempts) == 3 and "attempt 3 fails on purpose" in always.error
    handler_created = _task_run(final, "handler").state.histories[0].date.ToDatetime()
    assert handler_created >= always.attempts[-1].end_date.ToDatetime()  # errors only after the last retry


def test_max_duration_stops_retries(stubs):
    stubs.deploy(_flow("duration", f"""
tasks:
  - id: always
    type: {FLAKY}
    succeedOn: 0
    retry:
      type: constant
      interval: PT2S
      maxDuration: PT6S
"""))
    final = _run(stubs, "duration")
    assert state_name(final.state.current) == "FAILED"
    tr = _task_run(final, "always")
    # Kestra's rule, checked against the recorded times: every retry was due within
    # first start + maxDuration, and the next one would not have been.
    first = tr.attempts[0].start_date.ToDatetime()
    deadline = first + timedelta(seconds=6)
    assert len(tr.attempts) >= 2
    for attempt in tr.attempts[:-1]:
        assert attempt.end_date.ToDatetime() + timedelta(seconds=2) <= deadline
    assert tr.attempts[-1].end_date.ToDatetime() + timedelta(seconds=2) > deadline


def test_exponential_gaps_grow(stubs):
    stubs.deploy(_flow("expo", f"""
tasks:
  - id: always
    type: {FLAKY}
    succeedOn: 0
    retry:
      type: exponential
      interval: PT0.5S
      maxInterval: PT10S
      maxAttempt: 4
"""))
    final = _run(stubs, "expo")
    tr = _task_run(final, "always")
    assert len(tr.attempts) == 4
    for gap, expected in zip(_gaps(tr), (0.5, 1.0, 2.0), strict=True):
        assert timedelta(seconds=expected) <= gap < timedelta(seconds=expected) + SLACK


@pytest.mark.parametrize(("warning", "expected"), [(True, "WARNING"), (False, "SUCCESS")])
def test_warning_on_retry(stubs, warning, expected):
    flow_id = f"warn-{str(warning).lower()}"
    stubs.deploy(_flow(flow_id, f"""
tasks:
  - id: flaky
    type: {FLAKY}
    succeedOn: 2
    retry:
      type: constant
      interval: PT0.2S
      maxAttempt: 3
      warningOnRetry: {str(warning).lower()}
"""))
    final = _run(stubs, flow_id)
    assert state_name(final.state.current) == expected
    assert state_name(_task_run(final, "flaky").state.current) == expected


def test_warning_on_retry_has_no_effect_without_a_retry(stubs):
    stubs.deploy(_flow("warn-first", f"""
tasks:
  - id: ok
    type: {FLAKY}
    retry:
      type: constant
      interval: PT0.2S
      maxAttempt: 3
      warningOnRetry: true
"""))
    final = _run(stubs, "warn-first")
    assert state_name(final.state.current) == "SUCCESS" and len(_task_run(final, "ok").attempts) == 1


def test_flow_level_retry_and_nearest_flowable_retry(stubs):
    stubs.deploy(_flow("flow-level", f"""
retry:
  type: constant
  interval: PT0.2S
  maxAttempt: 3
tasks:
  - id: top
    type: {FLAKY}
    succeedOn: 3
  - id: seq
    type: io.kestra.plugin.core.flow.Sequential
    retry:
      type: constant
      interval: PT0.2S
      maxAttempt: 2
    tasks:
      - id: child
        type: {FLAKY}
        succeedOn: 3
"""))
    final = _run(stubs, "flow-level")
    # top: the flow's policy (3 attempts) lets it succeed; child: the Sequential's (2) does not.
    assert len(_task_run(final, "top").attempts) == 3
    assert state_name(_task_run(final, "top").state.current) == "SUCCESS"
    child = _task_run(final, "child")
    assert len(child.attempts) == 2 and state_name(child.state.current) == "FAILED"
    assert state_name(_task_run(final, "seq").state.current) == "FAILED"
    assert len(_task_run(final, "seq").attempts) == 0  # the flowable itself is never retried
    assert state_name(final.state.current) == "FAILED"


def test_allow_failure_applies_after_the_retries(stubs):
    stubs.deploy(_flow("allowed", f"""
tasks:
  - id: fail
    type: {FLAKY}
    succeedOn: 0
    allowFailure: true
    retry:
      type: constant
      interval: PT0.1S
      maxAttempt: 3
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: allowed
"""))
    final = _run(stubs, "allowed")
    assert state_name(final.state.current) == "WARNING"
    assert len(_task_run(final, "fail").attempts) == 3
    assert [state_name(tr.state.current) for tr in final.task_runs] == ["WARNING", "SUCCESS"]


def test_a_property_that_fails_to_render_is_a_failed_attempt_and_is_retried(stubs):
    # Kestra renders properties at the start of every attempt: taskrun.attemptsCount grows.
    stubs.deploy(_flow("render-retry", """
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "{% if taskrun.attemptsCount == 2 %}third time lucky{% else %}{{ ko }}{% endif %}"
    retry:
      type: constant
      interval: PT0.3S
      maxAttempt: 4
      warningOnRetry: true
"""))
    final = _run(stubs, "render-retry")
    assert state_name(final.state.current) == "WARNING", final
    tr = _task_run(final, "log")
    assert [state_name(a.state.current) for a in tr.attempts] == ["FAILED", "FAILED", "SUCCESS"]
    assert [a.reason for a in tr.attempts[:2]] == ["TASK_ERROR", "TASK_ERROR"]
    assert [a.worker_id for a in tr.attempts[:2]] == ["", ""]  # failed on the control plane
    assert "third time lucky" in [e.message for e in stubs.logs_stub_list(final.id)]


def test_kill_during_a_retry_wait(stubs):
    stubs.deploy(_flow("kill-wait", f"""
tasks:
  - id: always
    type: {FLAKY}
    succeedOn: 0
    retry:
      type: constant
      interval: PT1M
      maxAttempt: 3
"""))
    ex = stubs.start(NS, "kill-wait")
    wait_state(stubs, ex.id, {"RETRYING"}, timeout=30)
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
    final = stubs.wait(ex.id, timeout=30)
    assert state_name(final.state.current) == "KILLED"
    tr = _task_run(final, "always")
    assert state_name(tr.state.current) == "KILLED" and len(tr.attempts) == 1


# -- CREATE_NEW_EXECUTION ------------------------------------------------------------------------


def _executions_of(stubs, flow_id: str) -> list[execution_pb2.Execution]:
    req = execution_pb2.ListExecutionsRequest(namespace=NS, flow_id=flow_id, page_size=50)
    return list(reversed(stubs.executions.ListExecutions(req, timeout=10).executions))  # oldest first


@pytest.mark.parametrize("level", ["task", "flow"])
def test_create_new_execution(stubs, level):
    retry = """retry:
  behavior: CREATE_NEW_EXECUTION
  type: constant
  interval: PT0.5S
  maxAttempt: 3
"""
    flow_id = f"new-execution-{level}"
    if level == "flow":
        body = retry + f"inputs:\n  - id: who\n    type: STRING\ntasks:\n  - id: fail\n    type: {FLAKY}\n    succeedOn: 0\n"
    else:
        body = ("inputs:\n  - id: who\n    type: STRING\n"
                f"tasks:\n  - id: fail\n    type: {FLAKY}\n    succeedOn: 0\n" + _indent(retry, 4))
    stubs.deploy(_flow(flow_id, body))
    first = stubs.start(NS, flow_id, inputs={"who": "ada"})
    assert state_name(stubs.wait(first.id, timeout=60).state.current) == "RETRIED"

    def chain():
        executions = _executions_of(stubs, flow_id)
        return len(executions) == 3 and all(state_name(e.state.current) in ("RETRIED", "FAILED") for e in executions)

    wait_until(chain, timeout=90, what="three executions in the retry chain")
    executions = _executions_of(stubs, flow_id)
    assert [state_name(e.state.current) for e in executions] == ["RETRIED", "RETRIED", "FAILED"]
    assert executions[0].id == first.id
    assert [e.original_id for e in executions[1:]] == [first.id, first.id]
    assert all(json.loads(e.inputs_json) == {"who": "ada"} for e in executions)
    full = stubs.get(first.id)
    assert state_name(_task_run(full, "fail").state.current) == "RETRIED"
    assert len(_task_run(full, "fail").attempts) == 1
    for before, after in zip(executions, executions[1:], strict=False):
        gap = after.state.histories[0].date.ToDatetime() - before.end_date.ToDatetime()
        assert timedelta(seconds=0.5) <= gap < timedelta(seconds=0.5) + SLACK


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.splitlines())


# -- Kestra's corpus: attempt numbers its tests assert (manifest notes) ---------------------------

#: file -> (task id, attempts of each of its task runs; None = checked against the maxDuration rule)
CORPUS_ATTEMPTS: dict[str, tuple[str, int | None]] = {
    "retry-expo.yaml": ("failed", 3),
    "retry-fail.yaml": ("keepFailingWithRetry", 3),
    "retry-failed.yaml": ("failed", 5),
    "retry-failed-flow-attempts.yml": ("fail", 4),
    "retry-failed-task-attempts.yml": ("fail", 4),
    "retry-failed-flow-duration.yml": ("fail", None),
    "retry-failed-task-duration.yml": ("fail", None),
    "retry-flowable.yaml": ("child", 3),
    "retry-flowable-child.yaml": ("child", 3),
    "retry-flowable-nested-child.yaml": ("child", 3),
    "retry-random.yaml": ("failed", 3),
    "retry-success.yaml": ("failed", 4),
    "task-allow-failure-runnable.yml": ("fail", 3),
    "task-allow-warning-runnable.yml": ("fail", 3),
}


def test_corpus_retry_flows_make_the_attempts_kestra_asserts(stubs):
    if corpus_missing_reason():
        pytest.skip(corpus_missing_reason())
    corpus = load_corpus_flows()
    started = {}
    for file in CORPUS_ATTEMPTS:
        entry = corpus[file]
        stubs.deploy((corpus_dir() / "flows" / file).read_text(encoding="utf-8"))
        started[file] = (entry, stubs.start(entry.namespace, entry.flow_id).id)
    for file, (task_id, attempts) in CORPUS_ATTEMPTS.items():
        entry, execution_id = started[file]
        final = stubs.wait(execution_id, timeout=90)
        assert state_name(final.state.current) == entry.expected_state, file
        for tr in (tr for tr in final.task_runs if tr.task_id == task_id):
            if attempts is not None:
                assert len(tr.attempts) == attempts, file
                continue
            deadline = tr.attempts[0].start_date.ToDatetime() + timedelta(seconds=6)  # PT6S / PT2S
            assert len(tr.attempts) >= 2, file
            assert all(a.end_date.ToDatetime() + timedelta(seconds=2) <= deadline for a in tr.attempts[:-1]), file
            assert tr.attempts[-1].end_date.ToDatetime() + timedelta(seconds=2) > deadline, file


# -- validation ----------------------------------------------------------------------------------


def test_a_retry_that_can_never_retry_is_refused_with_field_and_line(stubs):
    source = _flow("bad-retry", f"""tasks:
  - id: t
    type: {FLAKY}
    retry:
      type: constant
      maxDuration: PT1S
      interval: PT5S
""")
    with pytest.raises(grpc.RpcError) as err:
        stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=source), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'interval' must be less than 'maxDuration' but is PT5S" in err.value.details()
    validation = stubs.flows.ValidateFlow(flow_pb2.ValidateFlowRequest(source=source), timeout=10)
    [error] = validation.errors
    assert (error.path, error.line) == ("tasks[0].retry.interval", 9)
    assert "task 't'" in error.message


def test_retry_is_no_longer_reported_as_not_applied(stubs):
    resp = stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=_flow("applied", f"""
retry:
  type: constant
  interval: PT1S
  maxAttempt: 1
tasks:
  - id: t
    type: {FLAKY}
    retry:
      type: constant
      interval: PT1S
""")), timeout=10)
    messages = [w.message for w in resp.warnings]
    assert not any("not applied yet" in m for m in messages), messages
    assert any("'maxAttempt: 1' allows no retry" in m for m in messages)
    assert any("retried until it succeeds or its execution is killed" in m for m in messages)


# -- timeouts ------------------------------------------------------------------------------------


def test_timeout_stops_the_attempt_on_the_worker_and_it_is_retried(stubs):
    stubs.deploy(_flow("timeout", f"""
tasks:
  - id: slow
    type: {FLAKY}
    succeedOn: 2
    hangSeconds: 60
    timeout: PT1S
    retry:
      type: constant
      interval: PT0.2S
      maxAttempt: 2
"""))
    final = _run(stubs, "timeout")
    assert state_name(final.state.current) == "SUCCESS", final
    tr = _task_run(final, "slow")
    assert [a.reason for a in tr.attempts] == ["TIMEOUT", ""]
    first = tr.attempts[0]
    assert first.end_date.ToDatetime() - first.start_date.ToDatetime() < timedelta(seconds=30)  # not the full 60 s


def test_timeout_without_retry_fails_the_task(stubs):
    stubs.deploy(_flow("timeout-fail", """
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: 60
    timeout: PT1S
"""))
    final = _run(stubs, "timeout-fail")
    assert state_name(final.state.current) == "FAILED"
    tr = _task_run(final, "nap")
    assert [a.reason for a in tr.attempts] == ["TIMEOUT"] and "Timeout after 1" in tr.error


def test_server_side_timeout_when_the_worker_never_reports(stubs):
    silent_type = "io.kestrel.tests.Silent"
    worker_id = stubs.register_worker([silent_type], worker_group="silent")
    stubs.deploy(_flow("silent", f"""
tasks:
  - id: hang
    type: {silent_type}
    workerGroup:
      key: silent
    timeout: PT1S
    retry:
      type: constant
      interval: PT0.2S
      maxAttempt: 2
"""))
    ex = stubs.start(NS, "silent")
    first = wait_until(lambda: stubs.poll(worker_id, wait=1), what="first attempt")[0]
    stop = threading.Event()

    def heartbeat():  # a worker that is alive but never reports
        while not stop.wait(0.3):
            try:
                stubs.workers.RecordTaskRunHeartbeat(
                    worker_pb2.RecordTaskRunHeartbeatRequest(task_token=first.task_token), timeout=5)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    second = wait_until(lambda: stubs.poll(worker_id, wait=1), timeout=60, what="retry after the server-side timeout")[0]
    stop.set()
    beating.join(10)
    assert second.task_run_id == first.task_run_id and second.attempt == 2
    stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(
        task_token=second.task_token, outputs_json="{}", state=common_pb2.STATE_SUCCESS), timeout=10)
    final = stubs.wait(ex.id, timeout=30)
    assert state_name(final.state.current) == "SUCCESS"
    tr = _task_run(final, "hang")
    assert [a.reason for a in tr.attempts] == ["TIMEOUT", ""]
    with pytest.raises(grpc.RpcError) as err:  # the timed-out attempt's late result is refused
        stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=first.task_token), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- durability (keep last: it restarts the module's control plane) -----------------------------


def test_a_pending_retry_survives_a_control_plane_restart(server, stubs):
    stubs.deploy(_flow("durable", f"""
tasks:
  - id: flaky
    type: {FLAKY}
    succeedOn: 2
    retry:
      type: constant
      interval: PT5S
      maxAttempt: 2
"""))
    ex = stubs.start(NS, "durable")
    waiting = wait_state(stubs, ex.id, {"RETRYING"}, timeout=30)
    assert len(_task_run(waiting, "flaky").attempts) == 1
    # Stop the control plane while the retry is pending; start a new one on the same database
    # (and port, so the worker and the test's channel reconnect). Nothing is held in memory.
    port = int(server.address.rsplit(":", 1)[1])
    server.run(server.cp.stop(1.0))
    server.cp = ControlPlane(server.settings.model_copy(update={"port": port}))
    server.run(server.cp.start())
    final = stubs.wait(ex.id, timeout=90)
    assert state_name(final.state.current) == "SUCCESS", final
    tr = _task_run(final, "flaky")
    assert [state_name(a.state.current) for a in tr.attempts] == ["FAILED", "SUCCESS"]
    [gap] = _gaps(tr)
    assert gap >= timedelta(seconds=5)


def test_timeout_written_as_an_expression_is_rendered_and_applied(stubs):
    stubs.deploy(_flow("timeout-expr", """
inputs:
  - id: limit
    type: STRING
    defaults: PT1S
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: 60
    timeout: "{{ inputs.limit }}"
"""))
    final = _run(stubs, "timeout-expr")
    assert state_name(final.state.current) == "FAILED"
    tr = _task_run(final, "nap")
    assert [a.reason for a in tr.attempts] == ["TIMEOUT"] and "Timeout after 1" in tr.error


def test_timeout_expression_that_renders_no_duration_fails_the_task_naming_it(stubs):
    stubs.deploy(_flow("timeout-bad-expr", """
inputs:
  - id: limit
    type: STRING
    defaults: soon
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: 1
    timeout: "{{ inputs.limit }}"
"""))
    final = _run(stubs, "timeout-bad-expr")
    assert state_name(final.state.current) == "FAILED"
    tr = _task_run(final, "nap")
    assert "task 'nap' property 'timeout'" in tr.error and "'soon' is not an ISO-8601 duration" in tr.error
