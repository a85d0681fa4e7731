"""Channels to the control plane with an API token and TLS, shared by the client, the worker,
the CLI and the dashboard.

Every channel built here sends ``authorization: Bearer <token>`` on each call when a token is
set, and speaks TLS when a CA, a client certificate or ``tls=True`` is given::

    Connection(token="kst_…", tls_ca="ca.pem")                       # server TLS
    Connection(token="kst_…", tls_ca="ca.pem", tls_cert="w.pem", tls_key="w.key")   # mutual TLS

Defaults come from the environment: ``KESTREL_TOKEN``, ``KESTREL_TLS_CA``, ``KESTREL_TLS_CERT``,
``KESTREL_TLS_KEY`` (see :meth:`Connection.from_env`). The token is never logged nor shown in
``repr``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

__all__ = ["Connection"]

_ENV = {"token": "KESTREL_TOKEN", "tls_ca": "KESTREL_TLS_CA", "tls_cert": "KESTREL_TLS_CERT",
        "tls_key": "KESTREL_TLS_KEY"}


@dataclass(frozen=True)
class Connection:
    """How to reach a control plane: API token and TLS files (all optional).

    Attributes:
        token: API token sent as a bearer token; None = none.
        tls_ca: PEM CA bundle that signed the server's certificate (None with TLS on = the
            system roots).
        tls_cert: PEM client certificate (mutual TLS), with ``tls_key``.
        tls_key: PEM private key of ``tls_cert``.
        tls: Use TLS even without any file (public CA); implied by any file.
    """

    token: str | None = field(default=None, repr=False)
    tls_ca: str | Path | None = None
    tls_cert: str | Path | None = None
    tls_key: str | Path | None = None
    tls: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Connection:
        """Settings from ``KESTREL_TOKEN``/``KESTREL_TLS_*``, with non-None ``overrides`` on top."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {k: env.get(name) or None for k, name in _ENV.items()}
        values["tls"] = env.get("KESTREL_TLS", "").lower() in ("1", "true", "yes")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def uses_tls(self) -> bool:
        """Whether channels speak TLS."""
        return bool(self.tls or self.tls_ca or self.tls_cert or self.tls_key)

    def env(self) -> dict[str, str]:
        """The environment variables that give a child process (a worker, the dashboard) the same
        settings (only those that are set)."""
        values = {"token": self.token, "tls_ca": self.tls_ca, "tls_cert": self.tls_cert, "tls_key": self.tls_key}
        out = {_ENV[k]: str(v) for k, v in values.items() if v}
        if self.tls:
            out["KESTREL_TLS"] = "1"
        return out

    def credentials(self) -> grpc.ChannelCredentials:
        """SSL channel credentials.

        Raises:
            ValueError: only one of cert/key, or a file that cannot be read (named).
        """
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS client certificate: give both --tls-cert and --tls-key (KESTREL_TLS_CERT/KEY)")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.tls_ca, "--tls-ca"), private_key=_read(self.tls_key, "--tls-key"),
            certificate_chain=_read(self.tls_cert, "--tls-cert"),
        )

    def channel(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A synchronous channel to ``target`` with these settings."""
        if self.uses_tls:
            channel = grpc.secure_channel(target, self.credentials(), options=list(options))
        else:
            channel = grpc.insecure_channel(target, options=list(options))
        if self.token:
            channel = grpc.intercept_channel(channel, _SyncBearer(self.token))
        return channel

    def aio_channel(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """An asyncio channel to ``target`` with these settings (for the worker)."""
        interceptors = _aio_bearer(self.token) if self.token else None
        if self.uses_tls:
            return grpc.aio.secure_channel(target, self.credentials(), options=list(options), interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)


def _read(path: str | Path | None, option: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None


def _with_token(metadata: Any, token: str) -> list[tuple[str, str]]:
    items = [(k, v) for k, v in (metadata or ()) if k.lower() != "authorization"]
    items.append(("authorization", f"Bearer {token}"))
    return items


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                  "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class _SyncBearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the bearer token to every call of a synchronous channel."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "_SyncBearer(<token>)"

    def _details(self, d: grpc.ClientCallDetails) -> _Details:
        return _Details(d.method, d.timeout, _with_token(d.metadata, self._token), d.credentials,
                        getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _aio_bearer(token: str) -> list[grpc.aio.ClientInterceptor]:
    """One asyncio interceptor per call kind, each adding the bearer token."""

    def details(d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return d._replace(metadata=grpc.aio.Metadata(*_with_token(d.metadata, token)))

    class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation, client_call_details, request):
            return await continuation(details(client_call_details), request)

    class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation, client_call_details, request):
            return await continuation(details(client_call_details), request)

    class StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
        async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
            return await continuation(details(client_call_details), request_iterator)

    class StreamStream(grpc.aio.StreamStreamClientInterceptor):
        async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
            return await continuation(details(client_call_details), request_iterator)

    return [UnaryUnary(), UnaryStream(), StreamUnary(), StreamStream()]
