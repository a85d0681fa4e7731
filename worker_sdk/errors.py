"""Errors raised by the Kestrel API client (:mod:`worker_sdk.client`).

Every error is a :class:`KestrelError`. A failed RPC is an :class:`RPCError` carrying an
:class:`RPCStatusCode` and the server's message, raised as the subclass for its status
(:class:`NotFoundError`, :class:`InvalidArgumentError`, ...), so callers branch on a type or on
``err.status`` and never import ``grpc``. The shape follows temporalio's ``service.RPCError`` /
``service.RPCStatusCode``.

This module imports nothing from ``grpc`` or ``kestrel.v1``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "KestrelError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RPCError",
    "RPCStatusCode",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "error_for_status",
]


class RPCStatusCode(IntEnum):
    """gRPC status code of a failed call; values are the gRPC wire codes."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class KestrelError(Exception):
    """Base class of every error the Kestrel client raises.

    Attributes:
        message: Human-readable description; for an RPC failure, the server's message.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ProtocolError(KestrelError):
    """The server answered with something the contract does not allow (e.g. invalid JSON text in
    an ``*_json`` field). Points at a server bug or a client/server version mismatch."""


class RPCError(KestrelError):
    """A gRPC call failed, or the client refused a request before sending it.

    Raised as the subclass matching :attr:`status` (see :func:`error_for_status`); this class
    itself is used for statuses without a dedicated subclass (UNKNOWN, CANCELLED, ...).

    Attributes:
        message: The server's message (gRPC status details), or the client's own for a request
            refused before it was sent.
        status: The gRPC status code.
        server: Address of the server the client talked to (``host:port``), when known.
    """

    #: Status used when none is passed to the constructor.
    default_status: ClassVar[RPCStatusCode] = RPCStatusCode.UNKNOWN

    def __init__(
        self, message: str, status: RPCStatusCode | None = None, *, server: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status if status is not None else self.default_status
        self.server = server

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status.name}, server={self.server!r})"


class InvalidArgumentError(RPCError):
    """The request is invalid (INVALID_ARGUMENT): bad flow source, unknown or mistyped input,
    malformed filter. The message names the field. Also raised by the client itself for arguments
    it can reject before sending (e.g. an unknown state name, inputs that are not JSON)."""

    default_status = RPCStatusCode.INVALID_ARGUMENT


class NotFoundError(RPCError):
    """The flow, revision or execution does not exist (NOT_FOUND)."""

    default_status = RPCStatusCode.NOT_FOUND


class AlreadyExistsError(RPCError):
    """The object to create exists already (ALREADY_EXISTS)."""

    default_status = RPCStatusCode.ALREADY_EXISTS


class FailedPreconditionError(RPCError):
    """The object is not in a state that allows the request (FAILED_PRECONDITION), e.g. killing
    an execution that has already terminated, or starting one of a deleted flow."""

    default_status = RPCStatusCode.FAILED_PRECONDITION


class AbortedError(RPCError):
    """A concurrent change won (ABORTED), e.g. ``expected_revision`` no longer matches the latest
    flow revision. Re-read and retry."""

    default_status = RPCStatusCode.ABORTED


class UnavailableError(RPCError):
    """The server cannot be reached or is shutting down (UNAVAILABLE). Usually transient.

    ``str(err)`` names the server address; :attr:`message` keeps gRPC's own text.
    """

    default_status = RPCStatusCode.UNAVAILABLE

    def __str__(self) -> str:
        if self.server:
            return (
                f"cannot reach the Kestrel server at {self.server} ({self.message}); is it running "
                "(`kestrel server local`), and is --server / KESTREL_SERVER right?"
            )
        return f"cannot reach the Kestrel server ({self.message})"


class DeadlineExceededError(RPCError):
    """The call did not finish within its timeout (DEADLINE_EXCEEDED)."""

    default_status = RPCStatusCode.DEADLINE_EXCEEDED


class PermissionDeniedError(RPCError):
    """The caller may not do this (PERMISSION_DENIED)."""

    default_status = RPCStatusCode.PERMISSION_DENIED


class UnauthenticatedError(RPCError):
    """The call carried no valid credentials (UNAUTHENTICATED)."""

    default_status = RPCStatusCode.UNAUTHENTICATED


class ResourceExhaustedError(RPCError):
    """A limit was hit (RESOURCE_EXHAUSTED): rate limit, message size, quota."""

    default_status = RPCStatusCode.RESOURCE_EXHAUSTED


class UnimplementedError(RPCError):
    """The server does not implement this RPC (UNIMPLEMENTED), e.g. an older server version."""

    default_status = RPCStatusCode.UNIMPLEMENTED


class InternalError(RPCError):
    """The server failed (INTERNAL or DATA_LOSS); a bug or a broken dependency on its side."""

    default_status = RPCStatusCode.INTERNAL


_BY_STATUS: dict[RPCStatusCode, type[RPCError]] = {
    RPCStatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    RPCStatusCode.OUT_OF_RANGE: InvalidArgumentError,
    RPCStatusCode.NOT_FOUND: NotFoundError,
    RPCStatusCode.ALREADY_EXISTS: AlreadyExistsError,
    RPCStatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    RPCStatusCode.ABORTED: AbortedError,
    RPCStatusCode.UNAVAILABLE: UnavailableError,
    RPCStatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    RPCStatusCode.PERMISSION_DENIED: PermissionDeniedError,
    RPCStatusCode.UNAUTHENTICATED: UnauthenticatedError,
    RPCStatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    RPCStatusCode.UNIMPLEMENTED: UnimplementedError,
    RPCStatusCode.INTERNAL: InternalError,
    RPCStatusCode.DATA_LOSS: InternalError,
}


def error_for_status(status: RPCStatusCode | int, message: str, *, server: str | None = None) -> RPCError:
    """Builds the error matching a gRPC status.

    Args:
        status: The status, as :class:`RPCStatusCode` or its integer wire value. An integer
            outside the known codes becomes ``UNKNOWN``.
        message: The server's message; when empty, the status name is used.
        server: Address of the server, for messages that name it.

    Returns:
        An instance of the :class:`RPCError` subclass for ``status`` (OUT_OF_RANGE maps to
        :class:`InvalidArgumentError`, DATA_LOSS to :class:`InternalError`), or a plain
        :class:`RPCError` for statuses without a subclass. ``err.status`` is always the exact
        status received.
    """
    try:
        code = RPCStatusCode(status)
    except ValueError:
        code = RPCStatusCode.UNKNOWN
    cls = _BY_STATUS.get(code, RPCError)
    return cls(message or code.name, code, server=server)
