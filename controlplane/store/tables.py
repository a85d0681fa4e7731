"""SQLAlchemy Core table definitions: the single description of the Postgres schema.

Alembic migrations in ``migrations/versions`` create exactly these tables. Times are
``timestamptz`` in UTC; JSON is ``jsonb``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

settings = Table(
    "settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

flows = Table(
    "flows",
    metadata,
    Column("namespace", String(150), nullable=False),
    Column("flow_id", String(100), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("spec", JSONB, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("namespace", "flow_id", "revision"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("namespace", String(150), nullable=False),
    Column("flow_id", String(100), nullable=False),
    Column("flow_revision", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("histories", JSONB, nullable=False),
    Column("inputs", JSONB, nullable=False),
    Column("outputs", JSONB),
    Column("labels", JSONB, nullable=False),
    Column("parent_id", String(40)),
    Column("original_id", String(40)),
    Column("trigger", JSONB),
    Column("error", Text),
    Column("kill_requested", Boolean, nullable=False, server_default="false"),
    Column("request_id", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Retries with behavior CREATE_NEW_EXECUTION (Kestra's metadata.attemptNumber and
    # originalCreatedDate): n-th execution of the chain, and when the chain's first was created.
    Column("attempt_number", Integer, nullable=False, server_default="1"),
    Column("original_created_at", DateTime(timezone=True)),
    # Subflows (migration 0003): the execution and Subflow task run that started this one.
    Column("caller_execution_id", String(40)),
    Column("caller_task_run_id", String(40)),
    # Holds one of its flow's concurrency.limit slots (taken at start, freed once at the end).
    Column("concurrency_slot", Boolean, nullable=False, server_default="false"),
    UniqueConstraint("namespace", "flow_id", "request_id", name="uq_executions_request_id"),
    Index("ix_executions_listing", "namespace", "flow_id", "created_at"),
    Index("ix_executions_created", "created_at"),
    Index("ix_executions_state", "state"),
    Index("ix_executions_updated", "updated_at"),  # Flow-trigger scan (migration 0005)
    Index("ix_executions_caller", "caller_execution_id", postgresql_where=text("caller_execution_id IS NOT NULL")),
    Index("ix_executions_queued", "namespace", "flow_id", "created_at", postgresql_where=text("state = 'QUEUED'")),
)

# Flow concurrency limits (migration 0003): slots in use per flow, row-locked by starts and ends.
flow_concurrency = Table(
    "flow_concurrency",
    metadata,
    Column("namespace", String(150), nullable=False),
    Column("flow_id", String(100), nullable=False),
    Column("running", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("namespace", "flow_id"),
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("execution_id", String(40), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("task_id", String(100), nullable=False),
    Column("task_type", String(300), nullable=False),
    Column("worker_group", String(100), nullable=False, server_default=""),
    Column("parent_id", String(40)),
    Column("value", Text),
    Column("branch", String(100), nullable=False, server_default="tasks"),
    Column("state", String(20), nullable=False),
    Column("histories", JSONB, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("lease_epoch", BigInteger, nullable=False, server_default="0"),
    Column("worker_id", String(100)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("properties", JSONB),
    Column("timeout_seconds", Double),
    Column("outputs", JSONB),
    Column("error", Text),
    Column("redeliveries", Integer, nullable=False, server_default="0"),
    Column("cancel_requested", Boolean, nullable=False, server_default="false"),
    Column("ready_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    # Durable retry timer: when the executor sweep starts the next attempt (or, for a RETRIED
    # task run, creates the new execution). Survives a control-plane restart.
    Column("next_attempt_at", DateTime(timezone=True)),
    # WaitFor round of a child task run, 0 elsewhere (migration 0006).
    Column("iteration", Integer, nullable=False, server_default="0"),
    # The WorkingDirectory task run whose directory this (runnable) task run runs in, if any
    # (migration 0011): its dispatch is pinned to the group's worker.
    Column("group_id", String(40)),
    UniqueConstraint("execution_id", "seq", name="uq_task_runs_seq"),
    # One task run per (parent, task, loop value): two executors racing on the same execution
    # cannot both create it.
    Index(
        "uq_task_runs_identity",
        "execution_id",
        text("coalesce(parent_id, '')"),
        "task_id",
        text("coalesce(value, '')"),
        "iteration",
        unique=True,
    ),
    Index("ix_task_runs_lease", "lease_expires_at", postgresql_where=text("state = 'RUNNING'")),
    Index("ix_task_runs_worker", "worker_id", postgresql_where=text("state = 'RUNNING'")),
    Index("ix_task_runs_next_attempt", "next_attempt_at", postgresql_where=text("next_attempt_at IS NOT NULL")),
)

task_run_attempts = Table(
    "task_run_attempts",
    metadata,
    Column("task_run_id", String(40), ForeignKey("task_runs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("histories", JSONB, nullable=False),
    Column("worker_id", String(100)),
    Column("reason", String(50)),
    Column("error", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    # Task ``logToFile`` (migration 0007): the URI of the file holding the attempt's log lines.
    Column("log_file", Text),
    # UTF-8 bytes of log text stored for this attempt (the per-attempt log limit; migration 0010).
    Column("log_bytes", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("task_run_id", "attempt"),
)

task_queue = Table(
    "task_queue",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("task_run_id", String(40), ForeignKey("task_runs.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("task_type", String(300), nullable=False),
    Column("worker_group", String(100), nullable=False, server_default=""),
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Copy of task_runs.group_id: only the WorkingDirectory's pinned worker may claim the row.
    Column("group_id", String(40)),
    Index("ix_task_queue_claim", "task_type", "worker_group", "id"),
    # The reaper's look for group children stranded on a vanished worker (migration 0012).
    Index("ix_task_queue_group", "group_id", postgresql_where=text("group_id IS NOT NULL")),
)

executor_queue = Table(
    "executor_queue",
    metadata,
    Column("execution_id", String(40), ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("failures", Integer, nullable=False, server_default="0"),
    Index("ix_executor_queue_available", "available_at"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("hostname", String(255), nullable=False, server_default=""),
    Column("sdk", String(100), nullable=False, server_default=""),
    Column("task_types", JSONB, nullable=False),
    Column("worker_group", String(100), nullable=False, server_default=""),
    Column("labels", JSONB, nullable=False),
    Column("concurrency", Integer, nullable=False, server_default="1"),
    Column("state", String(20), nullable=False, server_default="ACTIVE"),
    Column("registered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("auth_token_id", String(40)),  # the API token that registered it (auth on)
)

logs = Table(
    "logs",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("execution_id", String(40), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("task_run_id", String(40)),
    Column("task_id", String(100)),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("level", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Index("ix_logs_execution", "execution_id", "seq"),
)

# Internal storage: one row per stored file (the bytes live in the storage backend under the
# URI's path). Written by controlplane/storage; migration 0004.
storage_files = Table(
    "storage_files",
    metadata,
    Column("uri", Text, primary_key=True),
    Column("namespace", String(150), nullable=False),
    Column("flow_id", String(100), nullable=False),
    Column("execution_id", String(40)),
    Column("task_run_id", String(40)),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_storage_files_execution", "execution_id"),
)

# Kestra's namespace KV store (controlplane/kv; migration 0004). ``value`` is the typed JSON
# value; an expired row reads as missing.
kv_entries = Table(
    "kv_entries",
    metadata,
    Column("namespace", String(150), nullable=False),
    Column("key", String(255), nullable=False),
    Column("type", String(10), nullable=False),
    Column("value", JSONB, nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("namespace", "key", name="pk_kv_entries"),
)

# Scheduler (controlplane/scheduler; migration 0005): one row per trigger of a flow, with its
# next fire date and the enabled flag set through the API or ``stopAfter``.
triggers = Table(
    "triggers",
    metadata,
    Column("namespace", String(150), nullable=False),
    Column("flow_id", String(100), nullable=False),
    Column("trigger_id", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("type", String(300), nullable=False),
    Column("flow_revision", Integer, nullable=False),
    Column("signature", Text, nullable=False, server_default=""),
    Column("next_date", DateTime(timezone=True)),
    Column("last_date", DateTime(timezone=True)),
    Column("disabled", Boolean, nullable=False, server_default="false"),
    Column("disabled_reason", Text),
    Column("backfill", JSONB),
    Column("state", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("namespace", "flow_id", "trigger_id"),
    Index("ix_triggers_due", "next_date", postgresql_where=text("next_date IS NOT NULL")),
)

# One row per fired tick or event, written with the execution it created: the unique keys make
# a double fire impossible whatever the number of schedulers.
trigger_fires = Table(
    "trigger_fires",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("namespace", String(150), nullable=False),
    Column("flow_id", String(100), nullable=False),
    Column("trigger_id", String(100), nullable=False),
    Column("scheduled_date", DateTime(timezone=True)),
    Column("event_key", String(200)),
    Column("execution_id", String(40)),
    Column("skipped_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("namespace", "flow_id", "trigger_id", "scheduled_date", name="uq_trigger_fires_date"),
    UniqueConstraint("namespace", "flow_id", "trigger_id", "event_key", name="uq_trigger_fires_event"),
)

scheduler_cursors = Table(
    "scheduler_cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("position", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", String(100), nullable=False, server_default=""),
    Column("role", String(20), nullable=False),
    Column("namespace", String(150), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)
