"""`kestrel flow deploy --plan`: the diff against the latest revision and the next 5 fire times of
each schedule that changes, with nothing stored."""

from __future__ import annotations

import re
import subprocess
import sys

import grpc
import pytest

from kestrel.v1 import flow_pb2
from tests.integration.rpc import connect

FLOW = """id: planned
namespace: tests.plan
tasks:
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: hi
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "{cron}"
    timezone: Europe/Paris
"""


def _plan(server, path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controlplane.cli", "flow", "deploy", "--plan", str(path),
                           "--server", server.address], capture_output=True, text=True, timeout=60)


def test_plan_shows_diff_and_fire_times_and_stores_nothing(server, tmp_path):
    path = tmp_path / "planned.yml"
    path.write_text(FLOW.format(cron="30 2 * * *"))
    new = _plan(server, path)
    assert new.returncode == 0, new.stderr
    assert "tests.plan.planned: new flow -> a new revision would be stored" in new.stdout
    assert "+  - id: t" in new.stdout
    times = re.search(r"schedule 'nightly' \(new\): next fire times (.*)", new.stdout).group(1).split(", ")
    assert len(times) == 5 and all(t.endswith(("00:30:00Z", "01:30:00Z")) for t in times)  # 02:30 Paris
    stubs = connect(server.address)
    try:
        with pytest.raises(grpc.RpcError) as missing:
            stubs.flows.GetFlow(flow_pb2.GetFlowRequest(namespace="tests.plan", id="planned"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # nothing stored
        stubs.deploy(path.read_text())
    finally:
        stubs.close()
    assert "unchanged (revision 1)" in _plan(server, path).stdout
    path.write_text(FLOW.format(cron="0 6 * * 1"))
    changed = _plan(server, path)
    assert '-    cron: "30 2 * * *"' in changed.stdout and '+    cron: "0 6 * * 1"' in changed.stdout
    assert "schedule 'nightly' (changed): next fire times" in changed.stdout
    path.write_text(FLOW.format(cron="not a cron"))
    bad = _plan(server, path)
    assert bad.returncode == 1 and "error" in bad.stdout
