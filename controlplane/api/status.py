"""Maps the control plane's typed errors to gRPC status codes (DESIGN.md §2)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from sqlalchemy.exc import OperationalError

from controlplane import errors, secrets
from controlplane.model.state import IllegalTransitionError

log = logging.getLogger(__name__)

_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ConflictError, grpc.StatusCode.ABORTED),
    (errors.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ExpressionError, grpc.StatusCode.INVALID_ARGUMENT),
    (IllegalTransitionError, grpc.StatusCode.FAILED_PRECONDITION),
    (OperationalError, grpc.StatusCode.UNAVAILABLE),
    # A message of a client stream that is not valid protobuf (unary requests are decoded
    # before the handler: controlplane/api/decoding.py).
    (DecodeError, grpc.StatusCode.INVALID_ARGUMENT),
]


# gRPC carries the status message in a header; keep it well under the 8 KiB header limit.
_MAX_MESSAGE = 4000


def _fit(message: str) -> str:
    """The status message, cut to fit a gRPC header, saying how much was left out."""
    if len(message) <= _MAX_MESSAGE:
        return message
    lines, kept, size = message.splitlines(), [], 0
    for line in lines:
        if size + len(line) + 1 > _MAX_MESSAGE - 120:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:
        kept = [message[: _MAX_MESSAGE - 120]]
    omitted = len(lines) - len(kept)
    more = f"{omitted} more line(s)" if omitted > 0 else "the rest"
    return "\n".join(kept) + f"\n… ({more} left out; `kestrel flow validate` lists every problem)"


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status code for an expected error, None for a bug (INTERNAL)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return None


def rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a servicer method (unary or server-streaming) so typed errors become statuses."""

    async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
        code = status_for(exc)
        if code is None:
            log.exception("internal error in %s", method.__name__)
            # Never echo internals (SQL, parameters) to callers: the log has the details.
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log")
        if code is grpc.StatusCode.UNAVAILABLE:
            await context.abort(code, "the database is unavailable; retry later")
        await context.abort(code, _fit(secrets.mask(str(exc))))  # an error may quote a value

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
            try:
                async for item in method(self, request, context):
                    yield item
            except (errors.KestrelError, IllegalTransitionError, OperationalError) as exc:
                await _abort(context, exc)
            except Exception as exc:  # a bug: INTERNAL, logged with traceback
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                await _abort(context, exc)

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except (errors.KestrelError, IllegalTransitionError, OperationalError) as exc:
            await _abort(context, exc)
        except Exception as exc:  # a bug: INTERNAL, logged with traceback
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, exc)

    return unary_wrapper
