"""End-to-end fixtures: a live control plane and worker processes, driven by the real CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import ServerThread, test_settings, worker_process


@pytest.fixture(scope="module")
def live(database_url: str) -> Iterator[ServerThread]:
    """A control plane with two worker processes, as `kestrel server local` runs them."""
    srv = ServerThread(test_settings(database_url)).start()
    with worker_process(srv.address, concurrency=2), worker_process(srv.address, concurrency=2):
        yield srv
    srv.stop()
