"""gRPC status -> KestrelError mapping, pure and over a real gRPC channel."""

from __future__ import annotations

import grpc
import pytest

from tests.unit.client.kestrel_fake_server import RunningFake
from worker_sdk.client import KestrelClient
from worker_sdk.errors import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    KestrelError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RPCError,
    RPCStatusCode,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    error_for_status,
)


def test_status_codes_match_grpc() -> None:
    for code in grpc.StatusCode:
        assert RPCStatusCode[code.name] == code.value[0]


@pytest.mark.parametrize(
    "status, cls",
    [
        (RPCStatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (RPCStatusCode.OUT_OF_RANGE, InvalidArgumentError),
        (RPCStatusCode.NOT_FOUND, NotFoundError),
        (RPCStatusCode.ALREADY_EXISTS, AlreadyExistsError),
        (RPCStatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (RPCStatusCode.ABORTED, AbortedError),
        (RPCStatusCode.UNAVAILABLE, UnavailableError),
        (RPCStatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (RPCStatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (RPCStatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (RPCStatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (RPCStatusCode.UNIMPLEMENTED, UnimplementedError),
        (RPCStatusCode.INTERNAL, InternalError),
        (RPCStatusCode.DATA_LOSS, InternalError),
        (RPCStatusCode.UNKNOWN, RPCError),
        (RPCStatusCode.CANCELLED, RPCError),
    ],
)
def test_error_for_status_picks_the_subclass(status: RPCStatusCode, cls: type[RPCError]) -> None:
    err = error_for_status(int(status), "the message", server="h:1")
    assert type(err) is cls
    assert isinstance(err, KestrelError)
    assert err.status is status  # the exact status, even when the class is shared
    assert err.message == "the message"
    assert err.server == "h:1"


def test_error_for_status_edge_cases() -> None:
    assert error_for_status(99, "x").status is RPCStatusCode.UNKNOWN
    assert str(error_for_status(RPCStatusCode.NOT_FOUND, "")) == "NOT_FOUND"
    assert NotFoundError("gone").status is RPCStatusCode.NOT_FOUND  # default status per class
    assert "NOT_FOUND" in repr(NotFoundError("gone"))


def test_unavailable_names_the_server() -> None:
    assert str(UnavailableError("refused", server="10.0.0.1:6570")) == (
        "cannot reach the Kestrel server at 10.0.0.1:6570 (refused); is it running "
        "(`kestrel server local`), and is --server / KESTREL_SERVER right?"
    )
    assert UnavailableError("refused", server="10.0.0.1:6570").message == "refused"
    assert str(UnavailableError("refused")) == "cannot reach the Kestrel server (refused)"


@pytest.mark.parametrize(
    "code, cls",
    [
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.ABORTED, AbortedError),
        (grpc.StatusCode.INTERNAL, InternalError),
    ],
)
def test_server_status_becomes_typed_error(
    client: KestrelClient, fake_server: RunningFake, code: grpc.StatusCode, cls: type[RPCError]
) -> None:
    fake_server.fake.fail["GetExecution"] = (code, "execution 'x' of flow demo.hello: the reason")
    with pytest.raises(cls) as info:
        client.get_execution("x")
    assert info.value.message == "execution 'x' of flow demo.hello: the reason"
    assert str(info.value) == info.value.message
    assert info.value.server == fake_server.address


def test_errors_in_streams_are_typed(client: KestrelClient, fake_server: RunningFake) -> None:
    with pytest.raises(NotFoundError, match="execution nope not found"):
        list(client.watch_execution("nope"))
    fake_server.fake.fail["TailLogs"] = (grpc.StatusCode.PERMISSION_DENIED, "no")
    with pytest.raises(PermissionDeniedError):
        list(client.tail_logs("exec-1"))


def test_unreachable_server_is_unavailable(closed_address: str) -> None:
    with KestrelClient(closed_address, timeout=2.0) as client, pytest.raises(UnavailableError) as info:
        client.get_flow("demo", "hello")
    assert str(info.value).startswith(f"cannot reach the Kestrel server at {closed_address} (")
    assert info.value.status is RPCStatusCode.UNAVAILABLE


def test_closed_client_refuses_calls(fake_server: RunningFake) -> None:
    client = KestrelClient(fake_server.address)
    client.close()
    client.close()  # idempotent
    with pytest.raises(KestrelError, match="closed"):
        client.get_execution("x")


def test_constructor_checks_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        KestrelClient("")
    with pytest.raises(ValueError, match="positive"):
        KestrelClient(timeout=0)
