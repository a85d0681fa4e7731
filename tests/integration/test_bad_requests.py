"""Hostile and malformed requests: each is INVALID_ARGUMENT (or the contract's code) naming the
field, never INTERNAL, and changes nothing stored. Task-produced data with NUL characters is
kept, with NUL replaced."""

from __future__ import annotations

import json
import math

import grpc
import pytest

from kestrel.v1 import common_pb2, execution_pb2, flow_pb2, log_pb2, worker_pb2
from tests.integration.harness import wait_until
from tests.integration.rpc import connect, state_name

CUSTOM = "io.kestrel.tests.Raw"
FLOW = f"""
id: raw
namespace: tests.bad
inputs:
  - id: n
    type: INT
    required: false
  - id: j
    type: JSON
    required: false
tasks:
  - id: t
    type: {CUSTOM}
"""


@pytest.fixture(scope="module")
def stubs(server):
    s = connect(server.address)
    s.register_worker([CUSTOM])
    s.deploy(FLOW)
    yield s
    s.close()


def _code(call, request):
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value.code(), err.value.details()


def _executions(stubs):
    return len(stubs.executions.ListExecutions(execution_pb2.ListExecutionsRequest(namespace="tests.bad")).executions)


@pytest.mark.parametrize(
    ("request_kw", "field"),
    [
        ({"labels": [common_pb2.Label(key="system.correlationId", value="x")]}, "system."),
        ({"labels": [common_pb2.Label(key="", value="x")]}, "key"),
        ({"request_id": "r" * 201}, "request_id"),
        ({"request_id": "a\x00b"}, "request_id"),
        ({"inputs_json": "[" * 5000 + "]" * 5000}, "inputs_json"),
        ({"inputs_json": '{"n": NaN}'}, "inputs_json"),
        ({"inputs_json": json.dumps({"n": "9" * 5000})}, "n"),
    ],
)
def test_bad_start_requests_are_invalid_argument_and_store_nothing(stubs, request_kw, field):
    before = _executions(stubs)
    req = execution_pb2.StartExecutionRequest(namespace="tests.bad", flow_id="raw", **request_kw)
    code, details = _code(stubs.executions.StartExecution, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert field in details
    assert "SQL" not in details
    assert _executions(stubs) == before


def test_bad_lookups_and_worker_calls(stubs):
    cases = [
        (stubs.executions.GetExecution, execution_pb2.GetExecutionRequest(id="x\x00"), grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.flows.DeleteFlow, flow_pb2.DeleteFlowRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.flows.GetFlow, flow_pb2.GetFlowRequest(namespace="a\x00", id="b"), grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.logs.ListLogs, log_pb2.ListLogsRequest(execution_id="e", page_size=-5), grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.logs.ListLogs, log_pb2.ListLogsRequest(execution_id="e", min_level=99), grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.workers.ShutdownWorker, worker_pb2.ShutdownWorkerRequest(worker_id="nobody"),
         grpc.StatusCode.FAILED_PRECONDITION),
        (stubs.workers.RegisterWorker, worker_pb2.RegisterWorkerRequest(task_types=[""]), grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.workers.RegisterWorker, worker_pb2.RegisterWorkerRequest(task_types=["t"] * 1001),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.workers.RegisterWorker, worker_pb2.RegisterWorkerRequest(worker_id="w" * 101, task_types=["t"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.workers.PollTaskRuns, worker_pb2.PollTaskRunsRequest(worker_id="w", wait_seconds=math.nan),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stubs.workers.PollTaskRuns, worker_pb2.PollTaskRunsRequest(worker_id="w", wait_seconds=-1),
         grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, req, expected in cases:
        code, details = _code(call, req)
        assert code == expected, (req, code, details)


def test_nul_in_task_data_is_kept_not_lost(stubs):
    worker = stubs.register_worker([CUSTOM])
    execution = stubs.start("tests.bad", "raw")
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
    stubs.logs.AppendLogs(log_pb2.AppendLogsRequest(task_token=a.task_token, entries=[
        log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="before"),
        log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="nul\x00here"),
        log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="after"),
    ]))
    stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(
        task_token=a.task_token, outputs_json=json.dumps({"a": "x\x00y", "k\x00": 1})))
    final = stubs.wait(execution.id)
    assert state_name(final.state.current) == "SUCCESS"
    assert json.loads(final.task_runs[0].outputs_json) == {"a": "x\ufffdy", "k\ufffd": 1}
    assert [e.message for e in stubs.logs_stub_list(execution.id)] == ["before", "nul\ufffdhere", "after"]


def test_a_flow_with_many_errors_gets_a_bounded_message_and_validate_lists_all(stubs):
    tasks = "".join(f"  - id: t{i}\n    type: io.kestra.plugin.core.log.Log\n    mesage: x\n" for i in range(300))
    source = f"id: many\nnamespace: tests.bad\ntasks:\n{tasks}"
    code, details = _code(stubs.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=source))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "left out" in details and len(details) < 8000
    result = stubs.flows.ValidateFlow(flow_pb2.ValidateFlowRequest(source=source))
    assert not result.valid and len(result.errors) >= 300


