"""The gRPC server interceptor that authenticates every call with a bearer API token.

Each call must carry ``authorization: Bearer <token>`` in its metadata. A missing, malformed,
unknown (tampered), expired or revoked token ends the call with UNAUTHENTICATED; a role that may
not call the method (:mod:`controlplane.auth.policy`) with PERMISSION_DENIED. The verified
:class:`~controlplane.auth.tokens.Principal` is then visible to the servicer through
:func:`controlplane.api.access.current`, which checks namespace scope.

Lookups are cached per token hash for ``cache_seconds`` (default 5): a revoked token stops
working on every replica within that time.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from controlplane.api import access
from controlplane.auth import policy
from controlplane.auth import store as token_store
from controlplane.auth.tokens import Principal, token_hash

log = logging.getLogger(__name__)

_CACHE_SIZE = 10_000
_MAX_TOKEN_LENGTH = 512


class TokenVerifier:
    """Turns a presented bearer token into a :class:`Principal` (Postgres, with a short cache).

    Args:
        engine: The control plane's database.
        cache_seconds: How long a lookup (positive or negative) is reused; 0 = never.
    """

    def __init__(self, engine: AsyncEngine, cache_seconds: float = 5.0) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[str, tuple[float, Principal | None, str]] = OrderedDict()

    async def verify(self, token: str) -> tuple[Principal | None, str]:
        """(principal, "") for a usable token, else (None, a reason that never quotes the token)."""
        key = token_hash(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._cache_seconds:
            principal, why = hit[1], hit[2]
        else:
            async with self._engine.connect() as conn:
                principal, why = await token_store.lookup(conn, token)
            if self._cache_seconds > 0:
                self._cache[key] = (now, principal, why)
                self._cache.move_to_end(key)
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        if principal is not None and principal.expires_at is not None and principal.expires_at.timestamp() <= time.time():
            return None, f"API token {principal.token_id} is expired"
        return principal, why


def bearer_token(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer …`` metadata entry, None when there is none."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip()
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method handler (except the health check) with authentication.

    The check runs inside the call's own task, so the principal it sets is the one the servicer
    reads (a context variable), and a refusal is a normal status, never an INTERNAL error.
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def _authenticate(self, method: str, context: grpc.aio.ServicerContext) -> None:
        token = bearer_token(context.invocation_metadata())
        if not token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing API token: send 'authorization: Bearer <token>' (kestrel --token / KESTREL_TOKEN)")
        if len(token) > _MAX_TOKEN_LENGTH:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API token")
        try:
            principal, why = await self._verifier.verify(token)
        except Exception:  # the database is down: not the caller's fault, and never INTERNAL
            log.warning("API token lookup failed for %s", method, exc_info=True)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "cannot verify the API token now; retry later")
        if principal is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, why or "invalid API token")
        if not policy.allowed(principal.role, method):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"a {principal.role.value} token may not call {method.rsplit('/', 2)[-2]}."
                                f"{method.rsplit('/', 1)[-1]}")
        access.set_current(principal)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or policy.is_public(method):
            return handler
        return _wrap(handler, method, self._authenticate)


def _wrap(handler: grpc.RpcMethodHandler, method: str, authenticate) -> grpc.RpcMethodHandler:
    """``handler`` with ``authenticate(method, context)`` run before its behaviour."""
    common = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request, context):
            await authenticate(method, context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **common)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request, context):
            await authenticate(method, context)
            async for item in inner_us(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, **common)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(request_iterator, context):
            await authenticate(method, context)
            return await inner_su(request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **common)
    inner_ss = handler.stream_stream

    async def stream_stream(request_iterator, context):
        await authenticate(method, context)
        async for item in inner_ss(request_iterator, context):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, **common)
