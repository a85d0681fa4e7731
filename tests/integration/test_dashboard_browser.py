"""The dashboard in a real browser: ``kestrel server local`` serves it, headless Chromium loads
every page, and no page may show a Streamlit exception.

Chromium is Debian's ``chromium-headless-shell`` (or ``chromium``), which ``.ci/run`` installs
when missing; without it the test is skipped with the reason. Chromium is driven over the
DevTools protocol (a websocket, through the ``websockets`` package Streamlit already brings), so
no browser automation package is needed. Screenshots go to a temporary directory, or to
``docs/screenshots/`` (the README shows them) with ``KESTREL_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from worker_sdk.client import KestrelClient

REPO = Path(__file__).resolve().parents[2]
# The README's screenshots are refreshed only on request, so a test run leaves the tree clean.
SCREENSHOTS = (REPO / "docs" / "screenshots" if os.environ.get("KESTREL_UPDATE_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "kestrel-dashboard-screenshots")
# A whole stack, 200 ForEach iterations and a browser (or AppTest) on a 2-core machine shared with
# other work: allow more than pytest's 300 s default.
pytestmark = pytest.mark.timeout(900)
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")

LOOP_FLOW = """
id: fan-out
namespace: company.team
description: ForEach over 200 values, each iteration a Return.
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: {values}
    concurrencyLimit: 0
    tasks:
      - id: square
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}}"
  - id: done
    type: io.kestra.plugin.core.log.Log
    message: "200 values done"
"""


SCHEDULED_FLOW = """
id: yearly-report
namespace: company.team
description: Declares a Schedule trigger (fires on January 1st only), for the Triggers page.
tasks:
  - {id: report, type: io.kestra.plugin.core.log.Log, message: "report"}
triggers:
  - {id: new-year, type: io.kestra.plugin.core.trigger.Schedule, cron: "0 2 1 1 *"}
