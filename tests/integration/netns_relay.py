"""A byte relay for the network-namespace test: ``tcp2unix PORT SOCKET`` listens on
127.0.0.1:PORT and forwards each connection to a unix socket; ``unix2tcp SOCKET PORT`` the
reverse. Run inside a network namespace, it links that namespace's loopback to the control
plane's loopback through a unix socket on the shared filesystem (loopback traffic only)."""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _serve(mode: str, a: str, b: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if mode == "tcp2unix":
            up_reader, up_writer = await asyncio.open_unix_connection(b)
        else:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(b))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    if mode == "tcp2unix":
        server = await asyncio.start_server(handle, "127.0.0.1", int(a))
    else:
        server = await asyncio.start_unix_server(handle, a)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(*sys.argv[1:4]))
