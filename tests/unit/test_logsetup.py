"""KESTREL_LOG_FORMAT: JSON lines for log shippers, the text format by default, a clear error
for anything else (checked in fresh processes: logging is configured once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import logging
from kestrel.logsetup import configure
configure()
logging.getLogger("kestrel.test").warning("disk %s", "full", extra={"execution_id": "e1"})
"""


def _run(fmt: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KESTREL_LOG_FORMAT"}
    if fmt is not None:
        env["KESTREL_LOG_FORMAT"] = fmt
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=60)


def test_json_format_writes_one_object_per_line_with_extras():
    line = _run("json", "-c", SCRIPT).stderr.strip()
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "kestrel.test"
    assert record["message"] == "disk full" and record["execution_id"] == "e1"
    assert record["timestamp"].startswith("20") and "process" in record


def test_text_format_is_the_default():
    line = _run(None, "-c", SCRIPT).stderr.strip()
    assert line.endswith("WARNING kestrel.test: disk full")


def test_unknown_format_is_refused_by_the_worker_naming_the_variable():
    result = _run("xml", "-m", "worker_sdk", "--server", "127.0.0.1:1")
    assert result.returncode == 2
    assert "KESTREL_LOG_FORMAT: must be one of text, json, not 'xml'" in result.stderr
