"""Starting the dashboard: the Streamlit command line, and the CLI flags that reach it."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from dashboard import launcher


def test_dashboard_command_runs_the_app_headless_on_the_port() -> None:
    cmd = launcher.dashboard_command(8600, "0.0.0.0")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(cmd[4]) == launcher.APP and launcher.APP.name == "app.py" and launcher.APP.exists()
    options = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert options["--server.port"] == "8600" and options["--server.address"] == "0.0.0.0"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    for bad in (0, 70000):
        with pytest.raises(ValueError, match="1-65535"):
            launcher.dashboard_command(bad)


def test_dashboard_env_points_at_the_control_plane() -> None:
    env = launcher.dashboard_env("cp:6570", {"PATH": "/bin", "KESTREL_SERVER": "old:1"})
    assert env == {"PATH": "/bin", "KESTREL_SERVER": "cp:6570", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    recorded: list[tuple[str, Any]] = []
    fake_launcher = types.ModuleType("dashboard.launcher")
    fake_launcher.run_dashboard = lambda *args: recorded.append(("dashboard", args)) or 0
    monkeypatch.setitem(sys.modules, "dashboard.launcher", fake_launcher)
    fake_local = types.ModuleType("controlplane.local")
    fake_local.run_local = lambda **kw: recorded.append(("local", kw))
    monkeypatch.setitem(sys.modules, "controlplane.local", fake_local)
    return recorded


def test_kestrel_dashboard_passes_server_port_and_host(calls: list) -> None:
    result = CliRunner().invoke(app, ["dashboard", "--server", "cp:7000", "--port", "8600"])
    assert result.exit_code == 0, result.output
    assert calls == [("dashboard", ("cp:7000", 8600, "127.0.0.1"))]
    result = CliRunner().invoke(app, ["dashboard", "--port", "0"])
    assert result.exit_code == 2


def test_server_local_serves_the_dashboard_unless_told_not_to(calls: list) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["server", "local"]).exit_code == 0
    assert runner.invoke(app, ["server", "local", "--no-dashboard"]).exit_code == 0
    assert runner.invoke(app, ["server", "local", "--dashboard-port", "8700"]).exit_code == 0
    ports = [kw.get("dashboard_port", "default") for _, kw in calls]
    assert ports == ["default", None, 8700]  # run_local's default is 8501
