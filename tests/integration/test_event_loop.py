"""``KESTREL_EVENT_LOOP=uvloop``: a ``kestrel server standalone`` on uvloop runs executions
end to end with real worker processes (the option ``python -m bench`` measures)."""

from __future__ import annotations

import pytest

from bench.env import control_plane, fresh_database, workers
from bench.kestrel_bench import NAMESPACE, three_task_flow
from worker_sdk.client import KestrelClient

pytest.importorskip("uvloop", reason="uvloop is not installed (it comes with the bench extra)")


def test_standalone_on_uvloop_runs_executions(tmp_path):
    with fresh_database("uvloop") as url, \
            control_plane(url, tmp_path, {"KESTREL_EVENT_LOOP": "uvloop"}) as cp, \
            workers(cp.address, url, 1, 4, None, tmp_path), KestrelClient(cp.address, timeout=30) as client:
        client.deploy_flow(three_task_flow("on-uvloop"))
        ids = [client.start_execution(NAMESPACE, "on-uvloop").id for _ in range(5)]
        for execution_id in ids:
            done = client.wait_execution(execution_id, timeout=60)
            assert done.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in done.task_runs]
        assert "event loop: uvloop" in cp.log_path.read_text()
