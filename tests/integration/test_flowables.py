"""Flowable tasks end to end: deployed and run through the gRPC API with a real worker process.

Each test deploys a flow, starts it, waits for the execution to end and checks the task runs
(states, loop values, outputs) and, where it matters, the order and overlap of the task runs
(from their state histories). Flows use the built-in Log/Return/Fail tasks and the test-only
``io.kestrel.tests.Sleep`` (tests/integration/tasks/slow.py).
"""

from __future__ import annotations

import json
import time

import grpc
import pytest

from kestrel.v1 import common_pb2, execution_pb2, flow_pb2
from tests.integration.harness import wait_until, worker_process
from tests.integration.rpc import connect, state_name


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    with worker_process(server.address, "--module", "tests.integration.tasks.slow", concurrency=8):
        wait_until(lambda: _deploys(s, _PROBE), timeout=30, what="the worker's custom task types")
        yield s
    s.close()


_PROBE = """
id: probe
namespace: tests.flowables
tasks:
  - {id: nap, type: io.kestrel.tests.Sleep, seconds: 0}
"""


def _deploys(stubs, source: str) -> bool:
    try:
        stubs.deploy(source)
    except grpc.RpcError:
        return False
    return True


def _run(stubs, source: str, inputs: dict | None = None, timeout: float = 60):
    flow = stubs.deploy(source)
    return stubs.wait(stubs.start(flow.namespace, flow.id, inputs=inputs).id, timeout=timeout)


def _state(msg) -> str:
    return state_name(msg.state.current)


def _runs(execution) -> list[tuple[str, str, str]]:
    """(task id, loop value, state) of every task run, creation order."""
    return [(tr.task_id, tr.value, _state(tr)) for tr in execution.task_runs]


def _outputs(execution, task_id: str, value: str = "") -> dict:
    for tr in execution.task_runs:
        if tr.task_id == task_id and tr.value == value:
            return json.loads(tr.outputs_json) if tr.outputs_json else {}
    raise KeyError((task_id, value))


def _window(tr) -> tuple[float, float]:
    """When a task run was RUNNING: (first RUNNING, terminal) as POSIX seconds."""
    stamps = {state_name(h.state): h.date.ToDatetime().timestamp() for h in tr.state.histories}
    return stamps["RUNNING"], max(h.date.ToDatetime().timestamp() for h in tr.state.histories)


def _max_overlap(runs) -> int:
    """The largest number of the given task runs RUNNING at the same moment."""
    events = sorted(
        [(start, 1) for start, _ in map(_window, runs)] + [(end, -1) for _, end in map(_window, runs)],
        key=lambda e: (e[0], e[1]),
    )
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_parallel_runs_children_together_within_concurrent(stubs):
    final = _run(stubs, """
id: parallel
namespace: tests.flowables
tasks:
  - id: par
    type: io.kestra.plugin.core.flow.Parallel
    concurrent: 2
    tasks:
      - {id: s1, type: io.kestrel.tests.Sleep, seconds: 0.6}
      - {id: s2, type: io.kestrel.tests.Sleep, seconds: 0.6}
      - {id: s3, type: io.kestrel.tests.Sleep, seconds: 0.6}
      - {id: s4, type: io.kestrel.tests.Sleep, seconds: 0.6}
  - id: last
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.s1.slept }}"
""")
    assert _state(final) == "SUCCESS"
    assert [r[0] for r in _runs(final)] == ["par", "s1", "s2", "s3", "s4", "last"]
    sleeps = [tr for tr in final.task_runs if tr.task_id.startswith("s")]
    assert _max_overlap(sleeps) == 2
    assert _window(final.task_runs[-1])[0] >= max(_window(tr)[1] for tr in sleeps)
    assert _outputs(final, "last") == {"value": "0.6"}


