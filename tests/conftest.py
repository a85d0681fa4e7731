"""Shared test fixtures: a fresh Postgres database per test session on the real server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

ADMIN_URL = os.environ.get("KESTREL_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KESTREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _admin_engine() -> sa.Engine:
    return sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a brand-new database on the machine's Postgres, dropped after the session."""
    yield from fresh_database_url()


def fresh_database_url() -> Iterator[str]:
    """Create a brand-new database, yield its URL, drop it (for fixtures that need their own,
    e.g. tests that count everything stored)."""
    name = f"kestrel_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"Postgres is not reachable at {ADMIN_URL} (start it, or run .ci/run): {exc}")
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:  # also when a fixture closes the generator instead of exhausting it
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
