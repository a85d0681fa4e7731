"""Protobuf -> dataclass conversion and Kestra's JSON shape, on hand-built kestrel.v1 messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kestrel.v1 import common_pb2, execution_pb2, flow_pb2, log_pb2
from tests.unit.client.kestrel_fake_server import state_info, ts
from worker_sdk import client as client_module
from worker_sdk.errors import ProtocolError
from worker_sdk.types import (
    Execution,
    LogLevel,
    State,
    StateHistory,
    StateInfo,
    format_iso_duration,
    format_iso_instant,
)

S = common_pb2


def _execution_message() -> execution_pb2.Execution:
    return execution_pb2.Execution(
        id="ex1",
        namespace="demo.team",
        flow_id="hello",
        flow_revision=3,
        state=state_info(S.STATE_CREATED, S.STATE_RUNNING, S.STATE_SUCCESS),
        inputs_json='{"user": "Ada", "count": 3, "ratio": 0.5, "flag": true}',
        outputs_json='{"greeting": "hello Ada"}',
        labels=[common_pb2.Label(key="team", value="data"), common_pb2.Label(key="env", value="dev")],
        start_date=ts(0),
        end_date=ts(2.5),
        task_runs=[
            execution_pb2.TaskRun(
                id="tr1",
                execution_id="ex1",
                task_id="hello",
                task_type="io.kestra.plugin.core.log.Log",
                state=state_info(S.STATE_CREATED, S.STATE_RUNNING, S.STATE_SUCCESS, start=0.5, step=0.5),
                attempts=[
                    execution_pb2.TaskRunAttempt(
                        attempt=1,
                        worker_id="w-1",
                        state=state_info(S.STATE_RUNNING, S.STATE_SUCCESS, start=1, step=0.5),
                        start_date=ts(1),
                        end_date=ts(1.5),
                    )
                ],
                outputs_json='{"value": 42}',
            ),
            execution_pb2.TaskRun(
                id="tr2",
                execution_id="ex1",
                task_id="child",
                parent_task_run_id="tr1",
                value="a",
                state=state_info(S.STATE_CREATED),
            ),
        ],
    )


def test_execution_fields_are_converted() -> None:
    execution = client_module._execution(_execution_message())

    assert execution.id == "ex1"
    assert execution.flow_revision == 3
    assert execution.state.current == "SUCCESS"
    assert execution.state.current is State.SUCCESS
    assert [h.state for h in execution.state.histories] == ["CREATED", "RUNNING", "SUCCESS"]
    assert execution.state.histories[0].date == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert execution.inputs == {"user": "Ada", "count": 3, "ratio": 0.5, "flag": True}
    assert isinstance(execution.inputs["count"], int)  # JSON text keeps integers integers
    assert execution.outputs == {"greeting": "hello Ada"}
    assert execution.labels == {"team": "data", "env": "dev"}
    assert execution.start_date == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert execution.end_date == datetime(2024, 5, 1, 10, 0, 2, 500000, tzinfo=UTC)
    assert execution.duration == timedelta(seconds=2.5)
    assert execution.is_terminal
    # Empty strings on the wire are None.
    assert execution.error is None and execution.parent_id is None and execution.original_id is None

    first, second = execution.task_runs
    assert (first.namespace, first.flow_id) == ("demo.team", "hello")  # filled from the execution
    assert first.task_type == "io.kestra.plugin.core.log.Log"
    assert first.outputs == {"value": 42}
    assert first.parent_task_run_id is None and first.value is None and first.error is None
    assert first.duration == timedelta(seconds=1)
    (attempt,) = first.attempts
    assert attempt.attempt == 1 and attempt.worker_id == "w-1" and attempt.reason is None
    assert attempt.state.current is State.SUCCESS
    assert second.parent_task_run_id == "tr1" and second.value == "a"
    assert second.outputs is None and second.attempts == []
    assert second.duration is None  # not terminal


def test_unset_fields_become_none() -> None:
    execution = client_module._execution(execution_pb2.Execution(id="x", namespace="n", flow_id="f"))
    assert execution.state.current is State.UNSPECIFIED
    assert execution.state.histories == []
    assert execution.inputs is None and execution.outputs is None
    assert execution.start_date is None and execution.end_date is None
    assert execution.duration is None and not execution.is_terminal


def test_unknown_enum_values_do_not_crash() -> None:
    assert client_module._state(99) is State.UNSPECIFIED
    assert client_module._level(99) is LogLevel.UNSPECIFIED


@pytest.mark.parametrize(
    "field_name, text, match",
    [
        ("outputs_json", "{not json", "invalid JSON in the outputs of execution x"),
        ("inputs_json", "[1, 2]", "list JSON in the inputs of execution x, expected an object"),
    ],
)
def test_malformed_json_text_is_a_protocol_error(field_name: str, text: str, match: str) -> None:
    message = execution_pb2.Execution(id="x", namespace="n", flow_id="f", **{field_name: text})
    with pytest.raises(ProtocolError, match=match):
        client_module._execution(message)


def test_flow_conversion_parses_defaults() -> None:
    flow = client_module._flow(
        flow_pb2.Flow(
            namespace="demo",
            id="f",
            revision=2,
            source="id: f",
            labels=[common_pb2.Label(key="k", value="v")],
            inputs=[
                flow_pb2.FlowInput(id="user", type="STRING", defaults_json='"world"'),
                flow_pb2.FlowInput(id="n", type="INT", required=True),
                flow_pb2.FlowInput(id="maybe", type="STRING", defaults_json="null"),
            ],
            created=ts(0),
            task_count=4,
        )
    )
    assert flow.uid == "demo.f" and flow.revision == 2 and flow.task_count == 4
    assert flow.labels == {"k": "v"}
    assert flow.created == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    user, n, maybe = flow.inputs
    assert (user.default, user.has_default, user.required) == ("world", True, False)
    assert (n.default, n.has_default, n.required) == (None, False, True)
    assert (maybe.default, maybe.has_default) == (None, True)


def test_issue_line_zero_means_unknown() -> None:
    issue = client_module._issue(flow_pb2.ValidationIssue(path="id", message="missing"))
    assert issue.line is None and issue.column is None
    issue = client_module._issue(flow_pb2.ValidationIssue(path="id", message="m", line=4, column=7))
    assert (issue.line, issue.column) == (4, 7)


def test_log_entry_conversion() -> None:
    entry = client_module._log_entry(
        log_pb2.LogEntry(
            sequence=7,
            execution_id="ex1",
            task_run_id="tr1",
            task_id="hello",
            attempt=2,
            level=S.LOG_LEVEL_WARN,
            message="careful",
            timestamp=ts(1),
        )
    )
    assert entry.level == "WARN" and entry.level is LogLevel.WARN
    assert (entry.sequence, entry.task_id, entry.attempt, entry.message) == (7, "hello", 2, "careful")
    assert entry.timestamp == datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
    bare = client_module._log_entry(log_pb2.LogEntry(sequence=1, execution_id="ex1", message="m"))
    assert bare.task_id is None and bare.task_run_id is None and bare.timestamp is None


def test_to_kestra_json_shape() -> None:
    doc = client_module._execution(_execution_message()).to_kestra_json()
    json.dumps(doc)  # serialisable as is

    assert doc == {
        "id": "ex1",
        "namespace": "demo.team",
        "flowId": "hello",
        "flowRevision": 3,
        "state": {
            "current": "SUCCESS",
            "histories": [
                {"state": "CREATED", "date": "2024-05-01T10:00:00Z"},
                {"state": "RUNNING", "date": "2024-05-01T10:00:01Z"},
                {"state": "SUCCESS", "date": "2024-05-01T10:00:02Z"},
            ],
            "startDate": "2024-05-01T10:00:00Z",
            "endDate": "2024-05-01T10:00:02.500Z",
            "duration": "PT2.5S",
        },
        "inputs": {"user": "Ada", "count": 3, "ratio": 0.5, "flag": True},
        "outputs": {"greeting": "hello Ada"},
        "labels": [{"key": "team", "value": "data"}, {"key": "env", "value": "dev"}],
        "parentId": None,
        "originalId": None,
        "taskRunList": [
            {
                "id": "tr1",
                "executionId": "ex1",
                "namespace": "demo.team",
                "flowId": "hello",
                "taskId": "hello",
                "parentTaskRunId": None,
                "value": None,
                "state": {
                    "current": "SUCCESS",
                    "histories": [
                        {"state": "CREATED", "date": "2024-05-01T10:00:00.500Z"},
                        {"state": "RUNNING", "date": "2024-05-01T10:00:01Z"},
                        {"state": "SUCCESS", "date": "2024-05-01T10:00:01.500Z"},
                    ],
                    "startDate": "2024-05-01T10:00:00.500Z",
                    "endDate": "2024-05-01T10:00:01.500Z",
                    "duration": "PT1S",
                },
                "attempts": [
                    {
                        "state": {
                            "current": "SUCCESS",
                            "histories": [
                                {"state": "RUNNING", "date": "2024-05-01T10:00:01Z"},
                                {"state": "SUCCESS", "date": "2024-05-01T10:00:01.500Z"},
                            ],
                            "startDate": "2024-05-01T10:00:01Z",
                            "endDate": "2024-05-01T10:00:01.500Z",
                            "duration": "PT0.5S",
                        },
                        "workerId": "w-1",
                    }
                ],
                "outputs": {"value": 42},
            },
            {
                "id": "tr2",
                "executionId": "ex1",
                "namespace": "demo.team",
                "flowId": "hello",
                "taskId": "child",
                "parentTaskRunId": "tr1",
                "value": "a",
                "state": {
                    "current": "CREATED",
                    "histories": [{"state": "CREATED", "date": "2024-05-01T10:00:00Z"}],
                    "startDate": "2024-05-01T10:00:00Z",
                    "endDate": None,
                    "duration": None,
                },
                "attempts": None,
                "outputs": None,
            },
        ],
    }


def test_to_kestra_json_of_a_running_execution_has_no_end() -> None:
    execution = Execution(
        id="e",
        namespace="n",
        flow_id="f",
        state=StateInfo(State.RUNNING, [StateHistory(State.CREATED, datetime(2024, 1, 1, tzinfo=UTC))]),
    )
    doc = execution.to_kestra_json()
    assert doc["state"]["endDate"] is None and doc["state"]["duration"] is None
    assert doc["state"]["startDate"] == "2024-01-01T00:00:00Z"
    assert doc["inputs"] is None and doc["outputs"] is None
    assert doc["labels"] == [] and doc["taskRunList"] == []


@pytest.mark.parametrize(
    "value, expected",
    [
        (datetime(2024, 5, 1, 10, 0, tzinfo=UTC), "2024-05-01T10:00:00Z"),
        (datetime(2024, 5, 1, 10, 0, 0, 120000, tzinfo=UTC), "2024-05-01T10:00:00.120Z"),
        (datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC), "2024-05-01T10:00:00.123456Z"),
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC).astimezone(), "2024-05-01T12:00:00Z"),
        (datetime(2024, 5, 1, 10, 0), "2024-05-01T10:00:00Z"),  # naive = UTC
        (None, None),
    ],
)
def test_format_iso_instant(value: datetime | None, expected: str | None) -> None:
    assert format_iso_instant(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (timedelta(0), "PT0S"),
        (timedelta(seconds=1.5), "PT1.5S"),
        (timedelta(minutes=2, seconds=3, milliseconds=4), "PT2M3.004S"),
        (timedelta(hours=1), "PT1H"),
        (timedelta(days=1, hours=2), "PT26H"),
        (timedelta(microseconds=1), "PT0.000001S"),
        (timedelta(seconds=-90), "PT-1M-30S"),
        (None, None),
    ],
)
def test_format_iso_duration(value: timedelta | None, expected: str | None) -> None:
    assert format_iso_duration(value) == expected


def test_state_helpers() -> None:
    assert State("WARNING").is_successful and State.SUCCESS.is_successful
    assert not State.FAILED.is_successful
    assert {s for s in State if s.is_terminal} == {
        "SUCCESS",
        "WARNING",
        "FAILED",
        "KILLED",
        "CANCELLED",
        "RETRIED",
        "SKIPPED",
    }
    assert f"{State.SUCCESS}" == "SUCCESS" and json.dumps(State.SUCCESS) == '"SUCCESS"'
