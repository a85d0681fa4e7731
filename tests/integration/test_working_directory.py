"""WorkingDirectory through the gRPC API with two real worker processes: every child of a group
runs on one worker in one directory (a file written by one child is read by the next), the
``inputFiles``/``outputFiles`` of the group, cleanup of the directory, a worker that does not
keep directories is never offered a group, and a worker killed in the middle of a group makes
the group start again on the other worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kestrel.v1 import worker_pb2
from tests.conftest import fresh_database_url
from tests.integration import rpc
from tests.integration.harness import REPO, ServerThread, wait_until
from tests.integration.harness import test_settings as settings_for
from tests.integration.storage_support import by_task, run
from worker_sdk.client import KestrelClient


class Stack:
    """A control plane and two worker processes in the default group, each with its own TMPDIR
    (where it keeps its working directories)."""

    def __init__(self, server: ServerThread, client: KestrelClient, procs: list[subprocess.Popen], homes: list[Path]):
        self.server, self.client, self.procs, self.homes = server, client, procs, homes

    def worker_of(self, worker_id: str) -> int:
        """Index of the worker process with this id (ids are ``<host>-<pid>-<random>``)."""
        return next(i for i, p in enumerate(self.procs) if f"-{p.pid}-" in worker_id)

    def group_dirs(self) -> list[Path]:
        return [d for home in self.homes for d in (home / "tmp").glob("kestrel-wd-*")]


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workdir")
    server = ServerThread(settings_for(database_url, data_dir=tmp / "storage", worker_dead_after_seconds=4.0)).start()
    procs, homes = [], []
    try:
        for n in range(2):
            home = tmp / f"worker-{n}"
            (home / "tmp").mkdir(parents=True)
            env = dict(os.environ, TMPDIR=str(home / "tmp"),
                       PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "worker_sdk", "--server", server.address, "--concurrency", "4"],
                env=env, cwd=home))
            homes.append(home)
        client = KestrelClient(server.address, timeout=30)
        wait_until(lambda: len([w for w in client.list_workers() if w.state == "ACTIVE"]) == 2, timeout=60,
                   what="two workers")
        yield Stack(server, client, procs, homes)
        client.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()


SHARED = """
id: shared
namespace: tests.workdir
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    inputFiles:
      given.txt: "from inputFiles {{ execution.id }}"
    outputFiles:
      - "*.out"
    tasks:
      - id: write
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - sleep 1
          - echo "written by write" > note.txt
      - id: read
        type: io.kestra.plugin.scripts.python.Script
        script: |
          import json
          note = open("note.txt").read().strip()
          given = open("given.txt").read().strip()
          open("result.out", "w").write(note + " | " + given)
          print("::" + json.dumps({"outputs": {"note": note, "given": given}}) + "::")
      - id: export
        type: io.kestra.plugin.core.storage.LocalFiles
        outputs:
          - note.txt
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.wd.outputFiles['result.out'] }} {{ outputs.read.vars.note }}"
"""


def _worker_ids(execution, task_ids) -> set[str]:
    return {a.worker_id for tr in execution.task_runs if tr.task_id in task_ids for a in tr.attempts}


def test_children_share_one_directory_on_one_worker(stack, tmp_path):
    client = stack.client
    flow = client.deploy_flow(SHARED).flow
    # Six at once, each holding a slot of its worker for a second in `write`: a worker runs at most
    # 4 task runs at once, so both workers take groups, and without affinity some child would land
    # on the other worker.
    started = [client.start_execution(flow.namespace, flow.id) for _ in range(6)]
    finals = [client.wait_execution(e.id, timeout=120) for e in started]
    used = set()
    for execution in finals:
        assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
        tasks = by_task(execution)
        assert [tr.task_id for tr in execution.task_runs] == ["wd", "write", "read", "export", "after"]
        workers = _worker_ids(execution, {"write", "read", "export"})
        assert len(workers) == 1, workers
        used |= workers
        assert tasks["read"].outputs["vars"] == {"note": "written by write",
                                                 "given": f"from inputFiles {execution.id}"}
        out_uri = tasks["wd"].outputs["outputFiles"]["result.out"]
        assert tasks["after"].outputs["value"] == f"{out_uri} written by write"
        target = tmp_path / f"{execution.id}.out"
        client.download_file(out_uri, target)
        assert target.read_text() == f"written by write | from inputFiles {execution.id}"
        note_uri = tasks["export"].outputs["uris"]["note.txt"]
        client.download_file(note_uri, tmp_path / "note.txt")
        assert (tmp_path / "note.txt").read_text() == "written by write\n"
    assert len(used) == 2, "both workers took groups"  # the groups spread, each stayed on one worker
    # The directories are gone once their groups ended.
    wait_until(lambda: not stack.group_dirs(), timeout=30, what="working directories removed")


def test_a_failing_child_runs_the_errors_and_ends_failed(stack):
    execution = run(stack.client, """
