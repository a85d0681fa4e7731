"""A control-plane outage while a task is running does not make the task run again.

The worker finishes the task while the control plane is down and keeps retrying its result
report (same task token) until the lease it last knew of has expired; when the control plane is
back in time, the first attempt's result is accepted and no second attempt is dispatched.
"""

from __future__ import annotations

import socket
import time

from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as make_settings
from tests.integration.rpc import connect, state_name

FLOW = """
id: outage
namespace: tests.outage
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: 2
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "slept {{ outputs.nap.slept }}"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_result_finished_during_an_outage_is_reported_when_the_control_plane_returns(database_url):
    settings = make_settings(database_url, port=_free_port(), lease_seconds=20.0)
    server = ServerThread(settings).start()
    stubs = connect(server.address)
    try:
        stubs.register_worker(["io.kestrel.tests.Sleep"])
        stubs.deploy(FLOW)
        execution = stubs.start("tests.outage", "outage")
        with worker_process(server.address, "--module", "tests.integration.tasks.slow"):
            wait_until(
                lambda: any(tr.task_id == "nap" and tr.attempts for tr in stubs.get(execution.id).task_runs),
                what="the worker to start the task",
            )
            server.stop()
            # The task finishes ~2 s later; the worker's reports fail with UNAVAILABLE for
            # longer than its old fixed retry window (~3 s) before the control plane returns.
            time.sleep(8)
            server = ServerThread(settings).start()
            final = stubs.wait(execution.id, timeout=60)
    finally:
        stubs.close()
        server.stop()

    assert state_name(final.state.current) == "SUCCESS"
    nap = next(tr for tr in final.task_runs if tr.task_id == "nap")
    assert len(nap.attempts) == 1, [(state_name(a.state.current), a.reason) for a in nap.attempts]
    assert state_name(nap.attempts[0].state.current) == "SUCCESS"