def test_listing_leaves_sources_out(stubs):
    flows = stubs.flows.ListFlows(flow_pb2.ListFlowsRequest(namespace="tests.bad")).flows
    assert flows and all(f.source == "" for f in flows)
    one = stubs.flows.GetFlow(flow_pb2.GetFlowRequest(namespace="tests.bad", id="raw")).flow
    assert "io.kestrel.tests.Raw" in one.source


def test_duplicate_fail_with_the_same_token_is_ok(stubs):
    worker = stubs.register_worker([CUSTOM])
    execution = stubs.start("tests.bad", "raw")
    a = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
    req = worker_pb2.FailTaskRunRequest(task_token=a.task_token, error_message="boom",
                                        reason=worker_pb2.FAILURE_REASON_TASK_ERROR)
    stubs.workers.FailTaskRun(req)
    stubs.workers.FailTaskRun(req)  # a retried call: OK, recorded once
    final = stubs.wait(execution.id)
    assert state_name(final.state.current) == "FAILED" and len(final.task_runs[0].attempts) == 1


def test_concurrent_deploys_without_expected_revision_all_succeed(stubs, server):
    import concurrent.futures

    def deploy(i: int):
        s = connect(server.address)
        try:
            return s.deploy(FLOW.replace("id: raw", "id: raced") + f"# v{i}\n").revision
        finally:
            s.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        revisions = list(pool.map(deploy, range(8)))
    assert sorted(revisions) == list(range(1, 9))


def test_namespace_prefix_is_not_a_pattern(stubs):
    assert stubs.flows.ListFlows(flow_pb2.ListFlowsRequest(namespace="_")).flows == []
    assert stubs.flows.ListFlows(flow_pb2.ListFlowsRequest(namespace="tests%")).flows == []


def test_flows_that_could_never_run_are_refused_at_deploy(stubs):
    long_id = "t" * 101
    bad = [
        (f"id: x\nnamespace: tests.bad\ntasks:\n  - id: {long_id}\n    type: io.kestra.plugin.core.log.Log\n"
         "    message: hi\n", "at most 100 characters"),
        ("id: x\nnamespace: tests.bad\ninputs:\n  - id: n\n    type: INT\n    defaults: abc\ntasks:\n"
         "  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n", "invalid default"),
    ]
    for source, needle in bad:
        code, details = _code(stubs.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=source))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in details, details


def test_non_finite_json_inputs_and_deep_yaml_are_invalid_argument(stubs):
    stubs.deploy(FLOW.replace("id: raw", "id: raw-json"))
    req = execution_pb2.StartExecutionRequest(namespace="tests.bad", flow_id="raw-json",
                                              inputs_json=json.dumps({"j": '{"x": NaN}'}))
    code, details = _code(stubs.executions.StartExecution, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "raw-json" in details
    deep = "id: x\nnamespace: tests.bad\nvariables:\n  a: " + "[" * 3000 + "]" * 3000 + "\ntasks: []\n"
    result = stubs.flows.ValidateFlow(flow_pb2.ValidateFlowRequest(source=deep))
    assert not result.valid and "nested too deeply" in result.errors[0].message
    code, details = _code(stubs.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=deep))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nested too deeply" in details


def test_hostile_kv_values_and_too_many_labels_are_invalid_argument(stubs):
    from kestrel.v1 import kv_pb2, kv_pb2_grpc

    kv = kv_pb2_grpc.KVServiceStub(stubs.channel)
    for value_json in ("[" * 100_000 + "]" * 100_000, json.dumps("a\ud800b"), '"\\ud800"'):
        with pytest.raises(grpc.RpcError) as bad:
            kv.SetKV(kv_pb2.SetKVRequest(namespace="tests.bad", key="k", value_json=value_json), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad.value.details()
    stored = kv.SetKV(kv_pb2.SetKVRequest(namespace="tests.bad", key="k", value_json='"a\\u0000b"'), timeout=10)
    assert json.loads(stored.entry.value_json) == "a\ufffdb"  # NUL kept as U+FFFD, as in logs
    labels = [common_pb2.Label(key=f"k{i}", value="v") for i in range(101)]
    with pytest.raises(grpc.RpcError) as many:
        stubs.executions.StartExecution(execution_pb2.StartExecutionRequest(
            namespace="tests.bad", flow_id="anything", labels=labels), timeout=10)
    assert many.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 100 labels" in many.value.details()
