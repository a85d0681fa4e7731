"""KestrelClient methods against the in-process fake API: requests sent, results returned."""

from __future__ import annotations

import json
import time

import pytest

from kestrel.v1 import common_pb2
from tests.unit.client.kestrel_fake_server import BAD_FLOW, HELLO_FLOW, RunningFake, log_entry
from worker_sdk.client import KestrelClient
from worker_sdk.errors import AbortedError, DeadlineExceededError, InvalidArgumentError, NotFoundError
from worker_sdk.types import Execution, LogLevel, State


def _flow_source(namespace: str, flow_id: str) -> str:
    return HELLO_FLOW.replace("id: hello\nnamespace: demo.team", f"id: {flow_id}\nnamespace: {namespace}")


def test_validate_flow(client: KestrelClient) -> None:
    ok = client.validate_flow(HELLO_FLOW)
    assert ok.valid and ok.errors == [] and (ok.namespace, ok.id) == ("demo.team", "hello")

    bad = client.validate_flow(BAD_FLOW)
    assert not bad.valid
    (issue,) = bad.errors
    assert (issue.path, issue.line, issue.column) == ("tasks[0].type", 5, 5)
    assert "unknown task type" in issue.message


def test_deploy_get_list_and_delete(client: KestrelClient, fake_server: RunningFake) -> None:
    flow, created, _ = client.deploy_flow(HELLO_FLOW)
    assert created and flow.uid == "demo.team.hello" and flow.revision == 1
    flow, created, _ = client.deploy_flow(HELLO_FLOW)
    assert not created and flow.revision == 1
    flow, created, _ = client.deploy_flow(HELLO_FLOW + "# v2\n", expected_revision=1)
    assert created and flow.revision == 2
    with pytest.raises(AbortedError):
        client.deploy_flow(HELLO_FLOW + "# v3\n", expected_revision=1)
    with pytest.raises(InvalidArgumentError, match="unknown task type"):
        client.deploy_flow(BAD_FLOW)

    assert client.get_flow("demo.team", "hello").revision == 2
    assert client.get_flow("demo.team", "hello", revision=1).source == HELLO_FLOW
    assert [f.revision for f in client.list_flow_revisions("demo.team", "hello")] == [1, 2]
    with pytest.raises(NotFoundError, match="flow demo.team.nope not found"):
        client.get_flow("demo.team", "nope")

    for i in range(4):
        client.deploy_flow(_flow_source("other", f"f{i}"))
    # The fake serves two flows a page: list_flows walks every page.
    assert [f.uid for f in client.list_flows()] == ["demo.team.hello"] + [f"other.f{i}" for i in range(4)]
    assert [f.uid for f in client.list_flows("demo")] == ["demo.team.hello"]
    assert len(fake_server.fake.requests_of("ListFlows")) == 4  # 3 pages, then 1 page

    client.delete_flow("other", "f0")
    with pytest.raises(NotFoundError):
        client.delete_flow("other", "f0")


def test_start_execution_sends_inputs_labels_and_request_id(
    client: KestrelClient, fake_server: RunningFake
) -> None:
    client.deploy_flow(HELLO_FLOW)
    execution = client.start_execution(
        "demo.team",
        "hello",
        inputs={"user": "Ada", "count": 3},
        labels={"team": "data", "n": 1},  # type: ignore[dict-item]  # values become strings
        request_id="req-1",
        revision=1,
    )
    assert isinstance(execution, Execution)
    assert execution.id == "exec-1" and execution.state.current is State.CREATED
    assert execution.inputs == {"user": "Ada", "count": 3}

    (request,) = fake_server.fake.requests_of("StartExecution")
    assert json.loads(request.inputs_json) == {"user": "Ada", "count": 3}
    assert [(label.key, label.value) for label in request.labels] == [("team", "data"), ("n", "1")]
    assert request.request_id == "req-1" and request.revision == 1

    client.start_execution("demo.team", "hello")
    request = fake_server.fake.requests_of("StartExecution")[-1]
    assert request.inputs_json == "" and request.request_id == "" and list(request.labels) == []


def test_start_execution_errors(client: KestrelClient, fake_server: RunningFake) -> None:
    client.deploy_flow(HELLO_FLOW)
    with pytest.raises(InvalidArgumentError, match="input 'count' of flow demo.team.hello: expected INT"):
        client.start_execution("demo.team", "hello", inputs={"count": "three"})
    with pytest.raises(NotFoundError):
        client.start_execution("demo.team", "nope")
    sent = len(fake_server.fake.requests)
    with pytest.raises(InvalidArgumentError, match="JSON-serialisable"):
        client.start_execution("demo.team", "hello", inputs={"when": object()})
    assert len(fake_server.fake.requests) == sent  # refused before sending


def test_watch_and_wait(client: KestrelClient) -> None:
    client.deploy_flow(HELLO_FLOW)
    started = client.start_execution("demo.team", "hello")
    states = [e.state.current for e in client.watch_execution(started.id)]
    assert states == ["CREATED", "RUNNING", "SUCCESS"]

    final = client.wait_execution(started.id, timeout=10)
    assert final.state.current is State.SUCCESS and final.is_terminal
    assert final.outputs == {"greeting": "hi"}
    assert final.task_runs[0].outputs == {"value": "hi"}
    assert final.task_runs[0].attempts[0].worker_id == "worker-a"


