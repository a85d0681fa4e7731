"""Integration fixtures: a live control plane (gRPC on a free port, real Postgres + Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import ServerThread, test_settings


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[ServerThread]:
    """One control plane for the module's tests."""
    srv = ServerThread(test_settings(database_url)).start()
    yield srv
    srv.stop()
