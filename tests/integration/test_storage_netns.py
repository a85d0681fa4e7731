"""Two workers on two "hosts": one in a network namespace of its own (made with ``ip netns``),
which reaches the control plane only through a relay (its loopback → a unix socket → the
control plane's loopback), each in its own working directory. A file written by a task on one is
read by a task on the other. Skipped where ``ip netns`` is not allowed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.integration.harness import REPO, ServerThread
from tests.integration.harness import test_settings as settings_for_test
from tests.integration.storage_support import by_task, run, wait_for_workers
from worker_sdk.client import KestrelClient


def _netns_available(name: str) -> bool:
    if os.geteuid() != 0:
        return False
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True)
    return made.returncode == 0


@pytest.fixture
def far_stack(database_url, tmp_path):
    name = f"kestrel-test-{uuid.uuid4().hex[:6]}"
    if not _netns_available(name):
        pytest.skip("ip netns is not available here (needs root and network namespaces)")
    procs: list[subprocess.Popen] = []
    server = None
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        server = ServerThread(settings_for_test(database_url, data_dir=tmp_path / "storage")).start()
        port = server.address.rsplit(":", 1)[1]
        sock = str(tmp_path / "cp.sock")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        relay = [sys.executable, "-m", "tests.integration.netns_relay"]
        near_relay = subprocess.Popen([*relay, "unix2tcp", sock, port], env=env, cwd=REPO, stdout=subprocess.PIPE)
        procs.append(near_relay)
        assert near_relay.stdout.readline().strip() == b"ready"
        far_relay = subprocess.Popen(["ip", "netns", "exec", name, *relay, "tcp2unix", "16570", sock], env=env,
                                     cwd=REPO, stdout=subprocess.PIPE)
        procs.append(far_relay)
        assert far_relay.stdout.readline().strip() == b"ready"
        for label, prefix, server_address, group in (("near", [], server.address, ""),
                                                     ("far", ["ip", "netns", "exec", name], "127.0.0.1:16570", "far")):
            home = tmp_path / label
            (home / "tmp").mkdir(parents=True)
            procs.append(subprocess.Popen(
                [*prefix, sys.executable, "-m", "worker_sdk", "--server", server_address, "--concurrency", "2",
                 "--worker-group", group],
                env=dict(env, TMPDIR=str(home / "tmp")), cwd=home))
        client = KestrelClient(server.address, timeout=30)
        yield name, port, client
        client.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if server is not None:
            server.stop()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


FLOW = """
id: far
namespace: tests.netns
tasks:
  - id: near
    type: io.kestra.plugin.scripts.shell.Commands
    outputFiles: [data.txt]
    commands: ["echo written-near > data.txt"]
  - id: far
    type: io.kestra.plugin.scripts.python.Script
    workerGroup: {key: far}
    inputFiles: {in.txt: "{{ outputs.near.outputFiles['data.txt'] }}"}
    outputFiles: [back.txt]
    script: |
      import os
      text = open("in.txt").read().strip()
      open("back.txt", "w").write(text + " read-far")
      print('::{"outputs": {"text": "%s", "cwd": "%s"}}::' % (text, os.getcwd()))
  - id: check
    type: io.kestra.plugin.core.debug.Return
    format: "{{ read(outputs.far.outputFiles['back.txt']) }}"
"""


def test_a_file_crosses_network_namespaces(far_stack):
    name, port, client = far_stack
    probe = subprocess.run(
        ["ip", "netns", "exec", name, sys.executable, "-c",
         f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"], capture_output=True)
    assert probe.returncode != 0  # the far worker cannot reach the control plane's port directly
    wait_for_workers(client, count=1)
    execution = run(client, FLOW, timeout=90)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    assert tasks["far"].outputs["vars"]["text"] == "written-near"
    assert "/far/" in tasks["far"].outputs["vars"]["cwd"]
    assert tasks["check"].outputs["value"] == "written-near read-far"
