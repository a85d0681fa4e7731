"""The fleet as the control plane sees it: ListWorkers, running task runs per worker, and
workers marked DEAD after ``worker_dead_after_seconds`` of silence (then re-registered)."""

from __future__ import annotations

import grpc
import pytest

from kestrel.v1 import worker_pb2
from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as make_settings
from tests.integration.rpc import connect

FLOW = """
id: nap
namespace: tests.fleet
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: 30
"""


@pytest.fixture
def server(database_url):
    srv = ServerThread(make_settings(database_url, worker_dead_after_seconds=2.0)).start()
    yield srv
    srv.stop()


def _workers(stubs, state: str = "") -> dict[str, worker_pb2.WorkerInfo]:
    response = stubs.workers.ListWorkers(worker_pb2.ListWorkersRequest(state=state), timeout=10)
    return {w.id: w for w in response.workers}


def test_silent_worker_is_marked_dead_and_comes_back_by_registering(server):
    stubs = connect(server.address)
    try:
        worker_id = stubs.register_worker(["io.kestra.plugin.core.log.Log"])
        listed = _workers(stubs)[worker_id]
        assert listed.state == "ACTIVE" and listed.hostname == "test" and listed.concurrency == 4
        assert list(listed.task_types) == ["io.kestra.plugin.core.log.Log"]
        wait_until(lambda: _workers(stubs).get(worker_id, None) and _workers(stubs)[worker_id].state == "DEAD",
                   timeout=15, what="the silent worker to be marked DEAD")
        assert worker_id in _workers(stubs, "DEAD") and worker_id not in _workers(stubs, "ACTIVE")
        with pytest.raises(grpc.RpcError) as refused:
            stubs.workers.PollTaskRuns(worker_pb2.PollTaskRunsRequest(worker_id=worker_id, max_task_runs=1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stubs.workers.RegisterWorker(worker_pb2.RegisterWorkerRequest(
            worker_id=worker_id, task_types=["io.kestra.plugin.core.log.Log"], hostname="test", sdk="test/0",
            concurrency=4), timeout=10)
        assert _workers(stubs)[worker_id].state == "ACTIVE"
    finally:
        stubs.close()


def test_a_busy_worker_process_shows_its_running_task_run(server):
    stubs = connect(server.address)
    try:
        stubs.register_worker(["io.kestrel.tests.Sleep"])
        stubs.deploy(FLOW)
        execution = stubs.start("tests.fleet", "nap")
        with worker_process(server.address, "--module", "tests.integration.tasks.slow"):
            busy = wait_until(
                lambda: [w for w in _workers(stubs, "ACTIVE").values() if w.running_task_runs == 1],
                timeout=30, what="a worker holding the task run",
            )
            assert busy[0].sdk.startswith("python/") and "io.kestrel.tests.Sleep" in busy[0].task_types
            assert busy[0].last_heartbeat_at.seconds > 0
            from kestrel.v1 import execution_pb2

            stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=execution.id), timeout=10)
            stubs.wait(execution.id, timeout=30)
    finally:
        stubs.close()


def test_bad_state_filter_is_invalid_argument(server):
    stubs = connect(server.address)
    try:
        with pytest.raises(grpc.RpcError) as bad:
            stubs.workers.ListWorkers(worker_pb2.ListWorkersRequest(state="ZOMBIE"), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        stubs.close()


def test_cli_lists_the_fleet(server):
    import subprocess
    import sys
    import threading

    stubs = connect(server.address)
    stop = threading.Event()
    poller: threading.Thread | None = None

    def keep_alive() -> None:  # the worker polls, as a live one does, while the CLI starts (2 s dead limit)
        while not stop.is_set():
            stubs.poll(worker_id, wait=0.5)

    try:
        worker_id = stubs.register_worker(["io.kestra.plugin.core.log.Log"])
        poller = threading.Thread(target=keep_alive, daemon=True)
        poller.start()
        result = subprocess.run([sys.executable, "-m", "controlplane.cli", "workers", "--server", server.address],
                                capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        if poller is not None:
            poller.join(timeout=10)
        stubs.close()
    assert result.returncode == 0, result.stderr
    assert worker_id in result.stdout and "ACTIVE" in result.stdout and "0/4" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "controlplane.cli", "workers", "--state", "zombie", "--server",
                          server.address], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "state" in bad.stderr


def test_a_live_worker_id_cannot_be_taken_over_and_names_must_be_printable(server):
    stubs = connect(server.address)
    try:
        worker_id = stubs.register_worker(["io.kestra.plugin.core.log.Log"])
        with pytest.raises(grpc.RpcError) as taken:
            stubs.workers.RegisterWorker(worker_pb2.RegisterWorkerRequest(
                worker_id=worker_id, task_types=["x"], hostname="attacker", sdk="evil/1", concurrency=1), timeout=10)
        assert taken.value.code() == grpc.StatusCode.ABORTED and "live worker on host 'test'" in taken.value.details()
        assert list(_workers(stubs)[worker_id].task_types) == ["io.kestra.plugin.core.log.Log"]  # unchanged
        stubs.register_worker(["io.kestra.plugin.core.log.Log"], worker_id=worker_id)  # the same worker again: fine
        with pytest.raises(grpc.RpcError) as escaped:
            stubs.workers.RegisterWorker(worker_pb2.RegisterWorkerRequest(
                task_types=["x"], hostname="\x1b[2J\x1b[31mEVIL", sdk="s", concurrency=1), timeout=10)
        assert escaped.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "hostname" in escaped.value.details()
    finally:
        stubs.close()


def test_a_task_run_no_worker_can_take_is_warned_about_in_its_logs(server, monkeypatch):
    from controlplane import server as server_module
    from kestrel.v1 import execution_pb2

    monkeypatch.setattr(server_module, "UNSERVED_WARNING_SECONDS", 0.5)
    stubs = connect(server.address)
    try:
        worker_id = stubs.register_worker(["io.kestrel.tests.Sleep"])  # makes the type known...
        stubs.workers.ShutdownWorker(worker_pb2.ShutdownWorkerRequest(worker_id=worker_id), timeout=10)  # ...then gone
        stubs.deploy(FLOW)
        execution = stubs.start("tests.fleet", "nap")
        warned = wait_until(
            lambda: [e.message for e in stubs.logs_stub_list(execution.id) if e.level == 4], timeout=20,
            what="the warning that no worker runs the task type",
        )
        assert warned == ["no active worker runs task type io.kestrel.tests.Sleep: the task run waits in the "
                          "queue until one registers (see `kestrel workers`)"]
        stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=execution.id), timeout=10)
    finally:
        stubs.close()
