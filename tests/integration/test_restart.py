"""Restart, replay and labels end to end through the gRPC API with a real worker (flows modelled on
Kestra's RestartCaseTest / ExecutionControllerTest corpus flows)."""

from __future__ import annotations

import json

import grpc
import pytest

from kestrel.v1 import common_pb2, execution_pb2
from tests.integration.harness import wait_until, worker_process
from tests.integration.rpc import connect, state_name, wait_state


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    with worker_process(server.address, "--module", "tests.integration.tasks.slow", concurrency=4):
        wait_until(lambda: _deploys(s, _PROBE), timeout=30, what="the worker's custom task types")
        yield s
    s.close()


_PROBE = """
id: probe
namespace: tests.restart
tasks:
  - {id: nap, type: io.kestrel.tests.Sleep, seconds: 0}
"""


def _deploys(stubs, source: str) -> bool:
    try:
        stubs.deploy(source)
    except grpc.RpcError:
        return False
    return True


def _state(msg) -> str:
    return state_name(msg.state.current)


def _history(msg) -> list[str]:
    return [state_name(h.state) for h in msg.state.histories]


def _run(execution, task_id: str):
    return next(tr for tr in execution.task_runs if tr.task_id == task_id)


def _restart(stubs, execution_id: str):
    return stubs.executions.RestartExecution(execution_pb2.RestartExecutionRequest(id=execution_id), timeout=10).execution


def _replay(stubs, execution_id: str, task_run_id: str):
    req = execution_pb2.ReplayExecutionRequest(id=execution_id, task_run_id=task_run_id)
    return stubs.executions.ReplayExecution(req, timeout=10).execution


def _error(call, request):
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value.code(), err.value.details()


LAST_FAILED = """
id: last-failed
namespace: tests.restart
tasks:
  - id: a
    type: io.kestra.plugin.core.log.Log
    message: "{{ task.id }}"
  - id: b
    type: io.kestra.plugin.core.log.Log
    message: "{{ task.id }}"
  - id: c
    type: io.kestra.plugin.core.log.Log
    message: "{{ taskrun.attemptsCount == 1 ? 'ok' : ko }}"
  - id: d
    type: io.kestra.plugin.core.log.Log
    message: "{{ task.id }}"
"""