id: failing
namespace: tests.workdir
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - id: write
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo x > f.txt"]
      - id: boom
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["test ! -f f.txt"]
      - id: never
        type: io.kestra.plugin.core.debug.Return
        format: never
    errors:
      - id: handler
        type: io.kestra.plugin.core.debug.Return
        format: "handled"
""", timeout=120)
    assert execution.state.current.value == "FAILED"
    tasks = by_task(execution)
    assert [tr.task_id for tr in execution.task_runs] == ["wd", "write", "boom", "handler"]
    assert tasks["boom"].state.current.value == "FAILED"  # f.txt was there: same directory
    assert tasks["handler"].state.current.value == "SUCCESS"
    wait_until(lambda: not stack.group_dirs(), timeout=30, what="working directories removed")


def test_a_worker_without_directories_is_never_offered_a_group(stack):
    """A worker that does not list the WorkingDirectory type (e.g. the Node SDK) polls while a
    group child waits: it gets nothing, and a Python worker runs the group."""
    stubs = rpc.connect(stack.server.address)
    try:
        plain = stubs.register_worker(["io.kestra.plugin.core.debug.Return"])
        flow = stubs.deploy("""
id: plain
namespace: tests.workdir
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - id: r1
        type: io.kestra.plugin.core.debug.Return
        format: one
      - id: r2
        type: io.kestra.plugin.core.debug.Return
        format: two
""")
        offered = []
        for _ in range(3):
            execution = stubs.start(flow.namespace, flow.id)
            while rpc.state_name(stubs.get(execution.id).state.current) not in ("SUCCESS", "FAILED"):
                offered += stubs.poll(plain, wait=0.5, max_task_runs=4)
            assert rpc.state_name(stubs.get(execution.id).state.current) == "SUCCESS"
        assert offered == []
    finally:
        stubs.close()


def test_restarting_a_failed_execution_runs_the_whole_group_again(stack, tmp_path):
    """The failed child's directory is gone after the failure, so a restart recreates the
    WorkingDirectory: every child runs again, in a new directory, on one worker."""
    client = stack.client
    flow = client.deploy_flow("""
id: restarted
namespace: tests.workdir
inputs:
  - id: marker
    type: STRING
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - id: write
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo again >> runs.txt"]
      - id: check
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - test "$(cat runs.txt)" = again
          - if [ ! -f "{{ inputs.marker }}" ]; then touch "{{ inputs.marker }}"; exit 3; fi
""").flow
    execution = client.start_execution(flow.namespace, flow.id, inputs={"marker": str(tmp_path / "failed-once")})
    failed = client.wait_execution(execution.id, timeout=120)
    assert failed.state.current.value == "FAILED"
    first_wd = by_task(failed)["wd"].id
    client.restart_execution(execution.id)
    final = client.wait_execution(execution.id, timeout=120)
    assert final.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in final.task_runs]
    assert [tr.task_id for tr in final.task_runs] == ["wd", "write", "check"]
    assert by_task(final)["wd"].id != first_wd  # a new group, a new directory ("runs.txt" has 1 line)
    assert len(_worker_ids(final, {"write", "check"})) == 1


def test_a_child_waiting_for_a_vanished_worker_restarts_the_group(stack):
    """The group's worker completes child 1 and goes silent: child 2 may only go to it, so once
    the worker counts as gone (4 s here) the reaper starts the group again for any worker, and
    the next worker gets a new directory key."""
    stubs = rpc.connect(stack.server.address)
    types = ["io.kestra.plugin.core.debug.Return", "io.kestra.plugin.core.flow.WorkingDirectory"]
    try:
        first = stubs.register_worker(types, worker_group="raw")
        flow = stubs.deploy("""
id: stranded
namespace: tests.workdir
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    workerGroup: {key: raw}
    tasks:
      - {id: r1, type: io.kestra.plugin.core.debug.Return, format: one}
      - {id: r2, type: io.kestra.plugin.core.debug.Return, format: two}
