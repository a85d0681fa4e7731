"""Fleet checks of issue 7 item 1, through the gRPC API with real worker processes: a task whose
worker group has no live worker waits visibly (a WARN line in its execution's logs) and then
fails at its schedule-to-start limit with a message saying so (its ``errors`` branch runs); a
worker sent SIGTERM finishes its in-flight task run within the grace period, reports it, and
exits 0."""

from __future__ import annotations

import signal
import uuid

import pytest

from controlplane import server as server_module
from kestrel.v1 import worker_pb2
from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as make_settings
from tests.integration.rpc import connect, state_name

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def server(database_url):
    srv = ServerThread(make_settings(database_url, schedule_to_start_seconds=3.0)).start()
    yield srv
    srv.stop()


def test_a_task_with_no_live_worker_in_its_group_waits_visibly_then_fails_at_its_limit(server, monkeypatch):
    monkeypatch.setattr(server_module, "UNSERVED_WARNING_SECONDS", 0.5)
    group = f"gpu-{uuid.uuid4().hex[:6]}"
    flow = f"""
id: unserved
namespace: tests.fleet.limits
tasks:
  - id: far
    type: io.kestra.plugin.core.debug.Return
    format: never
    workerGroup: {{key: {group}}}
errors:
  - id: handled
    type: io.kestra.plugin.core.debug.Return
    format: "handled {{{{ errorLogs()[0].message }}}}"
"""
    stubs = connect(server.address)
    try:
        with worker_process(server.address):  # a live worker, but in the default group only
            wait_until(lambda: stubs.workers.ListWorkers(worker_pb2.ListWorkersRequest(state="ACTIVE"),
                                                        timeout=10).workers, what="a worker")
            stubs.deploy(flow)
            execution = stubs.start("tests.fleet.limits", "unserved")
            warned = wait_until(lambda: [e.message for e in stubs.logs_stub_list(execution.id) if e.level == 4],
                                timeout=30, what="the warning that no worker of the group runs the task")
            assert warned == [f"no active worker runs task type io.kestra.plugin.core.debug.Return in worker group "
                              f"'{group}': the task run waits in the queue until one registers (see `kestrel workers`)"]
            final = stubs.wait(execution.id, timeout=60)
        runs = {t.task_id: t for t in final.task_runs}
        expected = (f"no live worker in worker group '{group}' runs task type io.kestra.plugin.core.debug.Return: "
                    "the task run waited 3 s in the queue, its schedule-to-start limit (KESTREL_SCHEDULE_TO_START_SECONDS)")
        assert state_name(final.state.current) == "FAILED"
        assert state_name(runs["far"].state.current) == "FAILED"
        assert runs["far"].error.startswith(expected), runs["far"].error
        assert [state_name(a.state.current) for a in runs["far"].attempts] == ["FAILED"]
        assert state_name(runs["handled"].state.current) == "SUCCESS"
        errors = [e.message for e in stubs.logs_stub_list(execution.id) if e.level == 5]
        assert [m for m in errors if m.startswith(expected)], errors
    finally:
        stubs.close()


def test_sigterm_lets_the_running_task_finish_then_the_worker_exits(server):
    flow = """
id: drained
namespace: tests.fleet.limits
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT3S
"""
    stubs = connect(server.address)
    try:
        with worker_process(server.address, "--shutdown-grace", "60", concurrency=1) as proc:
            wait_until(lambda: stubs.workers.ListWorkers(worker_pb2.ListWorkersRequest(state="ACTIVE"),
                                                        timeout=10).workers, what="a worker")
            stubs.deploy(flow)
            execution = stubs.start("tests.fleet.limits", "drained")
            wait_until(lambda: [t for t in stubs.get(execution.id).task_runs
                                if state_name(t.state.current) == "RUNNING" and t.attempts], timeout=60,
                       what="the nap running on the worker")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
            final = stubs.get(execution.id)  # reported before the worker exited
        assert state_name(final.state.current) == "SUCCESS"
        (nap,) = final.task_runs
        assert [state_name(a.state.current) for a in nap.attempts] == ["SUCCESS"]
        workers = stubs.workers.ListWorkers(worker_pb2.ListWorkersRequest(), timeout=10).workers
        assert [w.state for w in workers if w.id == nap.attempts[0].worker_id] == ["STOPPED"]
    finally:
        stubs.close()