def test_restart_gives_the_failed_task_run_a_new_attempt_in_the_same_execution(stubs):
    stubs.deploy(LAST_FAILED)
    first = stubs.wait(stubs.start("tests.restart", "last-failed").id)
    assert _state(first) == "FAILED" and [tr.task_id for tr in first.task_runs] == ["a", "b", "c"]
    restarted = _restart(stubs, first.id)
    assert restarted.id == first.id
    assert _history(restarted)[:4] == ["CREATED", "RUNNING", "FAILED", "RESTARTED"]
    final = stubs.wait(first.id)
    assert _state(final) == "SUCCESS"
    assert [(tr.task_id, _state(tr)) for tr in final.task_runs] == [
        ("a", "SUCCESS"), ("b", "SUCCESS"), ("c", "SUCCESS"), ("d", "SUCCESS")]
    c = _run(final, "c")
    assert len(c.attempts) == 2 and [state_name(a.state.current) for a in c.attempts] == ["FAILED", "SUCCESS"]
    assert _history(c) == ["CREATED", "RUNNING", "FAILED", "RESTARTED", "RUNNING", "SUCCESS"]
    assert len(_run(final, "a").attempts) == 1  # what succeeded is not run again
    code, details = _error(stubs.executions.RestartExecution, execution_pb2.RestartExecutionRequest(id=first.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "No task found to restart" in details


def test_restart_drops_the_error_handlers_and_runs_them_again(stubs):
    stubs.deploy("""
id: always-failed
namespace: tests.restart
tasks:
  - id: failStep
    type: io.kestra.plugin.core.execution.Fail
errors:
  - id: errorHandler
    type: io.kestra.plugin.core.log.Log
    message: "failed {{ task.id }}"
""")
    first = stubs.wait(stubs.start("tests.restart", "always-failed").id)
    assert _state(first) == "FAILED" and len(first.task_runs) == 2
    restarted = _restart(stubs, first.id)
    assert [tr.task_id for tr in restarted.task_runs] == ["failStep"]
    final = stubs.wait(first.id)
    assert _state(final) == "FAILED"
    assert [tr.task_id for tr in final.task_runs] == ["failStep", "errorHandler"]
    assert len(_run(final, "failStep").attempts) == 2


def test_restart_reopens_the_flowables_above_the_failed_task(stubs):
    stubs.deploy("""
id: local-errors
namespace: tests.restart
tasks:
  - id: before
    type: io.kestra.plugin.core.log.Log
    message: before
  - id: sequential
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - id: close
        type: io.kestra.plugin.core.log.Log
        message: close
      - id: flaky
        type: io.kestra.plugin.core.log.Log
        message: "{{ taskrun.attemptsCount == 1 ? 'ok' : ko }}"
    errors:
      - id: errorHandler
        type: io.kestra.plugin.core.log.Log
        message: handled
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: after
""")
    first = stubs.wait(stubs.start("tests.restart", "local-errors").id)
    assert _state(first) == "FAILED" and len(first.task_runs) == 5
    restarted = _restart(stubs, first.id)
    assert len(restarted.task_runs) == 4
    assert _state(_run(restarted, "sequential")) == "RUNNING"
    final = stubs.wait(first.id)
    assert _state(final) == "SUCCESS"
    assert [tr.task_id for tr in final.task_runs] == ["before", "sequential", "close", "flaky", "after"]
    assert _history(_run(final, "sequential"))[-3:] == ["RESTARTED", "RUNNING", "SUCCESS"]


def test_restart_after_a_pause_does_not_pause_again(stubs):
    stubs.deploy("""
id: pause-last-failed
namespace: tests.restart
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    delay: PT0.3S
    tasks:
      - id: c
        type: io.kestra.plugin.core.log.Log
        message: "{{ taskrun.attemptsCount == 1 ? 'ok' : ko }}"
      - id: d
        type: io.kestra.plugin.core.log.Log
        message: d
""")
    first = stubs.wait(stubs.start("tests.restart", "pause-last-failed").id)
    assert _state(first) == "FAILED" and _state(_run(first, "pause")) == "FAILED"
    _restart(stubs, first.id)
    final = stubs.wait(first.id)
    assert _state(final) == "SUCCESS" and len(final.task_runs) == 3
    assert _history(_run(final, "pause")).count("PAUSED") == 1


def test_restart_after_a_kill(stubs):
    stubs.deploy("""
id: killed
namespace: tests.restart
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: "{{ taskrun.attemptsCount == 0 ? 30 : 0 }}"
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: after
""")
    ex = stubs.start("tests.restart", "killed")
    wait_until(lambda: (stubs.get(ex.id).task_runs or [None])[0] is not None
               and stubs.get(ex.id).task_runs[0].attempts, timeout=20, what="nap running")
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
    assert _state(stubs.wait(ex.id)) == "KILLED"
    _restart(stubs, ex.id)
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS" and [tr.task_id for tr in final.task_runs] == ["nap", "after"]


def test_replay_from_a_task_run_creates_a_new_execution(stubs):
    stubs.deploy("""
id: replayed
namespace: tests.restart
inputs:
  - id: who
    type: STRING
    defaults: world
tasks:
  - id: one
    type: io.kestra.plugin.core.debug.Return
    format: "1 {{ inputs.who }}"
  - id: two
    type: io.kestra.plugin.core.debug.Return
    format: "2 {{ outputs.one.value }}"
  - id: three
    type: io.kestra.plugin.core.debug.Return
    format: "3 {{ outputs.two.value }}"
""")
    first = stubs.wait(stubs.start("tests.restart", "replayed", inputs={"who": "Ada"}).id)
    assert _state(first) == "SUCCESS"
    replay = _replay(stubs, first.id, _run(first, "two").id)
    assert replay.id != first.id
    assert (replay.parent_id, replay.original_id) == (first.id, first.id)
    assert json.loads(replay.inputs_json) == {"who": "Ada"}
    final = stubs.wait(replay.id)
    assert _state(final) == "SUCCESS"
    assert [tr.task_id for tr in final.task_runs] == ["one", "two", "three"]
    assert _run(final, "one").id != _run(first, "one").id
    assert len(_run(final, "one").attempts) == 1 and _history(_run(final, "one"))[-1] == "SUCCESS"
    assert "RESTARTED" in _history(_run(final, "two"))
    assert json.loads(_run(final, "three").outputs_json) == {"value": "3 2 1 Ada"}
    assert _state(stubs.get(first.id)) == "SUCCESS"  # the original is untouched

    code, details = _error(stubs.executions.ReplayExecution,
                           execution_pb2.ReplayExecutionRequest(id=first.id, task_run_id="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "No task found" in details


def test_replay_inside_a_loop_keeps_the_earlier_iterations(stubs):
    stubs.deploy("""
id: replay-loop
namespace: tests.restart
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: ["a", "b", "c"]
    tasks:
      - id: log
        type: io.kestra.plugin.core.log.Log
        message: "{{ taskrun.value }}"
  - id: end
    type: io.kestra.plugin.core.debug.Return
    format: end
""")
    first = stubs.wait(stubs.start("tests.restart", "replay-loop").id)
    assert len(first.task_runs) == 5
    final = stubs.wait(_replay(stubs, first.id, _run(first, "end").id).id)
    assert _state(final) == "SUCCESS" and len(final.task_runs) == 5
    assert [tr.value for tr in final.task_runs if tr.task_id == "log"] == ["a", "b", "c"]


def test_set_labels_replaces_the_labels_but_keeps_system_ones(stubs):
    stubs.deploy(LAST_FAILED)
    ex = stubs.wait(stubs.start("tests.restart", "last-failed").id)
    req = execution_pb2.SetExecutionLabelsRequest(id=ex.id, labels=[common_pb2.Label(key="team", value="data")])
    updated = stubs.executions.SetExecutionLabels(req, timeout=10).execution
    assert {label.key: label.value for label in updated.labels} == {"system.correlationId": ex.id, "team": "data"}
    bad = execution_pb2.SetExecutionLabelsRequest(id=ex.id, labels=[common_pb2.Label(key="system.x", value="1")])
    code, details = _error(stubs.executions.SetExecutionLabels, bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "system.x" in details


def test_only_failed_or_killed_executions_restart_and_only_terminated_ones_replay(stubs):
    stubs.deploy("""
id: long
namespace: tests.restart
tasks:
  - id: nap
    type: io.kestrel.tests.Sleep
    seconds: 30
""")
    ex = stubs.start("tests.restart", "long")
    wait_state(stubs, ex.id, {"RUNNING"})
    code, _ = _error(stubs.executions.RestartExecution, execution_pb2.RestartExecutionRequest(id=ex.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = _error(stubs.executions.ReplayExecution,
                     execution_pb2.ReplayExecutionRequest(id=ex.id, task_run_id="x"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), timeout=10)
    code, _ = _error(stubs.executions.RestartExecution, execution_pb2.RestartExecutionRequest(id="missing"))
    assert code == grpc.StatusCode.NOT_FOUND


def _cli(server, *args: str):
    import os
    import subprocess
    import sys

    from tests.integration.harness import REPO

    env = dict(os.environ, KESTREL_SERVER=server.address)
    return subprocess.run([sys.executable, "-c", "from controlplane.cli import app; app()", *args],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)


def test_cli_resume_restart_replay_and_labels(stubs, server):
    stubs.deploy("""
id: cli-ops
namespace: tests.restart
tasks:
  - id: ask
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - id: answer
        type: INT
  - id: check
    type: io.kestra.plugin.core.log.Log
    message: "{{ outputs.ask.onResume.answer == 42 and taskrun.attemptsCount == 1 ? 'ok' : ko }}"
""")
    ex = stubs.start("tests.restart", "cli-ops")
    wait_state(stubs, ex.id, {"PAUSED"})
    bad = _cli(server, "execution", "resume", ex.id, "--input", "answer=many")
    assert bad.returncode != 0 and "answer" in bad.stdout + bad.stderr
    ok = _cli(server, "execution", "resume", ex.id, "--input", "answer=42")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(ex.id)
    assert _state(stubs.wait(ex.id)) == "FAILED"  # check fails on its first attempt
    restarted = _cli(server, "execution", "restart", ex.id)
    assert restarted.returncode == 0 and "RESTARTED" in restarted.stdout, restarted.stdout + restarted.stderr
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS"
    replayed = _cli(server, "execution", "replay", ex.id, "--task-run", _run(final, "check").id)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    new_id = replayed.stdout.split()[0]
    assert new_id != ex.id and stubs.get(new_id).parent_id == ex.id
    labels = _cli(server, "execution", "labels", ex.id, "--label", "team=ops")
    assert labels.returncode == 0 and "team=ops" in labels.stdout and f"system.correlationId={ex.id}" in labels.stdout


def test_the_labels_task_merges_labels_into_the_running_execution(stubs):
    stubs.deploy("""
id: labels-task
namespace: tests.restart
labels:
  fromFlow: flow
  overridden: by-flow
inputs:
  - id: extra
    type: JSON
tasks:
  - id: from-json
    type: io.kestra.plugin.core.execution.Labels
    labels: "{{ inputs.extra }}"
  - id: from-list
    type: io.kestra.plugin.core.execution.Labels
    labels:
      - key: "{{ 'li' ~ 'st' }}"
        value: 42
  - id: override
    type: io.kestra.plugin.core.execution.Labels
    labels:
      overridden: "{{ taskrun.id }}"
      flag: true
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ labels.list }}-{{ labels.fromJson }}"
""")
    ex = stubs.start("tests.restart", "labels-task", inputs={"extra": {"fromJson": "yes"}})
    final = stubs.wait(ex.id)
    assert _state(final) == "SUCCESS" and len(final.task_runs) == 4
    labels = {label.key: label.value for label in final.labels}
    assert labels == {"system.correlationId": ex.id, "fromFlow": "flow", "fromJson": "yes", "list": "42",
                      "overridden": _run(final, "override").id, "flag": "true"}
    assert json.loads(_run(final, "read").outputs_json) == {"value": "42-yes"}
    stubs.deploy("""
id: labels-system
namespace: tests.restart
tasks:
  - id: bad
    type: io.kestra.plugin.core.execution.Labels
    labels:
      system.correlationId: hijack
""")
    bad = stubs.wait(stubs.start("tests.restart", "labels-system").id)
    assert _state(bad) == "FAILED" and "system label 'system.correlationId' cannot be set" in bad.task_runs[0].error
