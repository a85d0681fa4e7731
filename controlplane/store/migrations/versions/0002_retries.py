"""Durable retries: the task run's next-attempt timer and the retry chain of executions.

- ``task_runs.next_attempt_at``: when the executor sweep starts a task run's next attempt (a
  RETRYING task run's retry date), or creates the new execution of a RETRIED one (retry
  ``behavior: CREATE_NEW_EXECUTION``); indexed where set.
- ``executions.attempt_number`` / ``executions.original_created_at``: Kestra's
  ``metadata.attemptNumber`` and ``metadata.originalCreatedDate`` for CREATE_NEW_EXECUTION retries.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_runs", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_task_runs_next_attempt",
        "task_runs",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
    )
    op.add_column(
        "executions", sa.Column("attempt_number", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column("executions", sa.Column("original_created_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("executions", "original_created_at")
    op.drop_column("executions", "attempt_number")
    op.drop_index("ix_task_runs_next_attempt", table_name="task_runs")
    op.drop_column("task_runs", "next_attempt_at")
