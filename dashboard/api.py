"""The dashboard's connection to the control plane: one :class:`KestrelClient` plus generated stubs
for the optional RPCs (see :mod:`dashboard.rpc`), shared by every session of the Streamlit
process. Everything goes through gRPC; the dashboard never sees the database.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import streamlit as st

from dashboard import SERVER_ENV
from dashboard.rpc import OptionalRpc, RpcSpec, build_request, find_rpc, message_to_dict, missing_fields
from worker_sdk.client import DEFAULT_SERVER, KestrelClient
from worker_sdk.connection import Connection as ChannelSettings
from worker_sdk.errors import RPCError, error_for_status

_T = TypeVar("_T")

#: Deadline of each unary call the dashboard makes, in seconds.
CALL_TIMEOUT = 15.0


@dataclass
class Connection:
    """A client and a channel to one control plane.

    Attributes:
        server: ``host:port``.
        client: The typed client (flows, executions, logs).
        channel: A gRPC channel for generated stubs of optional RPCs.
    """

    server: str
    client: KestrelClient
    channel: grpc.Channel
    _stubs: dict[tuple[str, str], Any] = field(default_factory=dict)

    def stub(self, module: str, service: str) -> Any | None:
        """The generated stub ``kestrel.v1.<module>_pb2_grpc.<service>Stub`` on the channel, or
        ``None`` when the generated code has no such service."""
        key = (module, service)
        if key not in self._stubs:
            try:
                grpc_module = importlib.import_module(f"kestrel.v1.{module}_pb2_grpc")
                self._stubs[key] = getattr(grpc_module, f"{service}Stub")(self.channel)
            except (ImportError, AttributeError):
                self._stubs[key] = None
        return self._stubs[key]

    def find(self, spec: RpcSpec) -> OptionalRpc | None:
        """The optional RPC ``spec`` if the generated stub has it (``hasattr`` on the stub)."""
        stub = self.stub(spec.module, spec.service)
        return find_rpc(spec, stub) if stub is not None else None

    def call(self, rpc: OptionalRpc, values: Mapping[str, Any]) -> dict[str, Any]:
        """Calls an optional RPC with a request filled from ``values``; the response as a dict.

        Raises:
            ValueError: A value does not fit, or a needed field could not be filled.
            RPCError: The call failed (the subclass for its status, with the server's message).
        """
        request, used = build_request(rpc, values)
        missing = missing_fields(rpc, used)
        if missing:
            raise ValueError(f"{rpc.name}: cannot fill request field(s) {', '.join(missing)}")
        stub = self.stub(rpc.spec.module, rpc.spec.service)
        try:
            response = getattr(stub, rpc.name)(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            status = code.value[0] if isinstance(code, grpc.StatusCode) else 2
            details = err.details() if isinstance(err, grpc.Call) else str(err)
            raise error_for_status(status, details or "", server=self.server) from None
        return message_to_dict(response)


def server_address() -> str:
    """The control plane's ``host:port``: ``$KESTREL_SERVER`` or ``127.0.0.1:6570``."""
    return os.environ.get(SERVER_ENV, "").strip() or DEFAULT_SERVER


@st.cache_resource(show_spinner=False)
def _connection(server: str) -> Connection:
    channel = ChannelSettings.from_env().channel(
        server,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    return Connection(server, KestrelClient(server, timeout=CALL_TIMEOUT), channel)


def connection() -> Connection:
    """The shared connection to :func:`server_address`."""
    return _connection(server_address())


def client() -> KestrelClient:
    """The shared typed client."""
    return connection().client


def timed(fn: Callable[[], _T]) -> tuple[_T, float]:
    """``(fn(), milliseconds it took)``."""
    start = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - start) * 1000.0


def show_error(err: Exception, what: str) -> None:
    """One readable error box for a failed call (no traceback): ``what`` and the server's words."""
    if isinstance(err, RPCError):
        st.error(f"{what}: {err.message} ({err.status.name}, server {connection().server})")
    else:
        st.error(f"{what}: {err}")
