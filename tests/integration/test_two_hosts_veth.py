"""Two hosts joined by a network link: the control plane (``kestrel server standalone``, on
Postgres and Redis of this host) in this network namespace, two workers in another one that the
test makes itself (``ip netns add`` + a veth pair with addresses, see ``tests/netns.py``). The
workers reach the control plane only over the veth link; every task of the flow runs on them.
Skipped, with the kernel's refusal quoted, where network namespaces cannot be made."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.chaos.stack import stack, start_worker, stop_processes, wait_all_terminal, wait_registered
from tests.netns import refusal, veth_host
from worker_sdk.client import KestrelClient

pytestmark = pytest.mark.timeout(300)

FLOW = """
id: two-hosts
namespace: tests.netns
tasks:
  - id: where
    type: io.kestra.plugin.scripts.python.Script
    script: |
      import json, socket
      probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
      probe.connect(("{near_ip}", 9))  # no packet sent: only picks the source address
      print('::' + json.dumps({{"outputs": {{"ip": probe.getsockname()[0]}}}}) + '::')
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: [1, 2, 3, 4]
    tasks:
      - id: echo
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}} via {{{{ outputs.where.vars.ip }}}}"
"""


def test_control_plane_on_one_host_workers_on_another():
    why = refusal()
    if why is not None:
        pytest.skip(f"two-host test needs network namespaces with veth: {why}")
    with veth_host("kestrel-2h") as far, stack("twohosts", {"KESTREL_POLL_WAIT_SECONDS": "5"},
                                                host=far.near_ip) as (cp, conn, workdir):
        # The far namespace has its own loopback: the control plane is only reachable over the link.
        blocked = subprocess.run([*far.prefix, sys.executable, "-c",
                                  f"import socket; socket.create_connection(('127.0.0.1', {cp.port}), timeout=2)"],
                                 capture_output=True)
        assert blocked.returncode != 0
        workers = [start_worker(cp.address, 2, workdir, f"far-{i}", prefix=far.prefix, args=["--label", "host=far"])
                   for i in range(2)]
        try:
            wait_registered(conn, 2)
            with KestrelClient(cp.address, timeout=60) as client:
                client.deploy_flow(FLOW.format(near_ip=far.near_ip))
                execution = client.start_execution("tests.netns", "two-hosts")
                states = wait_all_terminal(conn, "two-hosts", 1, 120)
                done = client.get_execution(execution.id)
            assert states == {"SUCCESS": 1}, [(t.task_id, t.state, t.error) for t in done.task_runs]
            where = next(t for t in done.task_runs if t.task_id == "where")
            assert where.outputs["vars"]["ip"] == far.far_ip
            echoes = sorted(t.outputs["value"] for t in done.task_runs if t.task_id == "echo")
            assert echoes == [f"{i} via {far.far_ip}" for i in (1, 2, 3, 4)]
            # Every attempt ran on a worker of the far host.
            hosts = conn.execute(
                """SELECT w.labels, count(*) FROM task_run_attempts a JOIN workers w ON w.id = a.worker_id
                     JOIN task_runs tr ON tr.id = a.task_run_id WHERE tr.execution_id = %s GROUP BY w.labels""",
                (execution.id,)).fetchall()
            assert [(json.loads(labels) if isinstance(labels, str) else labels, n) for labels, n in hosts] \
                == [({"host": "far"}, 5)]
        finally:
            stop_processes(workers)
