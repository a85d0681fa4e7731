"""Control-plane settings, read from flags and `KESTREL_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings of one control-plane process.

    Every field can be set from the environment as ``KESTREL_<FIELD>`` (e.g.
    ``KESTREL_DATABASE_URL``). Durations are in seconds. Sizes, counts, ports and durations are
    never negative (a pydantic ``ValidationError`` at start; :func:`describe` words it); where 0
    has a meaning it is documented on the field, intervals and leases must be > 0.
    """

    model_config = SettingsConfigDict(env_prefix="KESTREL_", extra="ignore")

    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/kestrel",
        description="SQLAlchemy URL of the Postgres database (psycopg 3 driver).",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL for locks and wake-ups.")
    redis_prefix: str = Field(
        "kestrel", description="Prefix of every Redis key and channel (several stacks may share a Redis)."
    )
    host: str = Field("127.0.0.1", description="Interface the gRPC server binds.")
    port: int = Field(6570, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    data_dir: Path = Field(Path(".kestrel"), description="Directory for local data (internal storage).")
    storage_backend: str = Field(
        "local", pattern="^(local|s3)$",
        description="Internal storage backend: `local` (files under `data_dir`) or `s3` (an S3-compatible bucket).",
    )
    s3_bucket: str = Field("", description="S3 bucket of internal storage (storage_backend=s3; must exist).")
    s3_prefix: str = Field("", description="Prefix of every internal-storage object key in the bucket.")
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO…); empty = AWS.")
    s3_region: str = Field("", description="S3 region; empty = the AWS default chain's.")
    namespace_file_max_bytes: int = Field(
        100 * 1024 * 1024, ge=1,
        description="Largest namespace file accepted (API, CLI, namespace.UploadFiles); a larger upload "
        "is refused with the file's path and this limit, and nothing is stored.",
    )
    poll_wait_seconds: float = Field(30.0, ge=0, description="Longest time a PollTaskRuns call is held.")
    poll_recheck_seconds: float = Field(
        1.0, gt=0,
        description="A waiting poll claims again after this long without a wake-up (finds delayed retries and "
        "re-queued work, and covers a wake-up lost between replicas).",
    )
    lease_seconds: float = Field(30.0, gt=0, description="Lease of a task-run attempt without a heartbeat.")
    heartbeat_interval_seconds: float = Field(5.0, gt=0, description="Heartbeat interval told to workers.")
    worker_dead_after_seconds: float = Field(60.0, gt=0, description="A worker silent this long is dead.")
    encryption_key: str | None = Field(
        None,
        description="Key (>= 32 characters) that encrypts SECRET inputs at rest; without it SECRET inputs "
        "are refused. `kestrel server local` keeps one in <data dir>/encryption.key.",
    )
    max_output_bytes: int = Field(
        4 * 1024 * 1024, ge=0,
        description="Largest task outputs (JSON, bytes) a worker may report; a larger result fails that task "
        "run (the worker is told RESOURCE_EXHAUSTED). 0 = only the gRPC message limit (16 MiB).",
    )
    max_log_bytes_per_attempt: int = Field(
        64 * 1024 * 1024, ge=0,
        description="Most log text (UTF-8 bytes) one attempt may store; past it the rest is dropped and the "
        "task run fails with a message saying so. 0 = no limit.",
    )
    schedule_to_start_seconds: float = Field(
        3600.0, ge=0,
        description="A queued task run that no live worker (of its task type, in its worker group) takes "
        "within this many seconds fails, with a message saying so; 0 = it waits forever.",
    )
    reaper_interval_seconds: float = Field(1.0, gt=0, description="How often expired leases are looked for.")
    timeout_grace_seconds: float = Field(
        15.0, ge=0,
        description="An attempt still RUNNING this long after its task's `timeout` is failed with reason "
        "TIMEOUT by the control plane (the worker normally stops it and reports TIMEOUT itself).",
    )
    executor_interval_seconds: float = Field(0.5, gt=0, description="How often the executor queue is swept.")
    max_redeliveries: int = Field(
        5, ge=0,
        description="Times one task run is re-dispatched after a lost attempt (lease expired or "
        "worker shutdown) before it fails; lost attempts do not consume the task's retry policy.",
    )
    token_secret: str | None = Field(
        None,
        description="HMAC secret for task tokens. Unset: a random secret stored in Postgres, "
        "shared by every replica on that database.",
    )
    auth_enabled: bool = Field(
        False,
        description="Require an API token (`authorization: Bearer …`) on every gRPC call. `kestrel server "
        "standalone` turns it on unless `--no-auth`; `kestrel server local` leaves it off unless `--auth`.",
    )
    auth_cache_seconds: float = Field(
        5.0, ge=0, description="How long a token lookup is reused; a revoked token stops working within this time."
    )
    bootstrap_token: str | None = Field(
        None,
        description="An admin API token (>= 32 characters) stored (hashed) at start if absent: the first "
        "admin of a fresh database, e.g. from a secret in docker compose. Never logged.",
        repr=False,
    )
    tls_cert: Path | None = Field(None, description="PEM certificate chain of the gRPC server (enables TLS).")
    tls_key: Path | None = Field(None, description="PEM private key of `tls_cert`.")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle: clients and workers must present a certificate it signed (mutual TLS)."
    )
    namespace_prefix_globals: dict[str, object] = Field(
        default_factory=dict, description="Kestra `globals` exposed to expressions."
    )
    http_host: str = Field("127.0.0.1", description="Interface the HTTP server (webhooks) binds.")
    http_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the HTTP server serving Webhook triggers; None = no HTTP server, 0 = a free port."
    )
    webhook_max_body_bytes: int = Field(
        1024 * 1024, ge=0, description="Largest webhook request body accepted; larger ones get 413."
    )
    webhook_wait_seconds: float = Field(
        60.0, ge=0, description="Longest time a webhook call with `wait: true` waits for the execution to end."
    )
    fault_points: str = Field(
        "", description="Chaos testing only: `POINT:crash[@N],…` crashes the process at a named step "
        "(`controlplane/faults.py`); empty (always, in production) = none.",
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio", description="Event loop of `kestrel server standalone`: `uvloop` (`pip install uvloop`, "
        "Linux/macOS; in the `bench` extra) took ~10 % off the control plane's CPU per task run in "
        "`python -m bench` (docs/benchmarks.md); asyncio is the default.",
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the Prometheus `/metrics` endpoint (bound on `host`); None or 0 = no metrics."
    )
    metrics_sample_seconds: float = Field(
        5.0, gt=0, description="How often the metrics gauges (queue depth, executions and workers by state) are "
        "sampled from Postgres."
    )
    scheduler_enabled: bool = Field(
        True, description="Run the trigger scheduler loop in this process (tests drive it by hand when False)."
    )
    scheduler_interval_seconds: float = Field(
        0.25, gt=0, description="Longest sleep of the scheduler loop between passes (it wakes earlier for a due tick)."
    )
    scheduler_standby_delay_seconds: float = Field(
        1.0, ge=0,
        description="A replica that is not the scheduler leader fires a tick only once it is this late "
        "(so a dead leader delays ticks by about this much; Postgres keeps every tick single).",
    )
    scheduler_missed_after_seconds: float = Field(
        15.0, ge=0,
        description="A schedule tick older than this when evaluated counts as missed "
        "(recoverMissedSchedules ALL/LAST/NONE decides whether it fires).",
    )

    @field_validator("fault_points")
    @classmethod
    def _known_fault_points(cls, value: str) -> str:
        from controlplane import faults

        faults.parse(value)  # ValueError naming the bad point and listing the valid ones
        return value


def describe(err: ValidationError) -> str:
    """One line for invalid settings: each problem as ``KESTREL_<FIELD>: <why>`` (values are not
    repeated: some settings are secrets)."""
    problems = []
    for e in err.errors():
        field = ".".join(map(str, e["loc"]))
        name = f"KESTREL_{field.upper()}" if field in Settings.model_fields else field
        problems.append(f"{name}: {e['msg'].removeprefix('Value error, ')}")
    return "invalid settings: " + "; ".join(problems)
