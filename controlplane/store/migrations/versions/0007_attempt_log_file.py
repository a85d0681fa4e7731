"""Task ``logToFile``: ``task_run_attempts.log_file``.

The internal-storage URI of the file holding an attempt's log lines (Kestra's
``TaskRunAttempt.logFile``), written once the attempt has ended; null otherwise.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_run_attempts", sa.Column("log_file", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("task_run_attempts", "log_file")
