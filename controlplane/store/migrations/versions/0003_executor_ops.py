"""Executor operations: subflow links and flow concurrency limits.

- ``executions.caller_execution_id`` / ``executions.caller_task_run_id``: the execution and
  Subflow task run that started this execution (Kestra's subflow ``trigger``); indexed so a
  killed parent finds its children and a finished child wakes its parent.
- ``executions.concurrency_slot``: the execution holds one of its flow's ``concurrency.limit``
  slots (taken when it starts, freed exactly once when it ends).
- ``flow_concurrency``: one row per flow with a limit, the number of slots in use; row-locked
  (``FOR UPDATE``) by every start and end so the count is exact under a burst of starts.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("executions", sa.Column("caller_execution_id", sa.String(length=40), nullable=True))
    op.add_column("executions", sa.Column("caller_task_run_id", sa.String(length=40), nullable=True))
    op.add_column(
        "executions", sa.Column("concurrency_slot", sa.Boolean(), server_default="false", nullable=False)
    )
    op.create_index(
        "ix_executions_caller",
        "executions",
        ["caller_execution_id"],
        unique=False,
        postgresql_where=sa.text("caller_execution_id IS NOT NULL"),
    )
    op.create_index(
        "ix_executions_queued",
        "executions",
        ["namespace", "flow_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'QUEUED'"),
    )
    op.create_table(
        "flow_concurrency",
        sa.Column("namespace", sa.String(length=150), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("running", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("namespace", "flow_id"),
    )


def downgrade() -> None:
    op.drop_table("flow_concurrency")
    op.drop_index("ix_executions_queued", table_name="executions")
    op.drop_index("ix_executions_caller", table_name="executions")
    op.drop_column("executions", "concurrency_slot")
    op.drop_column("executions", "caller_task_run_id")
    op.drop_column("executions", "caller_execution_id")
