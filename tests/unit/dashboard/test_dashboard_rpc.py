"""Optional RPCs: found by name on the generated code (hidden when absent), requests filled by
field name."""

from __future__ import annotations

import pytest

from dashboard.rpc import (
    EXECUTION_ACTIONS,
    RpcSpec,
    build_request,
    find_rpc,
    first_rpc,
    message_to_dict,
    missing_fields,
    rows_from_response,
)
from kestrel.v1 import common_pb2, execution_pb2, execution_pb2_grpc, log_pb2_grpc

KILL = RpcSpec("Kill", "execution", "ExecutionService", ("NoSuchKill", "KillExecution"), (("id",),))


class _Channel:
    """Enough of a channel for a generated stub to be built (no call is made)."""

    def unary_unary(self, *args, **kwargs):
        return object()

    unary_stream = stream_unary = stream_stream = unary_unary


def test_find_rpc_takes_the_first_declared_name_and_hides_missing_ones() -> None:
    found = find_rpc(KILL)
    assert found is not None and found.name == "KillExecution"
    assert found.request_fields == ["id"]
    assert find_rpc(RpcSpec("X", "execution", "ExecutionService", ("Nope",))) is None
    assert find_rpc(RpcSpec("X", "no_such_module", "S", ("A",))) is None
    assert find_rpc(RpcSpec("X", "execution", "NoSuchService", ("A",))) is None
    # streaming methods are not actions
    assert find_rpc(RpcSpec("X", "execution", "ExecutionService", ("WatchExecution",))) is None


def test_find_rpc_checks_the_stub_with_hasattr() -> None:
    stub = execution_pb2_grpc.ExecutionServiceStub(_Channel())
    assert find_rpc(KILL, stub) is not None

    class OldStub:  # a stub generated before the RPC existed
        pass

    assert find_rpc(KILL, OldStub()) is None
    assert first_rpc([RpcSpec("X", "execution", "ExecutionService", ("Nope",)), KILL]).name == "KillExecution"
    assert first_rpc([RpcSpec("X", "execution", "ExecutionService", ("Nope",))]) is None


def test_build_request_fills_fields_by_name_and_skips_the_rest() -> None:
    rpc = find_rpc(KILL)
    request, used = build_request(rpc, {"id": "ex1", "execution_id": "ex1", "unrelated": 3, "none": None})
    assert isinstance(request, execution_pb2.KillExecutionRequest) and request.id == "ex1"
    assert used == ["id"] and missing_fields(rpc, used) == []
    assert missing_fields(rpc, []) == ["id"]


def test_build_request_converts_labels_json_repeated_and_enum_values() -> None:
    start = find_rpc(RpcSpec("Start", "execution", "ExecutionService", ("StartExecution",)))
    request, _ = build_request(start, {"namespace": "n", "labels": {"team": "data"}, "inputs_json": {"a": 1}})
    assert [(lb.key, lb.value) for lb in request.labels] == [("team", "data")]
    assert request.inputs_json == '{"a": 1}'
    listing = find_rpc(RpcSpec("List", "execution", "ExecutionService", ("ListExecutions",)))
    request, _ = build_request(listing, {"states": [9, 11], "page_size": 5})
    assert list(request.states) == [9, 11] and request.page_size == 5
    logs = find_rpc(RpcSpec("Logs", "log", "LogService", ("ListLogs",)))
    request, _ = build_request(logs, {"min_level": "WARN"})
    assert request.min_level == common_pb2.LOG_LEVEL_WARN
    with pytest.raises(ValueError, match="unknown value"):
        build_request(logs, {"min_level": "LOUD"})
    with pytest.raises(ValueError, match="page_size"):
        build_request(listing, {"page_size": "many"})
    assert log_pb2_grpc.LogServiceStub  # the module the spec names is the generated one


def test_responses_become_rows() -> None:
    response = message_to_dict(
        execution_pb2.ListExecutionsResponse(
            executions=[execution_pb2.Execution(id="a", namespace="n"), execution_pb2.Execution(id="b")]
        )
    )
    rows = rows_from_response(response, ("executions",))
    assert [r["id"] for r in rows] == ["a", "b"] and rows[0]["namespace"] == "n"
    assert rows_from_response({"count": 3}) == []


def test_execution_actions_apply_in_kestras_states() -> None:
    by_title = {spec.title: spec for spec in EXECUTION_ACTIONS}
    assert by_title["Restart"].applies_to("FAILED") and not by_title["Restart"].applies_to("SUCCESS")
    assert by_title["Resume"].applies_to("PAUSED") and not by_title["Resume"].applies_to("RUNNING")
    assert by_title["Replay"].applies_to("SUCCESS") and not by_title["Replay"].applies_to("RUNNING")
    assert by_title["Change labels"].applies_to("RUNNING")
