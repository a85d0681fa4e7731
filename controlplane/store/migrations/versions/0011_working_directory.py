"""WorkingDirectory groups: ``task_runs.group_id`` and ``task_queue.group_id``.

The WorkingDirectory task run a runnable child belongs to; a queue row with a group is claimed
only by the worker the group is pinned to (``controlplane.store.working_directories``).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_runs", sa.Column("group_id", sa.String(40), nullable=True))
    op.add_column("task_queue", sa.Column("group_id", sa.String(40), nullable=True))


def downgrade() -> None:
    op.drop_column("task_queue", "group_id")
    op.drop_column("task_runs", "group_id")