def test_wait_reopens_a_stream_closed_early(client: KestrelClient, fake_server: RunningFake) -> None:
    client.deploy_flow(HELLO_FLOW)
    fake_server.fake.final_state = common_pb2.STATE_FAILED
    started = client.start_execution("demo.team", "hello")
    fake_server.fake.watch_closes_early = 2  # stream ends at RUNNING
    final = client.wait_execution(started.id, timeout=10)
    assert final.state.current is State.FAILED
    assert final.task_runs[0].error == "boom"
    assert len(fake_server.fake.requests_of("GetExecution")) == 1


def test_wait_times_out(client: KestrelClient, fake_server: RunningFake) -> None:
    client.deploy_flow(HELLO_FLOW)
    fake_server.fake.final_state = common_pb2.STATE_PAUSED  # never terminates
    started = client.start_execution("demo.team", "hello")
    begin = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=f"execution {started.id} did not terminate within 1 s"):
        client.wait_execution(started.id, timeout=1)
    assert time.monotonic() - begin < 5


def test_stopping_a_watch_early_cancels_it(client: KestrelClient) -> None:
    client.deploy_flow(HELLO_FLOW)
    started = client.start_execution("demo.team", "hello")
    stream = client.watch_execution(started.id)
    assert next(stream).state.current is State.CREATED
    stream.close()  # type: ignore[attr-defined]
    assert client.get_execution(started.id).id == started.id  # the channel still works


def test_list_executions_one_page_and_all(client: KestrelClient, fake_server: RunningFake) -> None:
    client.deploy_flow(HELLO_FLOW)
    ids = [client.start_execution("demo.team", "hello").id for _ in range(5)]

    page = client.list_executions(namespace="demo", page_size=2)
    assert [e.id for e in page.executions] == ["exec-5", "exec-4"]
    assert page.next_page_token == "2"
    assert all(e.task_runs == [] for e in page.executions)
    last = client.list_executions(page_size=2, page_token="4")
    assert [e.id for e in last.executions] == ["exec-1"] and last.next_page_token is None

    assert sorted(e.id for e in client.iter_executions(page_size=2)) == sorted(ids)
    assert [e.id for e in client.iter_executions(states=["success", State.FAILED])] == [
        "exec-5",
        "exec-4",
        "exec-3",
        "exec-2",
        "exec-1",
    ]
    request = fake_server.fake.requests_of("ListExecutions")[-1]
    assert list(request.states) == [common_pb2.STATE_SUCCESS, common_pb2.STATE_FAILED]

    with pytest.raises(InvalidArgumentError, match="unknown state 'DONE'"):
        client.list_executions(states=["DONE"])
    with pytest.raises(InvalidArgumentError):
        client.list_executions(states=["UNSPECIFIED"])


def test_kill_execution(client: KestrelClient) -> None:
    client.deploy_flow(HELLO_FLOW)
    started = client.start_execution("demo.team", "hello")
    assert client.kill_execution(started.id).state.current is State.KILLING
    with pytest.raises(NotFoundError):
        client.kill_execution("nope")


def test_list_logs_walks_pages_and_filters(client: KestrelClient, fake_server: RunningFake) -> None:
    fake_server.fake.logs["exec-1"] = [
        log_entry(1, "one"),
        log_entry(2, "two", level=common_pb2.LOG_LEVEL_DEBUG),
        log_entry(3, "three", level=common_pb2.LOG_LEVEL_WARN),
        log_entry(4, "four", task_id=""),
        log_entry(5, "five", level=common_pb2.LOG_LEVEL_ERROR),
    ]
    entries = client.list_logs("exec-1")
    assert [e.message for e in entries] == ["one", "two", "three", "four", "five"]
    assert entries[3].task_id is None

    assert [e.message for e in client.list_logs("exec-1", min_level="warning")] == ["three", "five"]
    assert [e.message for e in client.list_logs("exec-1", min_level=LogLevel.ERROR)] == ["five"]
    assert fake_server.fake.requests_of("ListLogs")[-1].min_level == common_pb2.LOG_LEVEL_ERROR
    assert [e.message for e in client.list_logs("exec-1", task_run_id="tr-1")] == [
        "one",
        "two",
        "three",
        "five",
    ]
    with pytest.raises(InvalidArgumentError, match="unknown log level 'LOUD'"):
        client.list_logs("exec-1", min_level="LOUD")


def test_tail_logs(client: KestrelClient, fake_server: RunningFake) -> None:
    fake_server.fake.logs["exec-1"] = [log_entry(i, f"line {i}") for i in range(1, 6)]
    assert [e.sequence for e in client.tail_logs("exec-1")] == [1, 2, 3, 4, 5]
    assert [e.sequence for e in client.tail_logs("exec-1", after_sequence=3)] == [4, 5]
