"""Fuzz over the request messages (issue 7 item 5): for every RPC of every service (enumerated
from the descriptors), hypothesis builds malformed and extreme requests — empty, huge, NUL and
path-traversal strings, out-of-range numbers and enum values, NaN, timestamps past year 9999,
real ids mixed with garbage — and sends them, through the authentication interceptor, to a live
control plane. No call may end INTERNAL or UNKNOWN, and the server keeps serving.

Deterministic (``derandomize``) and sized for CI: ``KESTREL_FUZZ_EXAMPLES`` examples per method
(default 12)."""

from __future__ import annotations

import os

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kestrel.v1 import common_pb2, execution_pb2, flow_pb2, storage_pb2
from tests.conftest import fresh_database_url
from tests.integration.authkit import Method, all_methods, call
from tests.integration.harness import ServerThread, wait_until
from tests.integration.harness import test_settings as settings_for

ADMIN = "kst_admin-bootstrap-token-for-the-fuzz-tests-0123456789"
EXAMPLES = int(os.environ.get("KESTREL_FUZZ_EXAMPLES", "12"))
METHODS = all_methods()
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FLOW = """
id: fuzz
namespace: fuzz.ns
inputs:
  - id: f
    type: FILE
    required: false
  - id: n
    type: INT
    required: false
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 3 * * *"
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
"""

# Real names the server knows, filled by the fixture, mixed into generated strings so requests
# reach past "not found" into the servicers' logic.
POOL: list[str] = ["fuzz.ns", "fuzz", "nightly", "f", "n", "wait", "io.kestra.plugin.core.log.Log"]
NASTY = ["", " ", "\x00", "a\x00b", "x" * 5000, "../../etc/passwd", "kestra:///../../x", "kestra:///",
         "kestra:///fuzz/ns/_files/a.txt", "{{ 7 * 7 }}", "{% for x in range(9999999) %}{% endfor %}", "é🦆",
         "\u202e", "a/b", "a.b.", ".a", "A" * 101, "1" * 40, "null", "[]", "{}", '{"a": NaN}', "[" * 3000,
         "2026-11-30T00:00:00Z/x", "%s%n", "\n", "-1", "Bearer x"]

_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
_INT_RANGES = {F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1),
               F.TYPE_SFIXED32: (-(2**31), 2**31 - 1), F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
               F.TYPE_INT64: (-(2**63), 2**63 - 1), F.TYPE_SINT64: (-(2**63), 2**63 - 1),
               F.TYPE_SFIXED64: (-(2**63), 2**63 - 1), F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1)}


def _ints(kind: int) -> st.SearchStrategy[int]:
    lo, hi = _INT_RANGES[kind]
    return st.one_of(st.sampled_from(sorted({lo, hi, 0, 1, -1 if lo < 0 else 2, 1000, 1001, 10_001})),
                     st.integers(lo, hi))


def _scalar(field) -> st.SearchStrategy:
    t = field.type
    if t == F.TYPE_STRING:
        return st.one_of(st.sampled_from(NASTY), st.sampled_from(POOL), _text)
    if t == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\x00" * 70_000))
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.one_of(st.sampled_from([0.0, -1.0, 1e308, float("nan"), float("inf"), -float("inf"), 1e-300]),
                         st.floats(allow_nan=True, width=32 if t == F.TYPE_FLOAT else 64))
    if t == F.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(values), st.sampled_from([-1, 999, 2**31 - 1]))
    return _ints(t)


def _message(descriptor, depth: int = 0) -> st.SearchStrategy[dict]:
    """A dict of field values for ``descriptor`` (each field present or not)."""
    fields = {}
    for field in descriptor.fields:
        if field.type == F.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                value = st.fixed_dictionaries({"seconds": st.sampled_from(
                    [0, -1, 253402300800, -62135596801, 2**62, 1764460800]), "nanos": st.sampled_from([0, 999_999_999])})
            else:
                value = _message(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields)


def _build(cls, values: dict):
    msg = cls()
    _fill(msg, values)
    return msg