def test_if_and_switch_choose_their_branch_and_expose_outputs(stubs):
    source = """
id: choose
namespace: tests.flowables
inputs:
  - {id: flag, type: BOOLEAN}
  - {id: kind, type: STRING}
tasks:
  - id: if
    type: io.kestra.plugin.core.flow.If
    condition: "{{ inputs.flag }}"
    then:
      - {id: yes, type: io.kestra.plugin.core.debug.Return, format: "then {{ parent.outputs.evaluationResult }}"}
    else:
      - {id: no, type: io.kestra.plugin.core.debug.Return, format: "else"}
  - id: switch
    type: io.kestra.plugin.core.flow.Switch
    value: "{{ inputs.kind }}"
    cases:
      A:
        - {id: case-a, type: io.kestra.plugin.core.log.Log, message: a}
      1:
        - {id: case-1, type: io.kestra.plugin.core.log.Log, message: "1"}
    defaults:
      - {id: other, type: io.kestra.plugin.core.log.Log, message: other}
"""
    final = _run(stubs, source, {"flag": "true", "kind": "1"})
    assert _state(final) == "SUCCESS"
    assert [r[0] for r in _runs(final)] == ["if", "yes", "switch", "case-1"]
    assert _outputs(final, "if") == {"evaluationResult": True}
    assert _outputs(final, "yes") == {"value": "then true"}
    assert _outputs(final, "switch") == {"value": "1", "defaults": False}
    final = _run(stubs, source, {"flag": "false", "kind": "zzz"})
    assert [r[0] for r in _runs(final)] == ["if", "no", "switch", "other"]
    assert _outputs(final, "switch") == {"value": "zzz", "defaults": True}


def test_switch_without_match_or_defaults_fails_with_a_logged_reason(stubs):
    final = _run(stubs, """
id: switch-nomatch
namespace: tests.flowables
tasks:
  - id: switch
    type: io.kestra.plugin.core.flow.Switch
    value: nope
    cases:
      A:
        - {id: a, type: io.kestra.plugin.core.log.Log, message: a}
  - {id: never, type: io.kestra.plugin.core.log.Log, message: x}
""")
    assert _state(final) == "FAILED"
    assert _runs(final) == [("switch", "", "FAILED")]
    assert "no case matches value 'nope'" in final.task_runs[0].error
    assert any("no case matches" in m for m in _error_logs(stubs, final.id))


def _error_logs(stubs, execution_id: str) -> list[str]:
    """Messages of the execution's ERROR log lines."""
    return [e.message for e in stubs.logs_stub_list(execution_id) if e.level == common_pb2.LOG_LEVEL_ERROR]


def test_foreach_sliding_window_loop_values_and_outputs_by_value(stubs):
    final = _run(stubs, """
id: foreach
namespace: tests.flowables
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: ["a", "b", "c", "d"]
    concurrencyLimit: 2
    tasks:
      - {id: nap, type: io.kestrel.tests.Sleep, seconds: "{{ taskrun.value == 'a' ? 6 : 0.3 }}"}
      - {id: ret, type: io.kestra.plugin.core.debug.Return, format: "{{ taskrun.value }}!"}
  - id: all
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.ret.a.value }}{{ outputs.ret['b'].value }}{{ outputs.ret.c.value }}{{ outputs.ret.d.value }}"
""")
    assert _state(final) == "SUCCESS"
    assert _outputs(final, "all") == {"value": "a!b!c!d!"}
    assert [tr.value for tr in final.task_runs if tr.task_id == "ret"] == ["b", "c", "d", "a"]
    naps = {tr.value: _window(tr) for tr in final.task_runs if tr.task_id == "nap"}
    # a sliding window: c and d start while a (long) is still running, not after a batch of two
    assert naps["c"][0] < naps["a"][1] and naps["d"][0] < naps["a"][1]
    assert _max_overlap([tr for tr in final.task_runs if tr.task_id in ("nap", "ret")]) <= 2


