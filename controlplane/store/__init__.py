"""Postgres state: table definitions, migrations and repository functions (connection first)."""
