"""The worker contract end to end: long-poll, leases, heartbeats, fencing, redelivery, shutdown.

The test itself plays a worker over raw gRPC where it needs to hold a token, and real worker
processes (``python -m worker_sdk``) run the rest.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import grpc
import pytest

from kestrel.v1 import common_pb2, worker_pb2
from tests.integration.harness import wait_until, worker_process
from tests.integration.rpc import connect, state_name

SLEEP_FLOW = """
id: sleepy
namespace: tests.dispatch
inputs:
  - id: seconds
    type: FLOAT
    defaults: 0.2
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: "{{ inputs.seconds }}"
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "slept {{ outputs.nap.slept }}"
"""

SLEEP_TYPE = "io.kestrel.tests.Sleep"
RETURN_TYPE = "io.kestra.plugin.core.debug.Return"


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    # Make the custom type known (as a real worker registering it would) and deploy the flow.
    s.register_worker([SLEEP_TYPE])
    s.deploy(SLEEP_FLOW)
    yield s
    s.close()


def test_long_poll_is_woken_as_soon_as_work_arrives(stubs):
    worker_id = stubs.register_worker([SLEEP_TYPE], worker_group="wake-test")
    result: dict = {}

    def poll():
        t0 = time.monotonic()
        result["assignments"] = stubs.poll(worker_id, wait=20)
        result["returned_at"] = time.monotonic()
        result["t0"] = t0

    flow = SLEEP_FLOW.replace("id: sleepy", "id: sleepy-wake").replace(
        "    seconds:", "    workerGroup:\n      key: wake-test\n    seconds:"
    )
    stubs.deploy(flow)
    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(1.0)  # the poll is now parked on the server
    started_at = time.monotonic()
    execution = stubs.start("tests.dispatch", "sleepy-wake")
    thread.join(25)
    assert result["assignments"], "the parked poll returned empty"
    a = result["assignments"][0]
    assert a.execution_id == execution.id and a.task_id == "nap" and a.attempt == 1
    assert json.loads(a.properties_json) == {"seconds": 0.2}  # rendered, typed
    assert a.idempotency_key == f"{execution.id}:{a.task_run_id}"
    # Woken by the enqueue, not by the 20 s poll timeout.
    assert result["returned_at"] - started_at < 5.0
    stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=a.task_token, outputs_json='{"slept": 0.2}'))


def test_empty_poll_returns_ok_and_unknown_worker_is_failed_precondition(stubs):
    worker_id = stubs.register_worker(["io.kestrel.tests.Nothing"])
    assert stubs.poll(worker_id, wait=0.5) == []
    with pytest.raises(grpc.RpcError) as err:
        stubs.poll("no-such-worker", wait=0.5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_sigkilled_worker_task_is_redispatched_and_late_result_is_refused(server, stubs):
    # 1. The test acts as worker A: it claims the task run, then goes silent (as if SIGKILLed).
    worker_a = stubs.register_worker([SLEEP_TYPE])
    execution = stubs.start("tests.dispatch", "sleepy", inputs={"seconds": "0.3"})
    assignments = wait_until(lambda: stubs.poll(worker_a, wait=1), what="assignment for worker A")
    old = assignments[0]
    assert old.attempt == 1
    heartbeat = stubs.workers.RecordTaskRunHeartbeat(worker_pb2.RecordTaskRunHeartbeatRequest(task_token=old.task_token))
    assert not heartbeat.cancel_requested

    # 2. A real worker process B takes it over once the lease (3 s in tests) expires.
    with worker_process(server.address, "--module", "tests.integration.tasks.slow"):
        final = stubs.wait(execution.id, timeout=60)
    assert state_name(final.state.current) == "SUCCESS", final
    nap = next(tr for tr in final.task_runs if tr.task_id == "nap")
    assert [a.attempt for a in nap.attempts] == [1, 2]
    assert nap.attempts[0].reason == "LEASE_EXPIRED"
    assert state_name(nap.attempts[0].state.current) == "FAILED"
    assert state_name(nap.attempts[1].state.current) == "SUCCESS"
    assert nap.attempts[1].worker_id != worker_a

    # 3. The late result of the dead lease is refused and changes nothing.
    for call, req in [
        (stubs.workers.CompleteTaskRun, worker_pb2.CompleteTaskRunRequest(task_token=old.task_token, outputs_json="{}")),
        (stubs.workers.FailTaskRun, worker_pb2.FailTaskRunRequest(task_token=old.task_token, error_message="late")),
        (stubs.workers.RecordTaskRunHeartbeat, worker_pb2.RecordTaskRunHeartbeatRequest(task_token=old.task_token)),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            call(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert stubs.get(execution.id) == final


def test_sigkill_of_a_real_worker_process(server, stubs):
    execution = stubs.start("tests.dispatch", "sleepy", inputs={"seconds": "20"})
    with worker_process(server.address, "--module", "tests.integration.tasks.slow") as proc:
        wait_until(
            lambda: any(tr.task_id == "nap" and len(tr.attempts) == 1 for tr in stubs.get(execution.id).task_runs),
            what="worker to start the task",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # A second worker picks the task run up after lease expiry; shorten the task by killing
    # nothing else: it sleeps 20 s again, so just check the hand-over, then kill the execution.
    with worker_process(server.address, "--module", "tests.integration.tasks.slow"):
        ex = wait_until(
            lambda: (e := stubs.get(execution.id))
            and any(tr.task_id == "nap" and len(tr.attempts) == 2 and state_name(tr.attempts[1].state.current) == "RUNNING"
                    for tr in e.task_runs) and e,
            timeout=30, what="re-dispatch to the second worker",
        )
        nap = next(tr for tr in ex.task_runs if tr.task_id == "nap")
        assert nap.attempts[0].reason == "LEASE_EXPIRED"
        from kestrel.v1 import execution_pb2

        stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=execution.id), timeout=10)
        final = stubs.wait(execution.id, timeout=30)
    assert state_name(final.state.current) == "KILLED"
    nap = next(tr for tr in final.task_runs if tr.task_id == "nap")
    assert state_name(nap.state.current) == "KILLED"
    assert not any(tr.task_id == "after" for tr in final.task_runs)


def test_duplicate_complete_is_ok_and_shutdown_requeues(stubs):
    worker_id = stubs.register_worker([SLEEP_TYPE], worker_group="dup")
    flow = SLEEP_FLOW.replace("id: sleepy", "id: sleepy-dup").replace(
        "    seconds:", "    workerGroup:\n      key: dup\n    seconds:"
    )
    stubs.deploy(flow)
    execution = stubs.start("tests.dispatch", "sleepy-dup")
    a = wait_until(lambda: stubs.poll(worker_id, wait=1), what="assignment")[0]
    # Shutdown hands it back at once (no lease wait): a new attempt is queued.
    resp = stubs.workers.ShutdownWorker(worker_pb2.ShutdownWorkerRequest(worker_id=worker_id))
    assert resp.requeued_task_runs == 1
    with pytest.raises(grpc.RpcError) as err:
        stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=a.task_token))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    worker2 = stubs.register_worker([SLEEP_TYPE], worker_group="dup")
    b = wait_until(lambda: stubs.poll(worker2, wait=1), what="re-queued assignment")[0]
    assert b.task_run_id == a.task_run_id and b.attempt == 2
    req = worker_pb2.CompleteTaskRunRequest(task_token=b.task_token, outputs_json='{"slept": 0}',
                                            state=common_pb2.STATE_SUCCESS)
    stubs.workers.CompleteTaskRun(req)
    stubs.workers.CompleteTaskRun(req)  # duplicate: OK, no effect
    ex = stubs.get(execution.id)
    nap = next(tr for tr in ex.task_runs if tr.task_id == "nap")
    assert nap.attempts[0].reason == "WORKER_SHUTDOWN"
    assert state_name(nap.state.current) == "SUCCESS"


def test_bad_tokens_are_invalid_argument(stubs):
    for token in ["", "garbage", "eyJ4IjoxfQ.bad-signature"]:
        with pytest.raises(grpc.RpcError) as err:
            stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=token), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


EAGER_FLOW = """
id: eager
namespace: tests.dispatch
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    workerGroup: {key: eager}
    seconds: 0
  - id: after
    type: io.kestra.plugin.core.debug.Return
    workerGroup: {key: eager}
    format: "after {{ outputs.nap.slept }}"
