"""Alembic migrations create exactly the schema ``controlplane/store/tables.py`` describes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from controlplane.store.migrations import alembic_config, upgrade
from controlplane.store.tables import metadata


def test_migrations_match_the_table_definitions_and_are_idempotent(database_url):
    upgrade(database_url)
    upgrade(database_url)  # a second run (another replica starting) changes nothing
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert diff == [], f"tables.py and the migrations disagree; add a migration: {diff}"
    heads = ScriptDirectory.from_config(alembic_config(database_url)).get_heads()
    assert heads == [version], f"one linear chain ending at the applied revision, got heads {heads}"
