"""Per-attempt log volume: ``task_run_attempts.log_bytes``.

UTF-8 bytes of log text stored for the attempt, counted by AppendLogs so that
``Settings.max_log_bytes_per_attempt`` holds across replicas and restarts.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_run_attempts", sa.Column("log_bytes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("task_run_attempts", "log_bytes")
