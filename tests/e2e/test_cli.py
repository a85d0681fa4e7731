"""The `kestrel` CLI as a user runs it (separate processes) against a live control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KESTREL = [sys.executable, "-c", "from controlplane.cli import app; app()"]


def kestrel(live, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KESTREL_SERVER=live.address)
    return subprocess.run([*KESTREL, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def deployed(live):
    result = kestrel(live, "flow", "deploy", "examples")
    assert result.returncode == 0, result.stderr
    return live


def test_validate_reports_line_and_exits_1(live, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("id: bad\nnamespace: demo\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n"
                   "    message: hi\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: again\n")
    result = kestrel(live, "flow", "validate", str(bad))
    assert result.returncode == 1
    assert "duplicate task id 'a'" in result.stdout + result.stderr
    assert ":7" in result.stdout + result.stderr  # the YAML line of the second 'a'
    ok = kestrel(live, "flow", "validate", str(REPO / "examples" / "hello-inputs.yml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_run_wait_json_and_logs(deployed):
    result = kestrel(deployed, "execution", "run", "company.team", "hello-inputs", "--input", "user=Ada",
                     "--wait", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    execution = json.loads(result.stdout)
    assert execution["state"]["current"] == "SUCCESS"
    assert execution["namespace"] == "company.team" and execution["flowId"] == "hello-inputs"
    assert execution["flowRevision"] >= 1
    assert execution["inputs"]["user"] == "Ada"
    assert [h["state"] for h in execution["state"]["histories"]] == ["CREATED", "RUNNING", "SUCCESS"]
    for tr in execution["taskRunList"]:
        assert {"id", "taskId", "parentTaskRunId", "value", "state", "attempts", "outputs"} <= set(tr)
        assert tr["state"]["current"] == "SUCCESS"
    logs = kestrel(deployed, "execution", "logs", execution["id"])
    assert logs.returncode == 0
    assert "Ada" in logs.stdout


def test_failed_run_exits_1_and_unknown_things_are_clear(deployed, tmp_path):
    flow = tmp_path / "fail.yml"
    flow.write_text("id: will-fail\nnamespace: demo\ntasks:\n  - id: f\n    type: io.kestra.plugin.core.execution.Fail\n")
    assert kestrel(deployed, "flow", "deploy", str(flow)).returncode == 0
    result = kestrel(deployed, "execution", "run", "demo", "will-fail", "--wait")
    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr
    missing = kestrel(deployed, "execution", "run", "demo", "no-such-flow", "--wait")
    assert missing.returncode == 1 and "demo.no-such-flow" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_input = kestrel(deployed, "execution", "run", "examples", "typed-inputs", "--input", "rows=abc")
    assert bad_input.returncode == 1 and "rows" in bad_input.stderr and "Traceback" not in bad_input.stderr


def test_list_commands(deployed):
    flows = kestrel(deployed, "flow", "list", "--namespace", "company")
    assert flows.returncode == 0 and "hello-inputs" in flows.stdout
    executions = kestrel(deployed, "execution", "list", "--namespace", "company.team", "--output", "json")
    assert executions.returncode == 0
    assert any(e["flowId"] == "hello-inputs" for e in json.loads(executions.stdout))


def test_validate_local_needs_no_server(tmp_path):
    env = dict(os.environ, KESTREL_SERVER="127.0.0.1:1")
    ok = subprocess.run([*KESTREL, "flow", "validate", "--local", "examples"], capture_output=True, text=True,
                        timeout=60, env=env, cwd=REPO)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "hello-inputs.yml: ok" in ok.stdout
    down = subprocess.run([*KESTREL, "flow", "validate", "examples"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=REPO)
    assert down.returncode == 1 and "is it running" in down.stderr and "Traceback" not in down.stderr


def test_validate_local_refuses_expression_errors_unless_lenient(tmp_path):
    flow = tmp_path / "typo.yml"
    flow.write_text(
        "id: typo\nnamespace: tests.cli\ntasks:\n  - id: first\n    type: io.kestra.plugin.core.debug.Return\n"
        "    format: x\n  - id: second\n    type: io.kestra.plugin.core.log.Log\n"
        "    message: '{{ outputs.frist.value }}'\n"
    )
    strict = subprocess.run([*KESTREL, "flow", "validate", "--local", str(flow)], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert strict.returncode == 1
    assert (f"{flow}:9: error: task 'second' property 'message' reads outputs of 'frist', which is not a task "
            "of this flow (did you mean 'first'?) [tasks[1].message]") in strict.stdout
    lenient = subprocess.run([*KESTREL, "flow", "validate", "--local", "--lenient-expressions", str(flow)],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert lenient.returncode == 0, lenient.stdout
    assert f"{flow}:9: warning: task 'second'" in lenient.stdout and "typo.yml: ok" in lenient.stdout


def test_undeclared_input_is_warned_about(deployed):
    result = kestrel(deployed, "execution", "run", "company.team", "hello-inputs", "--input", "usr=Ada", "--wait")
    assert result.returncode == 0
    assert "input 'usr' is not declared by company.team.hello-inputs" in result.stderr


def test_server_local_on_a_taken_port_is_one_line(live, tmp_path):
    port = live.address.rsplit(":", 1)[1]
    result = subprocess.run([*KESTREL, "server", "local", "--port", port, "--data-dir", str(tmp_path / "d"),
                             "--workers", "0"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d" / "postgres").exists()  # failed before starting anything
