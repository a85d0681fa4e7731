"""Flow ``concurrency`` limits end to end through the gRPC API with real workers.

The burst test is the issue's acceptance: 50 executions of a flow with ``limit: 1`` started at
the same moment never have more than one RUNNING (a thread samples the executions table
directly while they run) and all 50 finish, in creation order.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import sqlalchemy as sa

from kestrel.v1 import execution_pb2
from tests.integration.harness import wait_until, worker_process
from tests.integration.rpc import connect, state_name, wait_state


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    with worker_process(server.address, "--module", "tests.integration.tasks.slow", concurrency=8), \
            worker_process(server.address, "--module", "tests.integration.tasks.slow", concurrency=8):
        wait_until(lambda: _deploys(s, _PROBE), timeout=30, what="the workers' custom task types")
        yield s
    s.close()


_PROBE = """
id: probe
namespace: tests.concurrency
tasks:
  - {id: nap, type: io.kestrel.tests.Sleep, seconds: 0}
"""


def _deploys(stubs, source: str) -> bool:
    try:
        stubs.deploy(source)
    except grpc.RpcError:
        return False
    return True


def _flow(flow_id: str, behavior: str, seconds: float, limit: int = 1) -> str:
    return f"""
id: {flow_id}
namespace: tests.concurrency
concurrency:
  limit: {limit}
  behavior: {behavior}
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: {seconds}
"""


def _history(execution) -> list[str]:
    return [state_name(h.state) for h in execution.state.histories]


class _Sampler(threading.Thread):
    """Counts RUNNING executions of one flow in Postgres as fast as it can until stopped."""

    def __init__(self, database_url: str, flow_id: str) -> None:
        super().__init__(daemon=True)
        self._engine = sa.create_engine(database_url)
        self._flow_id = flow_id
        self.stop = threading.Event()
        self.samples = 0
        self.max_running = 0
        self.max_slots = 0

    def run(self) -> None:
        query = sa.text(
            "SELECT count(*) FILTER (WHERE state = 'RUNNING'), count(*) FILTER (WHERE concurrency_slot) "
            "FROM executions WHERE namespace = 'tests.concurrency' AND flow_id = :flow"
        )
        with self._engine.connect() as conn:
            while not self.stop.is_set():
                running, slots = conn.execute(query, {"flow": self._flow_id}).one()
                conn.rollback()
                self.samples += 1
                self.max_running = max(self.max_running, running)
                self.max_slots = max(self.max_slots, slots)
        self._engine.dispose()


def test_fifty_simultaneous_starts_with_limit_one_run_one_at_a_time_in_order(stubs, database_url):
    stubs.deploy(_flow("burst", "QUEUE", 0.05))
    sampler = _Sampler(database_url, "burst")
    sampler.start()
    barrier = threading.Barrier(50)

    def start(_: int) -> str:
        barrier.wait()
        return stubs.start("tests.concurrency", "burst").id

    with ThreadPoolExecutor(max_workers=50) as pool:
        ids = list(pool.map(start, range(50)))
    finals = [stubs.wait(execution_id, timeout=180) for execution_id in ids]
    sampler.stop.set()
    sampler.join(10)
    print(f"\nconcurrency burst: {sampler.samples} samples, at most {sampler.max_running} RUNNING, "
          f"at most {sampler.max_slots} slot(s) held")
    assert sampler.samples > 50
    assert sampler.max_running == 1 and sampler.max_slots == 1
    assert [state_name(f.state.current) for f in finals] == ["SUCCESS"] * 50
    queued = [f for f in finals if "QUEUED" in _history(f)]
    assert len(queued) >= 40  # nearly all waited for the slot
    assert all(_history(f) == ["CREATED", "QUEUED", "RUNNING", "SUCCESS"] for f in queued)
    # Queued executions start in creation order: of two executions waiting in the queue at the
    # same time, the older one starts first. (One created earlier but still committing when the
    # slot was handed on joins the queue later; executions that never queued took a free slot.)
    def at(f, state: str):
        return next(h.date.ToDatetime() for h in f.state.histories if state_name(h.state) == state)

    by_creation = sorted(queued, key=lambda f: (f.state.histories[0].date.ToDatetime(), f.id))
    inversions = [
        (older.id, newer.id)
        for i, older in enumerate(by_creation)
        for newer in by_creation[i + 1:]
        if at(older, "QUEUED") < at(newer, "RUNNING") and at(older, "RUNNING") > at(newer, "RUNNING")
    ]
    assert inversions == []
    # Every slot is free again.
    with sa.create_engine(database_url).connect() as conn:
        running = conn.execute(sa.text(
            "SELECT running FROM flow_concurrency WHERE namespace = 'tests.concurrency' AND flow_id = 'burst'"
        )).scalar_one()
    assert running == 0


@pytest.mark.parametrize(("behavior", "second_state"), [("CANCEL", "CANCELLED"), ("FAIL", "FAILED")])
def test_cancel_and_fail_behaviors_end_the_extra_execution_at_once(stubs, behavior, second_state):
    flow_id = f"limit-{behavior.lower()}"
    stubs.deploy(_flow(flow_id, behavior, 2))
    first = stubs.start("tests.concurrency", flow_id)
    wait_state(stubs, first.id, {"RUNNING"})
    second = stubs.wait(stubs.start("tests.concurrency", flow_id).id, timeout=10)
    assert state_name(second.state.current) == second_state
    assert _history(second) == ["CREATED", second_state]
    assert len(second.task_runs) == 0
    if behavior == "FAIL":
        assert "concurrency limit of 1 reached" in second.error
    assert state_name(stubs.wait(first.id).state.current) == "SUCCESS"


def test_a_killed_execution_frees_exactly_one_slot_and_a_killed_queued_one_none(stubs):
    stubs.deploy(_flow("limit-two", "QUEUE", 30, limit=2))
    ids = [stubs.start("tests.concurrency", "limit-two").id for _ in range(5)]
    wait_state(stubs, ids[1], {"RUNNING"})
    assert [state_name(stubs.get(i).state.current) for i in ids[2:]] == ["QUEUED"] * 3
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ids[3]), timeout=10)  # queued
    assert state_name(stubs.wait(ids[3], timeout=10).state.current) == "KILLED"
    assert state_name(stubs.get(ids[2]).state.current) == "QUEUED"  # killing a queued one frees nothing
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ids[0]), timeout=10)
    assert state_name(stubs.wait(ids[0], timeout=10).state.current) == "KILLED"
    wait_state(stubs, ids[2], {"RUNNING"})  # the oldest queued one took the freed slot
    assert state_name(stubs.get(ids[4]).state.current) == "QUEUED"  # and only one did
    for execution_id in (ids[1], ids[2], ids[4]):
        stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=execution_id), timeout=10)
    assert [state_name(stubs.wait(i, timeout=20).state.current) for i in ids] == ["KILLED"] * 5


def test_a_paused_execution_keeps_its_slot(stubs):
    stubs.deploy("""
id: limit-pause
namespace: tests.concurrency
concurrency:
  limit: 1
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    delay: PT1S
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: after
""")
    first = stubs.start("tests.concurrency", "limit-pause")
    wait_state(stubs, first.id, {"PAUSED"})
    second = stubs.start("tests.concurrency", "limit-pause")
    assert state_name(stubs.get(second.id).state.current) == "QUEUED"
    finals = [stubs.wait(first.id), stubs.wait(second.id)]
    assert [state_name(f.state.current) for f in finals] == ["SUCCESS", "SUCCESS"]
    assert _history(finals[1])[:3] == ["CREATED", "QUEUED", "RUNNING"]


def test_a_limit_below_one_or_an_unknown_behavior_is_refused(stubs):
    for bad, needle in (("limit: 0", "'limit' must be an integer > 0"), ("limit: 1\n  behavior: WAIT", "behavior")):
        with pytest.raises(grpc.RpcError) as err:
            stubs.deploy(f"id: bad\nnamespace: tests.concurrency\nconcurrency:\n  {bad}\n"
                         "tasks:\n  - {id: a, type: io.kestra.plugin.core.log.Log, message: x}\n")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()
