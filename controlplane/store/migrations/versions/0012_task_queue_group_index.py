"""A partial index on ``task_queue.group_id``: the reaper looks for WorkingDirectory children
waiting for a vanished worker every second; without it that is a scan of the whole queue.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_task_queue_group", "task_queue", ["group_id"], postgresql_where=sa.text("group_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_task_queue_group", table_name="task_queue")