"""


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


class Chromium:
    """A headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, width: int = 1440, height: int = 1000) -> None:
        self.profile = tempfile.mkdtemp(prefix="kestrel-chromium-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"{binary} did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        self.ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        self._ids = itertools.count(1)
        self.ws = connect(self.ws_url, max_size=256 * 1024 * 1024, open_timeout=30)

    def send(self, method: str, **params) -> dict:
        """One DevTools command; returns its ``result`` (events in between are dropped)."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


# What the page reports: whether Streamlit rendered, is still running the script, its title and
# any exception box (st.exception / an uncaught error in a page).
_PAGE_STATE = """
(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  const skeleton = document.querySelector('[data-testid="stAppSkeleton"], [data-testid="stSkeleton"]');
  const exceptions = [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText);
  const visible = e => e.offsetParent !== null;
  const pending = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].filter(visible)
                    .filter(e => !e.querySelector('.main-svg')).length
                + [...document.querySelectorAll('[data-testid="stGraphVizChart"]')].filter(visible)
                    .filter(e => !e.querySelector('svg')).length;
  const dialogs = [...document.querySelectorAll('[role="dialog"]')].map(e => e.innerText);
  return {app: !!app, title: h1 ? h1.innerText : null, pending: pending, dialogs: dialogs,
          running: !!(status && /running/i.test(status.innerText)) || !!skeleton || pending > 0,
          exceptions: exceptions,
          errors: [...document.querySelectorAll('[data-testid="stAlertContentError"]')].map(e => e.innerText)};
})()
"""


# How the dashboard reports a failed gRPC call (dashboard.api.show_error); other error boxes are
# content (a failed task's error message).
_FAILED_CALL = re.compile(r"\([A-Z_]+, server [^)]*\)")


def _load(browser: Chromium, url: str, title: str, timeout: float = 60) -> dict:
    """Opens ``url`` and waits until the page titled ``title`` finished running for 1.5 s."""
    browser.send("Page.enable")
    browser.send("Page.navigate", url=url)
    deadline = time.monotonic() + timeout
    settled_since = None
    state: dict = {}
    while time.monotonic() < deadline:
        state = browser.evaluate(_PAGE_STATE) or {}
        if state.get("exceptions") or any("not found" in d for d in state.get("dialogs") or []):
            return state
        if state.get("app") and state.get("title") == title and not state.get("running"):
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= 1.5:
                return state
        else:
            settled_since = None
        time.sleep(0.25)
    raise AssertionError(f"{url}: page {title!r} did not finish rendering in {timeout:.0f} s: {state}")


def _click_tab(browser: Chromium, label: str) -> None:
    clicked = browser.evaluate(
        "(() => { const t = [...document.querySelectorAll('[role=tab]')]"
        f".find(b => b.innerText.trim() === {json.dumps(label)}); if (t) t.click(); return !!t; }})()"
    )
    assert clicked, f"no tab {label!r}"
    deadline = time.monotonic() + 30
    while (browser.evaluate(_PAGE_STATE) or {}).get("running") and time.monotonic() < deadline:
        time.sleep(0.25)  # the tab's chart draws client-side
    time.sleep(1.0)


@contextlib.contextmanager
def _server_local(tmp: Path) -> Iterator[tuple[str, str]]:
    """``kestrel server local`` with the examples and a dashboard; yields (gRPC, dashboard URL)."""
    grpc_port, http_port = _free_port(), _free_port()
    data = tmp / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controlplane.cli",
            "server",
            "local",
            "--port",
            str(grpc_port),
            "--data-dir",
            str(data),
            "--workers",
            "1",
            "--flows",
            str(REPO / "examples"),
            "--dashboard-port",
            str(http_port),
        ],  # fmt: skip
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("kestrel server local exited:\n" + "".join(output))
            output.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        else:
            raise AssertionError("kestrel server local did not start:\n" + "".join(output))
        assert any("dashboard" in line and str(http_port) in line for line in output), "".join(output)
        url = f"http://127.0.0.1:{http_port}"
        _wait_http(f"{url}/_stcore/health", 60)
        yield f"127.0.0.1:{grpc_port}", url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_page_renders_without_exception_in_headless_chromium() -> None:
    binary = _browser()
    if binary is None:
        pytest.skip(
            "no headless Chromium on this machine (Debian package chromium-headless-shell or "
            "chromium; .ci/run installs it with apt-get when it can)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="kestrel-dash-browser-"))
    tmp.chmod(0o755)  # embedded Postgres runs as another user and must traverse it
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with _server_local(tmp) as (grpc_address, url), KestrelClient(grpc_address) as client:
        ok = client.start_execution("company.team", "hello-inputs", inputs={"user": "Ada"})
        failed = client.start_execution("examples", "typed-inputs", inputs={"rows": -1})
        client.deploy_flow(LOOP_FLOW.format(values=json.dumps([f"v{i:03d}" for i in range(200)])))
        client.deploy_flow(SCHEDULED_FLOW)
        loop = client.start_execution("company.team", "fan-out")
        assert client.wait_execution(ok.id, 60).state.current == "SUCCESS"
        assert client.wait_execution(failed.id, 60).state.current == "FAILED"
        assert client.wait_execution(loop.id, 180).state.current == "SUCCESS"

        browser = Chromium(binary)
        try:
            pages = [
                ("", "Executions", None, "executions.png"),  # the default page is the root URL
                (f"execution?id={loop.id}", "Execution", None, "execution-gantt.png"),
                (f"execution?id={loop.id}", "Execution", "Topology", "execution-topology.png"),
                (f"execution?id={failed.id}", "Execution", "Logs", "execution-logs.png"),
                ("flows?namespace=company.team&flow=hello-inputs", "Flows", None, "flows.png"),
                ("flows?namespace=examples&flow=typed-inputs", "Flows", "Topology", "flows-topology.png"),
                ("triggers", "Triggers", None, "triggers.png"),
                ("workers", "Workers", None, "workers.png"),
            ]
            for path, title, tab, shot in pages:
                state = _load(browser, f"{url}/{path}", title)
                assert not state.get("exceptions"), f"{path}: Streamlit exception {state['exceptions']}"
                assert not state.get("dialogs"), f"{path}: dialog shown {state['dialogs']}"
                failed_calls = [e for e in state.get("errors", []) if _FAILED_CALL.search(e)]
                assert not failed_calls, f"{path}: a call to the control plane failed: {failed_calls}"
                if tab:
                    _click_tab(browser, tab)
                    state = browser.evaluate(_PAGE_STATE)
                    assert not state.get("exceptions"), f"{path} [{tab}]: {state['exceptions']}"
                browser.screenshot(SCREENSHOTS / shot)
                assert (SCREENSHOTS / shot).stat().st_size > 10_000, f"{shot} looks empty"
        finally:
            browser.close()
