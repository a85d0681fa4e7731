"""Scheduler and trigger state.

- ``triggers``: one row per trigger of a flow (Schedule, ScheduleOnDates, Flow, Webhook): its
  next fire date, the last date fired, the enabled flag set by the API / ``stopAfter``, a
  backfill in progress and condition-window state.
- ``trigger_fires``: one row per fired tick or event, in the same transaction as the execution
  it created. Unique on (namespace, flow, trigger id, scheduled date) and on (namespace, flow,
  trigger id, event key): a tick or an upstream event can never start two executions, whatever
  the number of schedulers.
- ``scheduler_cursors``: watermarks (e.g. how far the executions table was scanned for Flow
  triggers).
- ``executions.updated_at`` indexed: the Flow-trigger scan reads executions changed recently.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "triggers",
        sa.Column("namespace", sa.String(150), nullable=False),
        sa.Column("flow_id", sa.String(100), nullable=False),
        sa.Column("trigger_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("type", sa.String(300), nullable=False),
        sa.Column("flow_revision", sa.Integer(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False, server_default=""),
        sa.Column("next_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("backfill", postgresql.JSONB(), nullable=True),
        sa.Column("state", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("namespace", "flow_id", "trigger_id"),
    )
    op.create_index("ix_triggers_due", "triggers", ["next_date"], unique=False,
                    postgresql_where=sa.text("next_date IS NOT NULL"))
    op.create_table(
        "trigger_fires",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(150), nullable=False),
        sa.Column("flow_id", sa.String(100), nullable=False),
        sa.Column("trigger_id", sa.String(100), nullable=False),
        sa.Column("scheduled_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_key", sa.String(200), nullable=True),
        sa.Column("execution_id", sa.String(40), nullable=True),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "flow_id", "trigger_id", "scheduled_date", name="uq_trigger_fires_date"),
        sa.UniqueConstraint("namespace", "flow_id", "trigger_id", "event_key", name="uq_trigger_fires_event"),
    )
    op.create_table(
        "scheduler_cursors",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_executions_updated", "executions", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_executions_updated", table_name="executions")
    op.drop_table("scheduler_cursors")
    op.drop_table("trigger_fires")
    op.drop_index("ix_triggers_due", table_name="triggers")
    op.drop_table("triggers")
