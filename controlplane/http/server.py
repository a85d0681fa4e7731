"""uvicorn serving an ASGI app inside the running event loop, on a socket bound up front (so
port 0 gives a known free port and a taken port fails at start, with its number)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import uvicorn


class HttpServer:
    """One uvicorn server.

    Args:
        app: The ASGI application.
        host: Interface to bind.
        port: Port (0 = a free one).
    """

    def __init__(self, app: Any, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving; returns the bound port.

        Raises:
            RuntimeError: the port cannot be bound (message names host and port).
        """
        sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"cannot bind HTTP port {self._host}:{self._port}: {exc.strerror}") from None
        sock.listen(256)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, lifespan="off", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        return self.port

    async def stop(self) -> None:
        """Stop accepting connections and finish the requests in progress."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 10)
