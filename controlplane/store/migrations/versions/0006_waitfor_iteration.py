"""WaitFor rounds: ``task_runs.iteration``.

Which round of a WaitFor loop a child task run belongs to (0 outside WaitFor); part of the
task-run identity index, so each round can run the same child tasks again.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _identity(*extra: str) -> None:
    op.create_index(
        "uq_task_runs_identity",
        "task_runs",
        ["execution_id", sa.literal_column("coalesce(parent_id, '')"), "task_id",
         sa.literal_column("coalesce(value, '')"), *extra],
        unique=True,
    )


def upgrade() -> None:
    op.add_column("task_runs", sa.Column("iteration", sa.Integer(), server_default="0", nullable=False))
    op.drop_index("uq_task_runs_identity", table_name="task_runs")
    _identity("iteration")


def downgrade() -> None:
    op.drop_index("uq_task_runs_identity", table_name="task_runs")
    _identity()
    op.drop_column("task_runs", "iteration")
