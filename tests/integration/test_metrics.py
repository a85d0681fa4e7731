"""Prometheus metrics (``--metrics-port``): scraped over HTTP after real executions.

A control plane with metrics on runs executions through a real worker process; one task run is
first claimed by a raw-stub worker that never heartbeats, so its lease expires and the reaper
re-dispatches it. The scrape must then show the queue depth, the dispatch latency histogram,
executions and workers by state, and the lease expiry.
"""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as make_settings
from tests.integration.rpc import connect, state_name

FLOW = """
id: metered
namespace: tests.metrics
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "hello {{ execution.id }}"
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "done"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(sample name, sorted labels): value}."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def own_database_url():
    """A database of its own: the gauges count every execution and worker stored."""
    from tests.conftest import fresh_database_url

    yield from fresh_database_url()


def test_metrics_endpoint_reports_queue_dispatch_executions_workers_and_lease_expiries(own_database_url):
    database_url = own_database_url
    port = _free_port()
    settings = make_settings(database_url, metrics_port=port, metrics_sample_seconds=0.3, lease_seconds=3.0)
    server = ServerThread(settings).start()
    stubs = connect(server.address)
    try:
        assert server.cp.metrics_port == port
        stubs.deploy(FLOW)
        # Nobody polls yet: the first task run waits in the queue and the gauge shows it.
        first = stubs.start("tests.metrics", "metered")
        wait_until(
            lambda: (_value(_scrape(port), "kestrel_task_queue_depth",
                            task_type="io.kestra.plugin.core.log.Log", worker_group="") or 0) >= 1,
            timeout=30, what="queue depth >= 1 for the Log task",
        )
        # A worker that claims it and then goes silent: its lease expires and the reaper counts it.
        silent = stubs.register_worker(["io.kestra.plugin.core.log.Log"])
        claimed = stubs.poll(silent, wait=10)
        assert [a.task_id for a in claimed] == ["hello"]
        wait_until(lambda: _scrape(port).get(("kestrel_lease_expiries_total", ())) == 1.0, timeout=60,
                   what="kestrel_lease_expiries_total == 1")
        # Nothing else held a lease yet, so the one expiry is the silent worker's.
        with worker_process(server.address, concurrency=2):
            others = [stubs.start("tests.metrics", "metered") for _ in range(3)]
            finals = [stubs.wait(e.id, timeout=120) for e in [first, *others]]
            assert [state_name(f.state.current) for f in finals] == ["SUCCESS"] * 4

            def settled():
                s = _scrape(port)
                return s if _value(s, "kestrel_executions", state="SUCCESS") == 4 else None

            samples = wait_until(settled, timeout=30, what="kestrel_executions{state=SUCCESS} == 4")
            # The real worker is ACTIVE; the silent raw-stub worker is ACTIVE too (never marked dead here).
            assert (_value(samples, "kestrel_workers", state="ACTIVE") or 0) >= 1
    finally:
        stubs.close()
        server.stop()

    assert _value(samples, "kestrel_executions", state="RUNNING") == 0
    assert _value(samples, "kestrel_executions", state="FAILED") == 0
    # Every queue row was claimed: no labelled queue-depth sample is left.
    assert not [k for k in samples if k[0] == "kestrel_task_queue_depth"]
    # 4 executions x 2 task runs, each claimed once, plus one re-dispatch per expired lease (the
    # silent worker's; on a very loaded machine a real worker's heartbeat may come late too).
    expiries = samples[("kestrel_lease_expiries_total", ())]
    assert expiries >= 1.0
    assert samples[("kestrel_task_runs_claimed_total", ())] == 8.0 + expiries
    # First attempts only: the 8 task runs; every observation is in the +Inf bucket and the
    # latencies are non-negative.
    assert samples[("kestrel_dispatch_latency_seconds_count", ())] == 8.0
    assert samples[("kestrel_dispatch_latency_seconds_bucket", (("le", "+Inf"),))] == 8.0
    assert samples[("kestrel_dispatch_latency_seconds_sum", ())] >= 0.0
    assert samples[("kestrel_metrics_sample_errors_total", ())] == 0.0