def test_each_sequential_and_each_parallel(stubs):
    final = _run(stubs, """
id: each-legacy
namespace: tests.flowables
tasks:
  - id: seq
    type: io.kestra.core.tasks.flows.EachSequential
    value: '["x", {"k": 1}]'
    tasks:
      - {id: s-ret, type: io.kestra.plugin.core.debug.Return, format: "{{ taskrun.value }}"}
  - id: par
    type: io.kestra.core.tasks.flows.EachParallel
    value: [1, 2, 3]
    tasks:
      - {id: p-nap, type: io.kestrel.tests.Sleep, seconds: 0.5}
      - {id: p-ret, type: io.kestra.plugin.core.debug.Return, format: "{{ taskrun.value }}"}
""")
    assert _state(final) == "SUCCESS"
    assert [(tr.value, _outputs(final, "s-ret", tr.value)) for tr in final.task_runs if tr.task_id == "s-ret"] == [
        ("x", {"value": "x"}), ('{"k":1}', {"value": '{"k":1}'})
    ]
    naps = [tr for tr in final.task_runs if tr.task_id == "p-nap"]
    assert [tr.value for tr in naps] == ["1", "2", "3"] and _max_overlap(naps) == 3


def test_dag_follows_dependencies(stubs):
    final = _run(stubs, """
id: dag
namespace: tests.flowables
tasks:
  - id: dag
    type: io.kestra.core.tasks.flows.Dag
    tasks:
      - task: {id: extract, type: io.kestrel.tests.Sleep, seconds: 0.3}
      - task: {id: left, type: io.kestrel.tests.Sleep, seconds: 0.3}
        dependsOn: [extract]
      - task: {id: right, type: io.kestrel.tests.Sleep, seconds: 0.3}
        dependsOn: [extract]
      - task: {id: join, type: io.kestra.plugin.core.log.Log, message: done}
        dependsOn: [left, right]
""")
    assert _state(final) == "SUCCESS"
    runs = {tr.task_id: _window(tr) for tr in final.task_runs}
    assert runs["left"][0] >= runs["extract"][1] and runs["right"][0] >= runs["extract"][1]
    assert runs["join"][0] >= max(runs["left"][1], runs["right"][1])
    assert runs["left"][0] < runs["right"][1] and runs["right"][0] < runs["left"][1]  # side by side


def test_a_dag_with_a_cycle_is_refused_at_registration(stubs):
    with pytest.raises(grpc.RpcError) as err:
        stubs.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source="""
id: cyclic
namespace: tests.flowables
tasks:
  - id: dag
    type: io.kestra.plugin.core.flow.Dag
    tasks:
      - task: {id: a, type: io.kestra.plugin.core.log.Log, message: a}
        dependsOn: [b]
      - task: {id: b, type: io.kestra.plugin.core.log.Log, message: b}
        dependsOn: [a]
"""), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dag: Cyclic dependency detected" in err.value.details()


def test_nesting_foreach_in_parallel_in_if_with_parents_and_outputs_by_value(stubs):
    final = _run(stubs, """
id: nesting
namespace: tests.flowables
tasks:
  - id: if
    type: io.kestra.plugin.core.flow.If
    condition: "{{ 2 > 1 }}"
    then:
      - id: par
        type: io.kestra.plugin.core.flow.Parallel
        tasks:
          - id: outer
            type: io.kestra.plugin.core.flow.ForEach
            values: ["o1", "o2"]
            concurrencyLimit: 0
            tasks:
              - id: inner
                type: io.kestra.plugin.core.flow.ForEach
                values: [1, 2]
                tasks:
                  - id: group
                    type: io.kestra.plugin.core.flow.Sequential
                    tasks:
                      - id: leaf
                        type: io.kestra.plugin.core.debug.Return
                        format: "{{ parents[1].taskrun.value }}/{{ parent.taskrun.value }}"
          - {id: side, type: io.kestra.plugin.core.debug.Return, format: side}
  - id: collect
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.leaf.o1['2'].value }} {{ outputs.leaf.o2['1'].value }} {{ outputs.side.value }}"
""")
    assert _state(final) == "SUCCESS", _runs(final)
    assert len(final.task_runs) == 1 + 1 + 1 + 2 + 4 + 4 + 1 + 1  # if par outer inner*2 group*4 leaf*4 side collect
    assert sorted(json.loads(tr.outputs_json)["value"] for tr in final.task_runs if tr.task_id == "leaf") == [
        "o1/1", "o1/2", "o2/1", "o2/2"
    ]
    assert _outputs(final, "collect") == {"value": "o1/2 o2/1 side"}