""")
        execution = stubs.start(flow.namespace, flow.id)
        [one] = wait_until(lambda: stubs.poll(first, wait=1), timeout=30, what="child 1 for the first worker")
        assert one.task_id == "r1" and one.working_directory.id and not one.working_directory.last
        stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=one.task_token,
                                                                           outputs_json='{"value": "one"}'))
        # The first worker never polls again: r2 waits for it until it counts as gone.
        wait_until(lambda: any("is gone (stopped or silent) while task 'r2' waited for it" in e.message
                               for e in stubs.logs_stub_list(execution.id)), timeout=60, what="the group restart")
        second = stubs.register_worker(types, worker_group="raw")
        seen = []
        for task_id in ("r1", "r2"):
            [a] = wait_until(lambda: stubs.poll(second, wait=1), timeout=30, what=f"{task_id} for the second worker")
            assert a.task_id == task_id
            seen.append(a.working_directory)
            stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=a.task_token))
        assert seen[0].id == seen[1].id == f"{one.working_directory.id}.r1"  # a new directory key
        assert [g.last for g in seen] == [False, True]
        final = rpc.wait_state(stubs, execution.id, {"SUCCESS", "FAILED"}, timeout=30)
        assert rpc.state_name(final.state.current) == "SUCCESS"
        assert [tr.task_id for tr in final.task_runs] == ["wd", "r1", "r2"]
        assert {a.worker_id for tr in final.task_runs for a in tr.attempts} == {second}
    finally:
        stubs.close()


KILLED = """
id: killed
namespace: tests.workdir
inputs:
  - id: marker
    type: STRING
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - id: write
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo first > first.txt"]
      - id: slow
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - test -f first.txt
          - if [ ! -f "{{ inputs.marker }}" ]; then touch "{{ inputs.marker }}"; sleep 120; fi
      - id: read
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["cat first.txt"]
"""


def test_worker_killed_mid_group_restarts_the_group_on_the_other_worker(stack, tmp_path):
    """Documented behaviour (engine/groups.py): the lost worker's directory is gone, so the whole
    WorkingDirectory starts again from its first task on the other worker; its log says why."""
    client = stack.client
    flow = client.deploy_flow(KILLED).flow
    marker = tmp_path / "slow-started"
    execution = client.start_execution(flow.namespace, flow.id, inputs={"marker": str(marker)})

    def slow_running():
        runs = client.get_execution(execution.id).task_runs
        slow = next((tr for tr in runs if tr.task_id == "slow" and tr.attempts), None)
        return slow if slow is not None and marker.exists() else None

    slow = wait_until(slow_running, timeout=60, what="the slow child to run")
    first_worker = slow.attempts[0].worker_id
    victim = stack.procs[stack.worker_of(first_worker)]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    final = client.wait_execution(execution.id, timeout=120)
    assert final.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in final.task_runs]
    assert [tr.task_id for tr in final.task_runs] == ["wd", "write", "slow", "read"]
    workers = _worker_ids(final, {"write", "slow", "read"})
    assert len(workers) == 1 and first_worker not in workers
    lines = [e.message for e in client.list_logs(execution.id) if e.task_id == "wd"]
    assert any(f"worker {first_worker} lost (LEASE_EXPIRED) while running task 'slow'" in m
               and "starts again from its first task" in m for m in lines), lines


@pytest.fixture
def own_database():
    """A database of its own: the module's ``stack`` server (max_redeliveries 5, two real
    workers) shares the session database and would restart the group and run it to SUCCESS."""
    gen = fresh_database_url()
    yield next(gen)
    gen.close()


def test_past_the_restart_limit_the_lost_child_fails_saying_why(own_database, tmp_path):
    """With ``max_redeliveries`` 0 a group may not start again: the child whose worker was lost
    fails with the reason, and so do the WorkingDirectory and the execution (no hang)."""
    server = ServerThread(settings_for(own_database, data_dir=tmp_path / "storage", max_redeliveries=0)).start()
    stubs = rpc.connect(server.address)
    try:
        silent = stubs.register_worker(["io.kestra.plugin.core.debug.Return",
                                        "io.kestra.plugin.core.flow.WorkingDirectory"])
        flow = stubs.deploy("""
id: limit
namespace: tests.workdir
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - {id: r1, type: io.kestra.plugin.core.debug.Return, format: one}
""")
        execution = stubs.start(flow.namespace, flow.id)
        wait_until(lambda: stubs.poll(silent, wait=1), timeout=30, what="the child for the silent worker")
        # No heartbeat, no result: the lease (3 s) expires and the group may not restart.
        final = rpc.wait_state(stubs, execution.id, {"SUCCESS", "FAILED"}, timeout=60)
        assert rpc.state_name(final.state.current) == "FAILED"
        r1 = next(tr for tr in final.task_runs if tr.task_id == "r1")
        assert f"WorkingDirectory 'wd': worker {silent} lost (LEASE_EXPIRED) while running task 'r1'" in r1.error
        assert "already started again 0 time(s) (the limit), so it fails" in r1.error
    finally:
        stubs.close()
        server.stop()
