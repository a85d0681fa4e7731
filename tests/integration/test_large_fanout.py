"""A fan-out larger than one advance's budget (`MAX_TASK_RUNS_PER_ADVANCE`) is created in batches
by the executor sweep: StartExecution answers at once and every task run still runs exactly once."""

from __future__ import annotations

import time

from controlplane.engine import executor
from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

BUDGET = 20  # the control plane runs in this process: a small budget keeps the test short
VALUES = 3 * BUDGET + 7


def test_a_fan_out_over_the_advance_budget_runs_completely(server, monkeypatch):
    monkeypatch.setattr(executor, "MAX_TASK_RUNS_PER_ADVANCE", BUDGET)
    stubs = connect(server.address)
    try:
        stubs.deploy(f"""
id: fanout
namespace: tests.fanout
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: "{{{{ range(1, {VALUES}) }}}}"
    concurrencyLimit: 0
    tasks:
      - id: item
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}}"
""")
        started = time.monotonic()
        execution = stubs.start("tests.fanout", "fanout")
        start_seconds = time.monotonic() - started
        first = stubs.get(execution.id)
        assert len(first.task_runs) <= BUDGET  # the rest is left to the executor sweep
        with worker_process(server.address, concurrency=16):
            final = stubs.wait(execution.id, timeout=300)
    finally:
        stubs.close()
    assert state_name(final.state.current) == "SUCCESS", start_seconds
    items = [tr for tr in final.task_runs if tr.task_id == "item"]
    assert len(items) == VALUES and len({tr.value for tr in items}) == VALUES
    assert all(len(tr.attempts) == 1 for tr in items)
