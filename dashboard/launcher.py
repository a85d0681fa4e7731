"""Starting the dashboard: ``streamlit run dashboard/app.py`` as a child process.

Used by ``kestrel dashboard`` (foreground) and ``kestrel server local`` (background, beside the
control plane). The dashboard learns the control plane's address from ``KESTREL_SERVER``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from dashboard import DEFAULT_PORT, SERVER_ENV

__all__ = ["APP", "dashboard_command", "dashboard_env", "run_dashboard", "start_dashboard", "stop_dashboard"]

#: The Streamlit entry script.
APP = Path(__file__).resolve().with_name("app.py")


def dashboard_command(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the dashboard on ``host:port`` (headless, no telemetry).

    Args:
        port: HTTP port (1-65535).
        host: Interface to bind.

    Raises:
        ValueError: ``port`` is out of range.
    """
    if not 0 < port < 65536:
        raise ValueError(f"dashboard port must be 1-65535, got {port}")
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def dashboard_env(server: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the dashboard process: ``base`` (default ``os.environ``) with
    ``KESTREL_SERVER`` set to ``server`` and unbuffered output."""
    env = dict(os.environ if base is None else base)
    env[SERVER_ENV] = server
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_dashboard(
    server: str, port: int = DEFAULT_PORT, host: str = "127.0.0.1", *, quiet: bool = True
) -> subprocess.Popen[bytes]:
    """Starts the dashboard in the background, in its own session (a terminal Ctrl-C reaches
    only the caller, which stops it with :func:`stop_dashboard`).

    Args:
        server: The control plane's ``host:port``.
        port: HTTP port of the dashboard.
        host: Interface to bind.
        quiet: Discard Streamlit's own output.

    Returns:
        The process; the dashboard is ready once ``http://host:port/_stcore/health`` answers.
    """
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        dashboard_command(port, host),
        env=dashboard_env(server),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
    )


def stop_dashboard(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stops a dashboard started by :func:`start_dashboard`: SIGTERM, SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def run_dashboard(server: str, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> int:
    """Serves the dashboard in the foreground until Streamlit exits, Ctrl-C or SIGTERM (which
    stop Streamlit too); returns Streamlit's exit code, 130 when interrupted."""
    proc = subprocess.Popen(dashboard_command(port, host), env=dashboard_env(server))

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop_dashboard(proc)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
