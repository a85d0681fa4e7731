"""Internal storage objects and the KV store.

- ``storage_files``: one row per file in internal storage (URI, owner namespace/flow/execution/
  task run, size, sha256); the bytes are in the storage backend.
- ``kv_entries``: Kestra's namespace key-value store (typed JSON value, optional expiry).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_files",
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("namespace", sa.String(150), nullable=False),
        sa.Column("flow_id", sa.String(100), nullable=False),
        sa.Column("execution_id", sa.String(40), nullable=True),
        sa.Column("task_run_id", sa.String(40), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("uri"),
    )
    op.create_index("ix_storage_files_execution", "storage_files", ["execution_id"], unique=False)
    op.create_table(
        "kv_entries",
        sa.Column("namespace", sa.String(150), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "key", name="pk_kv_entries"),
    )


def downgrade() -> None:
    op.drop_table("kv_entries")
    op.drop_index("ix_storage_files_execution", table_name="storage_files")
    op.drop_table("storage_files")
