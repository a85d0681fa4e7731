"""Requests that are not valid protobuf (e.g. invalid UTF-8 in a ``string`` field, which a
worker in another language can send) get INVALID_ARGUMENT naming the message, instead of gRPC's
UNKNOWN and a server traceback; log lines are the exception: ``AppendLogs`` stores them with
each invalid UTF-8 sequence replaced by U+FFFD (task output is evidence, issue 7 item 5).

:class:`DecodeInterceptor` wraps each unary-request handler's deserializer; streaming requests
(file uploads, bytes only) are left as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor
from google.protobuf.message import DecodeError

from kestrel.v1 import log_pb2


class _Undecodable:
    """Stands for a request that could not be parsed (the handler answers INVALID_ARGUMENT)."""

    __slots__ = ("error", "message_type")

    def __init__(self, message_type: str, error: str) -> None:
        self.message_type = message_type
        self.error = error


def _bytes_twin_pool(file: FileDescriptor) -> descriptor_pool.DescriptorPool:
    """A pool holding ``file`` and its imports with every ``string`` field turned into ``bytes``
    (same field numbers and wire format, so any UTF-8 error parses)."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(f: FileDescriptor) -> None:
        if f.name in added:
            return
        for dep in f.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        f.CopyToProto(proto)
        stack = list(proto.message_type)
        while stack:
            msg = stack.pop()
            stack.extend(msg.nested_type)
            for field in msg.field:
                if field.type == FieldDescriptor.TYPE_STRING:
                    field.type = FieldDescriptor.TYPE_BYTES
        pool.Add(proto)
        added.add(f.name)

    add(file)
    return pool


_LOG_TWIN = message_factory.GetMessageClass(
    _bytes_twin_pool(log_pb2.DESCRIPTOR).FindMessageTypeByName("kestrel.v1.AppendLogsRequest"))


def _lenient_append_logs(data: bytes) -> log_pb2.AppendLogsRequest:
    """Parse an AppendLogsRequest whose strings may hold invalid UTF-8 (replaced by U+FFFD).

    Raises:
        DecodeError: not even the wire format is valid.
    """
    twin = _LOG_TWIN.FromString(data)
    request = log_pb2.AppendLogsRequest(task_token=twin.task_token.decode("utf-8", "replace"))
    for entry in twin.entries:
        out = request.entries.add(level=entry.level, message=entry.message.decode("utf-8", "replace"))
        if entry.HasField("timestamp"):
            out.timestamp.seconds, out.timestamp.nanos = entry.timestamp.seconds, entry.timestamp.nanos
    return request


_LENIENT: dict[str, Callable[[bytes], Any]] = {"/kestrel.v1.LogService/AppendLogs": _lenient_append_logs}


class DecodeInterceptor(grpc.aio.ServerInterceptor):
    """Turns undecodable unary requests into INVALID_ARGUMENT (see the module docstring).

    The wrapped handler of a method is built once and reused while the handler under it is the
    same object (grpc looks a method's handler up in a table: every call of it gets the same)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(self, continuation, handler_call_details):  # noqa: D102 - grpc API
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(handler, method)
        if handler is not None and len(self._wrapped) < 1000:  # methods of the services served
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    @staticmethod
    def _wrap(handler, method: str):
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        strict = handler.request_deserializer
        lenient = _LENIENT.get(method)
        name = method.rsplit("/", 1)[-1] + "Request"

        def deserialize(data: bytes) -> Any:
            try:
                return strict(data)
            except DecodeError as exc:
                if lenient is not None:
                    try:
                        return lenient(data)
                    except DecodeError:
                        pass
                return _Undecodable(name, str(exc))

        if handler.unary_unary is not None:
            behaviour = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, _Undecodable):
                    await _abort(context, request)
                return await behaviour(request, context)

            return handler._replace(request_deserializer=deserialize, unary_unary=unary)
        behaviour = handler.unary_stream
        if behaviour is None or not inspect.isasyncgenfunction(behaviour):
            return handler

        async def stream(request: Any, context: grpc.aio.ServicerContext):
            if isinstance(request, _Undecodable):
                await _abort(context, request)
            async for item in behaviour(request, context):
                yield item

        return handler._replace(request_deserializer=deserialize, unary_stream=stream)


async def _abort(context: grpc.aio.ServicerContext, request: _Undecodable) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"request: not a valid {request.message_type} message ({request.error})")