def test_errors_inside_flowables_and_allow_failure(stubs):
    final = _run(stubs, """
id: errors-inside
namespace: tests.flowables
tasks:
  - id: tolerant
    type: io.kestra.plugin.core.flow.AllowFailure
    tasks:
      - id: par
        type: io.kestra.plugin.core.flow.Parallel
        tasks:
          - {id: boom, type: io.kestra.plugin.core.execution.Fail, errorMessage: "bad thing"}
          - {id: slow, type: io.kestrel.tests.Sleep, seconds: 0.5}
        errors:
          - {id: par-handler, type: io.kestra.plugin.core.log.Log, message: "par handled"}
    errors:
      - {id: tolerant-handler, type: io.kestra.plugin.core.log.Log, message: "tolerant handled"}
  - id: strict
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - {id: boom2, type: io.kestra.plugin.core.execution.Fail}
      - {id: never, type: io.kestra.plugin.core.log.Log, message: never}
    errors:
      - {id: strict-handler, type: io.kestra.plugin.core.log.Log, message: "strict handled"}
errors:
  - {id: global-handler, type: io.kestra.plugin.core.log.Log, message: "global handled"}
""")
    assert _state(final) == "FAILED"
    states = {tr.task_id: _state(tr) for tr in final.task_runs}
    assert states == {
        "tolerant": "WARNING", "par": "FAILED", "boom": "FAILED", "slow": "SUCCESS", "par-handler": "SUCCESS",
        "tolerant-handler": "SUCCESS", "strict": "FAILED", "boom2": "FAILED", "strict-handler": "SUCCESS",
        "global-handler": "SUCCESS",
    }
    runs = {tr.task_id: tr for tr in final.task_runs}
    assert _window(runs["par"])[1] >= _window(runs["slow"])[1]  # the Parallel waited for its running child


def test_kill_during_a_parallel_ends_killed_and_starts_nothing(stubs):
    flow = stubs.deploy("""
id: kill-parallel
namespace: tests.flowables
tasks:
  - id: par
    type: io.kestra.plugin.core.flow.Parallel
    concurrent: 3
    tasks:
      - {id: n1, type: io.kestrel.tests.Sleep, seconds: 30}
      - {id: n2, type: io.kestrel.tests.Sleep, seconds: 30}
      - {id: n3, type: io.kestrel.tests.Sleep, seconds: 30}
      - {id: n4, type: io.kestrel.tests.Sleep, seconds: 30}
      - {id: n5, type: io.kestrel.tests.Sleep, seconds: 30}
  - {id: after, type: io.kestra.plugin.core.log.Log, message: after}
""")
    execution = stubs.start(flow.namespace, flow.id)
    wait_until(
        lambda: sum(_state(tr) == "RUNNING" for tr in stubs.get(execution.id).task_runs) == 4,
        timeout=30, what="the Parallel and three children running",
    )
    began = time.monotonic()
    stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=execution.id), timeout=10)
    final = stubs.wait(execution.id, timeout=30)
    assert time.monotonic() - began < 5
    assert _state(final) == "KILLED"
    assert _runs(final) == [
        ("par", "", "KILLED"), ("n1", "", "KILLED"), ("n2", "", "KILLED"), ("n3", "", "KILLED")
    ]
    time.sleep(0.5)
    assert len(stubs.get(execution.id).task_runs) == 4  # nothing started afterwards


def test_taskrun_iteration_is_the_position_of_the_loop_value(stubs):
    final = _run(stubs, """
id: iteration
namespace: tests.flowables
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: ["a", "b", "c"]
    tasks:
      - id: ret
        type: io.kestra.plugin.core.debug.Return
        format: "{{ taskrun.value }}={{ taskrun.iteration }}"
""")
    assert state_name(final.state.current) == "SUCCESS"
    values = sorted(json.loads(tr.outputs_json)["value"] for tr in final.task_runs if tr.task_id == "ret")
    assert values == ["a=0", "b=1", "c=2"]
