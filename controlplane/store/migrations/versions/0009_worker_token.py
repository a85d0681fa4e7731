"""Workers remember the API token that registered them: ``workers.auth_token_id``.

A worker token may then poll, heartbeat, report and shut down only as the workers it registered.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("auth_token_id", sa.String(40)))


def downgrade() -> None:
    op.drop_column("workers", "auth_token_id")