def _fill(msg, values: dict) -> None:
    for name, value in values.items():
        field = msg.DESCRIPTOR.fields_by_name[name]
        if field.type == F.TYPE_MESSAGE:
            if field.is_repeated:
                for item in value:
                    _fill(getattr(msg, name).add(), item)
            elif field.message_type.full_name == "google.protobuf.Timestamp":
                getattr(msg, name).seconds = value["seconds"]
                getattr(msg, name).nanos = value["nanos"]
            else:
                _fill(getattr(msg, name), value)
                getattr(msg, name).SetInParent()
        elif field.is_repeated:
            getattr(msg, name).extend(value)
        else:
            try:
                setattr(msg, name, value)
            except (ValueError, TypeError):  # e.g. a float32 out of range: leave the default
                pass


@pytest.fixture(scope="module")
def fuzz_server():
    gen = fresh_database_url()
    url = next(gen)
    srv = ServerThread(settings_for(url, auth_enabled=True, bootstrap_token=ADMIN, poll_wait_seconds=0.5,
                                    scheduler_enabled=False)).start()
    channel = grpc.insecure_channel(srv.address)
    md = [("authorization", f"Bearer {ADMIN}")]
    from kestrel.v1 import execution_pb2_grpc, flow_pb2_grpc, storage_pb2_grpc

    flows = flow_pb2_grpc.FlowServiceStub(channel)
    executions = execution_pb2_grpc.ExecutionServiceStub(channel)
    flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=FLOW), metadata=md, timeout=30)
    ex = executions.StartExecution(execution_pb2.StartExecutionRequest(namespace="fuzz.ns", flow_id="fuzz"),
                                   metadata=md, timeout=30).execution
    paused = wait_until(lambda: (e := executions.GetExecution(execution_pb2.GetExecutionRequest(id=ex.id), metadata=md,
                                                               timeout=10).execution).task_runs and e,
                        what="execution with a task run")
    executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex.id), metadata=md, timeout=30)
    upload = storage_pb2_grpc.StorageServiceStub(channel).UploadFile(iter([
        storage_pb2.UploadFileRequest(header=storage_pb2.UploadFileHeader(namespace="fuzz.ns", namespace_file="a.txt")),
        storage_pb2.UploadFileRequest(chunk=b"hello")]), metadata=md, timeout=30).file
    POOL.extend([ex.id, paused.task_runs[0].id, upload.uri])
    yield srv, channel
    channel.close()
    srv.stop()
    gen.close()


def _serving(channel) -> bool:
    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("method", METHODS, ids=str)
def test_fuzzed_requests_never_end_internal(fuzz_server, method: Method):
    _, channel = fuzz_server
    strategy = _message(method.request_class.DESCRIPTOR)
    if method.client_streaming:
        strategy = st.lists(strategy, max_size=3)
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(values=strategy)
    def check(values):
        if method.client_streaming:
            request = [_build(method.request_class, v) for v in values]
        else:
            request = _build(method.request_class, values)
        try:
            call(channel, method, request, token=ADMIN, timeout=3.0 if method.server_streaming else 15.0)
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            code = err.code()
            assert code not in BAD, f"{method}: {code} {err.details()} for {request!r:.2000}"
        seen[code.name] = seen.get(code.name, 0) + 1

    check()
    assert _serving(channel)
    assert sum(seen.values()) >= 1


def test_the_server_still_serves_real_calls_after_the_fuzz(fuzz_server):
    _, channel = fuzz_server
    from kestrel.v1 import flow_pb2_grpc

    assert _serving(channel)
    flows = flow_pb2_grpc.FlowServiceStub(channel)
    got = flows.ValidateFlow(flow_pb2.ValidateFlowRequest(source=FLOW.replace("id: fuzz", "id: fuzz2")),
                             metadata=[("authorization", f"Bearer {ADMIN}")], timeout=15)
    assert got.valid, got
    assert common_pb2.State.Name(common_pb2.STATE_SUCCESS) == "STATE_SUCCESS"
