"""Alembic migrations of the Kestrel schema; :func:`upgrade` applies them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

# An arbitrary constant: the advisory lock that serialises migrations across replicas.
_MIGRATION_LOCK_ID = 0x6B657374


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at this package's scripts and ``database_url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at ``database_url`` to ``revision`` (default: latest).

    Safe to call from several processes at once: a Postgres advisory lock serialises them.

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    engine = create_engine(database_url, future=True)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            cfg = alembic_config(database_url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()
