"""Fixtures of the client tests: an in-process fake of the Kestrel gRPC API."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.unit.client.kestrel_fake_server import RunningFake, start_fake
from worker_sdk.client import KestrelClient


@pytest.fixture
def fake_server() -> Iterator[RunningFake]:
    running = start_fake()
    try:
        yield running
    finally:
        running.server.stop(grace=None)


@pytest.fixture
def client(fake_server: RunningFake) -> Iterator[KestrelClient]:
    with KestrelClient(fake_server.address, timeout=5.0) as c:
        yield c


@pytest.fixture
def closed_address() -> str:
    """``127.0.0.1:<port>`` where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