"""


def test_complete_hands_the_next_task_run_to_the_same_worker_eagerly(stubs):
    """CompleteTaskRun with ``max_next_task_runs``: the task run the result queued comes back in
    the response (claimed in the result's transaction, never left on the queue for a poll); a
    repeat of the result claims nothing; out-of-range values are refused."""
    worker_id = stubs.register_worker([SLEEP_TYPE, RETURN_TYPE], worker_group="eager")
    stubs.deploy(EAGER_FLOW)
    execution = stubs.start("tests.dispatch", "eager")
    nap = wait_until(lambda: stubs.poll(worker_id, wait=1), what="the first task run")[0]
    assert nap.task_id == "nap"
    done = worker_pb2.CompleteTaskRunRequest(task_token=nap.task_token, outputs_json='{"slept": 0}',
                                             state=common_pb2.STATE_SUCCESS, max_next_task_runs=1)
    response = stubs.workers.CompleteTaskRun(done)
    assert [(a.task_id, a.execution_id, a.attempt) for a in response.assignments] == [("after", execution.id, 1)]
    after = response.assignments[0]
    assert json.loads(after.properties_json) == {"format": "after 0"}
    assert stubs.workers.CompleteTaskRun(done).assignments == []  # a repeat: recorded once, nothing claimed
    assert stubs.poll(worker_id, wait=1) == []  # it was never left on the queue
    with pytest.raises(grpc.RpcError) as err:
        stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(
            task_token=after.task_token, outputs_json='{"value": "x"}', max_next_task_runs=1001))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_next_task_runs" in err.value.details()
    last = stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(
        task_token=after.task_token, outputs_json='{"value": "after 0"}', max_next_task_runs=1))
    assert list(last.assignments) == []
    assert state_name(stubs.wait(execution.id, timeout=30).state.current) == "SUCCESS"
