"""Fixtures of the CLI tests: a CliRunner and the in-process fake of the Kestrel gRPC API."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tests.unit.client.kestrel_fake_server import RunningFake, start_fake


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # The tests pass --server explicitly or rely on the default; a developer's env must not leak in.
    monkeypatch.delenv("KESTREL_SERVER", raising=False)
    monkeypatch.delenv("KESTREL_TIMEOUT", raising=False)
    return CliRunner()


@pytest.fixture
def fake_server() -> Iterator[RunningFake]:
    running = start_fake()
    try:
        yield running
    finally:
        running.server.stop(grace=None)


@pytest.fixture
def closed_address() -> str:
    """``127.0.0.1:<port>`` where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
