"""Initial schema: flows, executions, task runs, attempts, queues, workers, logs, settings.

Revision ID: 0001
Revises:
"""

from alembic import op

from controlplane.store.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = [
    "settings", "flows", "executions", "task_runs", "task_run_attempts", "task_queue",
    "executor_queue", "workers", "logs",
]


def upgrade() -> None:
    # The first revision creates the tables exactly as controlplane/store/tables.py describes
    # them at this revision; later revisions use explicit op.* calls.
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[name] for name in _TABLES])


def downgrade() -> None:
    bind = op.get_bind()
    metadata.drop_all(bind, tables=[metadata.tables[name] for name in reversed(_TABLES)])
