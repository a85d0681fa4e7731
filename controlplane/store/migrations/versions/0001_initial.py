"""Initial schema: flows, executions, task runs, attempts, queues, workers, logs, settings.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("namespace", sa.String(length=150), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("flow_revision", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("histories", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("inputs", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("outputs", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column("labels", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("original_id", sa.String(length=40), nullable=True),
        sa.Column("trigger", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("kill_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "flow_id", "request_id", name="uq_executions_request_id"),
    )
    op.create_index("ix_executions_created", "executions", ["created_at"], unique=False)
    op.create_index(
        "ix_executions_listing", "executions", ["namespace", "flow_id", "created_at"], unique=False
    )
    op.create_index("ix_executions_state", "executions", ["state"], unique=False)
    op.create_table(
        "flows",
        sa.Column("namespace", sa.String(length=150), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "flow_id", "revision"),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("hostname", sa.String(length=255), server_default="", nullable=False),
        sa.Column("sdk", sa.String(length=100), server_default="", nullable=False),
        sa.Column("task_types", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("worker_group", sa.String(length=100), server_default="", nullable=False),
        sa.Column("labels", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("concurrency", sa.Integer(), server_default="1", nullable=False),
        sa.Column("state", sa.String(length=20), server_default="ACTIVE", nullable=False),
        sa.Column(
            "registered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "last_heartbeat_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "executor_queue",
        sa.Column("execution_id", sa.String(length=40), nullable=False),
        sa.Column(
            "available_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("execution_id"),
    )
    op.create_index("ix_executor_queue_available", "executor_queue", ["available_at"], unique=False)
    op.create_table(
        "logs",
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(length=40), nullable=False),
        sa.Column("task_run_id", sa.String(length=40), nullable=True),
        sa.Column("task_id", sa.String(length=100), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_logs_execution", "logs", ["execution_id", "seq"], unique=False)
    op.create_table(
        "task_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("execution_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=100), nullable=False),
        sa.Column("task_type", sa.String(length=300), nullable=False),
        sa.Column("worker_group", sa.String(length=100), server_default="", nullable=False),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("branch", sa.String(length=100), server_default="tasks", nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("histories", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_epoch", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("worker_id", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("properties", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column("timeout_seconds", sa.Double(), nullable=True),
        sa.Column("outputs", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("redeliveries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("execution_id", "seq", name="uq_task_runs_seq"),
    )
    op.create_index(
        "ix_task_runs_lease",
        "task_runs",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'RUNNING'"),
    )
    op.create_index(
        "ix_task_runs_worker",
        "task_runs",
        ["worker_id"],
        unique=False,
        postgresql_where=sa.text("state = 'RUNNING'"),
    )
    op.create_index(
        "uq_task_runs_identity",
        "task_runs",
        [
            "execution_id",
            sa.literal_column("coalesce(parent_id, '')"),
            "task_id",
            sa.literal_column("coalesce(value, '')"),
        ],
        unique=True,
    )
    op.create_table(
        "task_queue",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("task_run_id", sa.String(length=40), nullable=False),
        sa.Column("task_type", sa.String(length=300), nullable=False),
        sa.Column("worker_group", sa.String(length=100), server_default="", nullable=False),
        sa.Column(
            "available_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(["task_run_id"], ["task_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_run_id"),
    )
    op.create_index("ix_task_queue_claim", "task_queue", ["task_type", "worker_group", "id"], unique=False)
    op.create_table(
        "task_run_attempts",
        sa.Column("task_run_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("histories", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("worker_id", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=50), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["task_run_id"], ["task_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_run_id", "attempt"),
    )


def downgrade() -> None:
    op.drop_table("task_run_attempts")
    op.drop_index("ix_task_queue_claim", table_name="task_queue")
    op.drop_table("task_queue")
    op.drop_index("uq_task_runs_identity", table_name="task_runs")
    op.drop_index(
        "ix_task_runs_worker", table_name="task_runs", postgresql_where=sa.text("state = 'RUNNING'")
    )
    op.drop_index("ix_task_runs_lease", table_name="task_runs", postgresql_where=sa.text("state = 'RUNNING'"))
    op.drop_table("task_runs")
    op.drop_index("ix_logs_execution", table_name="logs")
    op.drop_table("logs")
    op.drop_index("ix_executor_queue_available", table_name="executor_queue")
    op.drop_table("executor_queue")
    op.drop_table("workers")
    op.drop_table("settings")
    op.drop_table("flows")
    op.drop_index("ix_executions_state", table_name="executions")
    op.drop_index("ix_executions_listing", table_name="executions")
    op.drop_index("ix_executions_created", table_name="executions")
    op.drop_table("executions")
