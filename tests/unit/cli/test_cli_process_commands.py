"""`kestrel server …`, `kestrel db migrate` and `kestrel worker` hand their flags on correctly.

The entry points they call are replaced by recorders (fake modules in ``sys.modules``), so these
tests start nothing.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.config import Settings
from worker_sdk.connection import Connection
from worker_sdk.errors import UnavailableError


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, attr: str, fn: Any) -> None:
    module = types.ModuleType(name)
    setattr(module, attr, fn)
    monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def calls() -> list[tuple[str, Any]]:
    return []


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KESTREL_DATABASE_URL", "KESTREL_REDIS_URL", "KESTREL_PORT", "KESTREL_HOST"):
        monkeypatch.delenv(var, raising=False)


def test_server_local_defaults(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "controlplane.local", "run_local", lambda **kw: calls.append(("local", kw)))
    result = runner.invoke(app, ["server", "local"])
    assert result.exit_code == 0, result.output
    assert calls == [("local", {"port": 6570, "data_dir": Path(".kestrel"), "workers": 2, "flows_dir": None})]


def test_server_local_auth_flag(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "controlplane.local", "run_local", lambda **kw: calls.append(("local", kw)))
    result = runner.invoke(app, ["server", "local", "--auth"])
    assert result.exit_code == 0, result.output
    assert calls[-1][1]["auth"] is True


def test_local_admin_token_is_kept_private_and_stable(tmp_path: Path) -> None:
    from controlplane.local import _local_admin_token

    first = _local_admin_token(tmp_path / "data")
    assert first.startswith("kst_") and len(first) >= 40
    assert (tmp_path / "data" / "admin.token").stat().st_mode & 0o777 == 0o600
    assert _local_admin_token(tmp_path / "data") == first


def test_server_local_flags(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list, tmp_path: Path
) -> None:
    _fake_module(monkeypatch, "controlplane.local", "run_local", lambda **kw: calls.append(("local", kw)))
    args = ["server", "local", "--port", "7000", "--data-dir", str(tmp_path / "d"), "--workers", "3"]
    result = runner.invoke(app, [*args, "--flows", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert calls == [
        ("local", {"port": 7000, "data_dir": tmp_path / "d", "workers": 3, "flows_dir": tmp_path})
    ]


def test_server_local_interrupted_exits_130(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(**kw: Any) -> None:
        raise KeyboardInterrupt

    _fake_module(monkeypatch, "controlplane.local", "run_local", interrupted)
    result = runner.invoke(app, ["server", "local"])
    assert result.exit_code == 130 and "Traceback" not in result.output


def test_server_local_missing_module_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "controlplane.local", None)  # makes the import fail
    result = runner.invoke(app, ["server", "local"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot load controlplane.local.run_local:")


def test_server_standalone_flags_override_env(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list
) -> None:
    _fake_module(
        monkeypatch, "controlplane.server", "run_standalone", lambda s: calls.append(("standalone", s))
    )
    monkeypatch.setenv("KESTREL_DATABASE_URL", "postgresql+psycopg://env/db")
    monkeypatch.setenv("KESTREL_REDIS_URL", "redis://env:6379/1")
    monkeypatch.setenv("KESTREL_HOST", "0.0.0.0")
    result = runner.invoke(
        app, ["server", "standalone", "--database-url", "postgresql+psycopg://flag/db", "--port", "7001"]
    )
    assert result.exit_code == 0, result.output
    ((_, settings),) = calls
    assert isinstance(settings, Settings)
    assert settings.database_url == "postgresql+psycopg://flag/db"  # flag wins
    assert settings.redis_url == "redis://env:6379/1"  # env fills the rest
    assert settings.host == "0.0.0.0"
    assert settings.port == 7001


def test_server_standalone_all_flags(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "controlplane.server", "run_standalone", lambda s: calls.append(s))
    result = runner.invoke(
        app,
        [
            "server",
            "standalone",
            "--database-url",
            "postgresql+psycopg://a/b",
            "--redis-url",
            "redis://r:1/0",
            "--port",
            "0",
            "--host",
            "0.0.0.0",
        ],
    )
    assert result.exit_code == 0, result.output
    (settings,) = calls
    assert (settings.database_url, settings.redis_url, settings.port, settings.host) == (
        "postgresql+psycopg://a/b",
        "redis://r:1/0",
        0,
        "0.0.0.0",
    )


def test_server_standalone_bad_env_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(monkeypatch, "controlplane.server", "run_standalone", lambda s: None)
    monkeypatch.setenv("KESTREL_PORT", "not-a-port")
    result = runner.invoke(app, ["server", "standalone"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid settings: KESTREL_PORT:")


def test_server_standalone_fault_point_typo_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(monkeypatch, "controlplane.server", "run_standalone", lambda s: None)
    monkeypatch.setenv("KESTREL_FAULT_POINTS", "result.comitted:crash")
    result = runner.invoke(app, ["server", "standalone"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: invalid settings: KESTREL_FAULT_POINTS: fault point 'result.comitted' "
                                    "is unknown; valid points: start.inserted, "), result.stderr
    assert "result.committed" in result.stderr


@pytest.mark.parametrize("variable", [
    "KESTREL_MAX_OUTPUT_BYTES", "KESTREL_MAX_LOG_BYTES_PER_ATTEMPT", "KESTREL_NAMESPACE_FILE_MAX_BYTES",
    "KESTREL_SCHEDULE_TO_START_SECONDS", "KESTREL_WEBHOOK_MAX_BODY_BYTES", "KESTREL_MAX_REDELIVERIES",
    "KESTREL_TIMEOUT_GRACE_SECONDS", "KESTREL_LEASE_SECONDS", "KESTREL_HEARTBEAT_INTERVAL_SECONDS",
    "KESTREL_POLL_WAIT_SECONDS", "KESTREL_METRICS_PORT",
])
def test_server_standalone_refuses_a_negative_limit(runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                    variable: str) -> None:
    _fake_module(monkeypatch, "controlplane.server", "run_standalone", lambda s: None)
    monkeypatch.setenv(variable, "-1")
    result = runner.invoke(app, ["server", "standalone"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: invalid settings: {variable}: Input should be greater than"), \
        result.stderr


def test_zero_keeps_its_documented_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("KESTREL_MAX_OUTPUT_BYTES", "KESTREL_MAX_LOG_BYTES_PER_ATTEMPT",
                     "KESTREL_SCHEDULE_TO_START_SECONDS", "KESTREL_MAX_REDELIVERIES", "KESTREL_METRICS_PORT"):
        monkeypatch.setenv(variable, "0")
    settings = Settings()
    assert (settings.max_output_bytes, settings.max_log_bytes_per_attempt, settings.schedule_to_start_seconds,
            settings.max_redeliveries, settings.metrics_port) == (0, 0, 0, 0, 0)
    monkeypatch.setenv("KESTREL_NAMESPACE_FILE_MAX_BYTES", "0")  # no documented 0: at least 1 byte
    with pytest.raises(ValueError, match="namespace_file_max_bytes"):
        Settings()


def test_db_migrate(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "controlplane.store.migrations", "upgrade", lambda url: calls.append(url))
    result = runner.invoke(app, ["db", "migrate", "--database-url", "postgresql+psycopg://u:secret@h/db"])
    assert result.exit_code == 0, result.output
    assert calls == ["postgresql+psycopg://u:secret@h/db"]
    assert "secret" not in result.output and "postgresql+psycopg://u:***@h/db" in result.stdout

    monkeypatch.setenv("KESTREL_DATABASE_URL", "postgresql+psycopg://env/db")
    assert runner.invoke(app, ["db", "migrate"]).exit_code == 0
    assert calls[-1] == "postgresql+psycopg://env/db"


def test_db_migrate_unreachable_database(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    def fail(url: str) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused\nmore detail"))

    _fake_module(monkeypatch, "controlplane.store.migrations", "upgrade", fail)
    result = runner.invoke(app, ["db", "migrate", "--database-url", "postgresql+psycopg://u:pw@h:1/db"])
    assert result.exit_code == 1
    assert (
        result.stderr
        == "error: cannot migrate the database at postgresql+psycopg://u:***@h:1/db: connection refused\n"
    )


def test_worker_flags(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "worker_sdk.worker", "run_worker", lambda **kw: calls.append(kw))
    result = runner.invoke(
        app,
        [
            "worker",
            "--server",
            "cp:6570",
            "--concurrency",
            "8",
            "--group",
            "gpu",
            "--label",
            "zone=a",
            "--label",
            "disk=ssd",
            "--module",
            "my.tasks",
            "--module",
            "other.tasks",
        ],
    )
    assert result.exit_code == 0, result.output
    assert calls == [
        {
            "server": "cp:6570",
            "concurrency": 8,
            "worker_group": "gpu",
            "labels": {"zone": "a", "disk": "ssd"},
            "modules": ["my.tasks", "other.tasks"],
            "connection": Connection(),
        }
    ]


def test_worker_defaults_and_env(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "worker_sdk.worker", "run_worker", lambda **kw: calls.append(kw))
    monkeypatch.setenv("KESTREL_SERVER", "from-env:1")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 0, result.output
    assert calls == [
        {"server": "from-env:1", "concurrency": 4, "worker_group": "", "labels": {}, "modules": [],
         "connection": Connection()}
    ]


def test_worker_token_and_tls_flags(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "worker_sdk.worker", "run_worker", lambda **kw: calls.append(kw))
    monkeypatch.setenv("KESTREL_TOKEN", "from-env-token")
    result = runner.invoke(app, ["worker", "--tls-ca", "ca.pem", "--tls-cert", "w.pem", "--tls-key", "w.key"])
    assert result.exit_code == 0, result.output
    assert calls[0]["connection"] == Connection(token="from-env-token", tls_ca=Path("ca.pem"), tls_cert=Path("w.pem"),
                                                tls_key=Path("w.key"))
    calls.clear()
    result = runner.invoke(app, ["--token", "global", "worker", "--token", "own"])
    assert result.exit_code == 0, result.output
    assert calls[0]["connection"].token == "own" and "own" not in repr(calls[0]["connection"])


def test_server_standalone_auth_and_tls_flags(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    _fake_module(monkeypatch, "controlplane.server", "run_standalone", lambda s: calls.append(s))
    assert runner.invoke(app, ["server", "standalone"]).exit_code == 0
    assert calls[-1].auth_enabled is True  # on by default
    result = runner.invoke(app, ["server", "standalone", "--no-auth", "--tls-cert", "s.pem", "--tls-key", "s.key",
                                 "--tls-client-ca", "ca.pem"])
    assert result.exit_code == 0, result.output
    s = calls[-1]
    assert s.auth_enabled is False and s.tls_cert == Path("s.pem") and s.tls_client_ca == Path("ca.pem")


def test_worker_unreachable_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(**kw: Any) -> None:
        raise UnavailableError("connection refused", server=kw["server"])

    _fake_module(monkeypatch, "worker_sdk.worker", "run_worker", unreachable)
    result = runner.invoke(app, ["worker", "--server", "cp:1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the Kestrel server at cp:1 (connection refused); ")
    assert result.stderr.count("\n") == 1
