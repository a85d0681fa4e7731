"""`kestrel flow …` and `kestrel execution …` against the in-process fake API."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from kestrel.v1 import common_pb2
from tests.unit.client.kestrel_fake_server import BAD_FLOW, HELLO_FLOW, RunningFake, log_entry


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    root = tmp_path / "flows"
    (root / "team").mkdir(parents=True)
    (root / "hello.yml").write_text(HELLO_FLOW)
    (root / "team" / "other.yaml").write_text(HELLO_FLOW.replace("id: hello", "id: other"))
    (root / "README.md").write_text("not a flow")
    return root


def _run(runner: CliRunner, fake_server: RunningFake, *args: str):
    return runner.invoke(app, [*args, "--server", fake_server.address])


def _deploy_hello(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    path = tmp_path / "hello.yml"
    path.write_text(HELLO_FLOW)
    assert _run(runner, fake_server, "flow", "deploy", str(path)).exit_code == 0


# -- flow -----------------------------------------------------------------------------------


def test_flow_validate_ok(runner: CliRunner, fake_server: RunningFake, flows_dir: Path) -> None:
    result = _run(runner, fake_server, "flow", "validate", str(flows_dir))
    assert result.exit_code == 0, result.output
    assert f"{flows_dir / 'hello.yml'}: ok (demo.team.hello)" in result.stdout
    assert f"{flows_dir / 'team' / 'other.yaml'}: ok (demo.team.other)" in result.stdout
    assert "README" not in result.stdout


def test_flow_validate_reports_file_line_and_message(
    runner: CliRunner, fake_server: RunningFake, flows_dir: Path
) -> None:
    bad = flows_dir / "bad.yml"
    bad.write_text(BAD_FLOW)
    result = _run(runner, fake_server, "flow", "validate", str(flows_dir / "hello.yml"), str(bad))
    assert result.exit_code == 1
    assert f"{bad}:5:5: error: unknown task type 'unknown' in task 'bad' [tasks[0].type]" in result.stdout
    assert "hello.yml: ok" in result.stdout
    assert "1 of 2 flow file(s) invalid" in result.stderr
    assert fake_server.fake.requests_of("RegisterFlow") == []  # validation stores nothing


def test_flow_validate_prints_warnings_and_issues_without_line(
    runner: CliRunner, fake_server: RunningFake, tmp_path: Path
) -> None:
    path = tmp_path / "f.yml"
    path.write_text("namespace: demo\ntasks: []\n# deprecated\n")
    result = _run(runner, fake_server, "flow", "validate", str(path))
    assert result.exit_code == 1
    assert f"{path}: error: missing required field 'id' [id]" in result.stdout
    assert f"{path}:5: warning: deprecated alias [tasks[0]]" in result.stdout


def test_flow_validate_unreadable_file(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    path = tmp_path / "binary.yml"
    path.write_bytes(b"\xff\xfe\x00")
    result = _run(runner, fake_server, "flow", "validate", str(path))
    assert result.exit_code == 1
    assert f"error: {path}: cannot read" in result.stderr


def test_flow_validate_empty_dir(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    result = _run(runner, fake_server, "flow", "validate", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no flow files (*.yml, *.yaml) found in")


def test_flow_deploy_directory_twice(runner: CliRunner, fake_server: RunningFake, flows_dir: Path) -> None:
    result = _run(runner, fake_server, "flow", "deploy", str(flows_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "demo.team.hello revision 1 (created)",
        "demo.team.other revision 1 (created)",
    ]
    again = _run(runner, fake_server, "flow", "deploy", str(flows_dir))
    assert again.stdout.splitlines() == [
        "demo.team.hello revision 1 (unchanged)",
        "demo.team.other revision 1 (unchanged)",
    ]


def test_flow_deploy_tries_every_file(runner: CliRunner, fake_server: RunningFake, flows_dir: Path) -> None:
    (flows_dir / "a-bad.yml").write_text(BAD_FLOW)
    result = _run(runner, fake_server, "flow", "deploy", str(flows_dir))
    assert result.exit_code == 1
    assert f"error: {flows_dir / 'a-bad.yml'}: unknown task type" in result.stderr
    assert "1 of 3 flow file(s) not deployed" in result.stderr
    assert "demo.team.hello revision 1 (created)" in result.stdout
    assert "demo.team.other revision 1 (created)" in result.stdout


def test_flow_list_and_get(runner: CliRunner, fake_server: RunningFake, flows_dir: Path) -> None:
    empty = _run(runner, fake_server, "flow", "list")
    assert empty.exit_code == 0 and "no flows" in empty.stderr

    _run(runner, fake_server, "flow", "deploy", str(flows_dir))
    result = _run(runner, fake_server, "flow", "list", "--namespace", "demo")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.strip().splitlines()
    assert header.split()[:4] == ["NAMESPACE", "ID", "REVISION", "TASKS"]
    assert [row.split()[:3] for row in rows] == [["demo.team", "hello", "1"], ["demo.team", "other", "1"]]
    assert fake_server.fake.requests_of("ListFlows")[-1].namespace == "demo"

    got = _run(runner, fake_server, "flow", "get", "demo.team", "hello")
    assert got.exit_code == 0
    assert got.stdout == HELLO_FLOW
    assert "demo.team.hello revision 1" in got.stderr

    missing = _run(runner, fake_server, "flow", "get", "demo.team", "nope")
    assert missing.exit_code == 1
    assert missing.stderr == "error: flow demo.team.nope not found\n"


# -- execution ------------------------------------------------------------------------------


def test_run_prints_the_id(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    result = _run(
        runner,
        fake_server,
        "execution",
        "run",
        "demo.team",
        "hello",
        "--input",
        "user=Ada",
        "-i",
        "count=3",
        "--label",
        "team=data",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "exec-1\n"
    (request,) = fake_server.fake.requests_of("StartExecution")
    assert json.loads(request.inputs_json) == {"user": "Ada", "count": "3"}  # strings; server coerces
    assert [(label.key, label.value) for label in request.labels] == [("team", "data")]
    assert fake_server.fake.requests_of("WatchExecution") == []


def test_run_json_without_wait(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    result = _run(runner, fake_server, "execution", "run", "demo.team", "hello", "-o", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["id"] == "exec-1" and doc["state"]["current"] == "CREATED"


def test_run_wait_text(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    result = _run(runner, fake_server, "execution", "run", "demo.team", "hello", "--wait")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "exec-1" in out and "demo.team.hello (revision 1)" in out
    assert "SUCCESS in 2.000s" in out
    task_line = next(line for line in out.splitlines() if line.startswith("hello "))
    assert task_line.split() == ["hello", "SUCCESS", "0.500s", "1", '{"value":', '"hi"}']
    assert '"greeting": "hi"' in out
    assert "execution exec-1 of demo.team.hello started" in result.stderr


@pytest.mark.parametrize(
    "final, code",
    [
        (common_pb2.STATE_SUCCESS, 0),
        (common_pb2.STATE_WARNING, 0),
        (common_pb2.STATE_FAILED, 1),
        (common_pb2.STATE_KILLED, 1),
        (common_pb2.STATE_CANCELLED, 1),
    ],
)
def test_run_wait_exit_code(
    runner: CliRunner, fake_server: RunningFake, tmp_path: Path, final: int, code: int
) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    fake_server.fake.final_state = final
    result = _run(runner, fake_server, "execution", "run", "demo.team", "hello", "--wait", "--output", "json")
    assert result.exit_code == code, result.output
    doc = json.loads(result.stdout)
    assert doc["state"]["current"] == common_pb2.State.Name(final).removeprefix("STATE_")
    assert doc["taskRunList"][0]["taskId"] == "hello"
    assert result.stderr == ""  # json mode keeps stderr quiet too


def test_run_wait_failed_text_shows_the_error(
    runner: CliRunner, fake_server: RunningFake, tmp_path: Path
) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    fake_server.fake.final_state = common_pb2.STATE_FAILED
    result = _run(runner, fake_server, "execution", "run", "demo.team", "hello", "--wait")
    assert result.exit_code == 1
    assert "FAILED" in result.stdout and "hello: boom" in result.stdout


def test_run_server_refusal_is_one_line(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    result = _run(runner, fake_server, "execution", "run", "demo.team", "hello", "--input", "count=three")
    assert result.exit_code == 1
    assert result.stderr == "error: input 'count' of flow demo.team.hello: expected INT, got 'three'\n"
    missing = _run(runner, fake_server, "execution", "run", "demo.team", "nope")
    assert missing.exit_code == 1 and missing.stderr == "error: flow demo.team.nope not found\n"


def test_execution_get(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    _run(runner, fake_server, "execution", "run", "demo.team", "hello")
    text = _run(runner, fake_server, "execution", "get", "exec-1")
    assert text.exit_code == 0 and "SUCCESS" in text.stdout
    doc = json.loads(_run(runner, fake_server, "execution", "get", "exec-1", "--output", "json").stdout)
    assert doc["id"] == "exec-1" and doc["outputs"] == {"greeting": "hi"}
    missing = _run(runner, fake_server, "execution", "get", "nope")
    assert missing.exit_code == 1 and missing.stderr == "error: execution nope not found\n"


def test_execution_logs(runner: CliRunner, fake_server: RunningFake) -> None:
    fake_server.fake.logs["exec-1"] = [
        log_entry(1, "Hello, Ada!"),
        log_entry(2, "debugging", level=common_pb2.LOG_LEVEL_DEBUG),
        log_entry(3, "done", level=common_pb2.LOG_LEVEL_WARN, task_id=""),
    ]
    result = _run(runner, fake_server, "execution", "logs", "exec-1")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "2024-05-01T10:00:01.000Z INFO  hello Hello, Ada!",
        "2024-05-01T10:00:02.000Z DEBUG hello debugging",
        "2024-05-01T10:00:03.000Z WARN  - done",
    ]
    filtered = _run(runner, fake_server, "execution", "logs", "exec-1", "--level", "warn")
    assert filtered.stdout.splitlines() == ["2024-05-01T10:00:03.000Z WARN  - done"]
    followed = _run(runner, fake_server, "execution", "logs", "exec-1", "--follow")
    assert followed.exit_code == 0 and followed.stdout == result.stdout
    assert fake_server.fake.requests_of("TailLogs")


def test_execution_list(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    empty = _run(runner, fake_server, "execution", "list")
    assert empty.exit_code == 0 and "no executions" in empty.stderr
    for _ in range(3):
        _run(runner, fake_server, "execution", "run", "demo.team", "hello")

    text = _run(runner, fake_server, "execution", "list", "--namespace", "demo", "--flow", "hello")
    assert text.exit_code == 0, text.output
    header, *rows = text.stdout.strip().splitlines()
    assert header.split()[:5] == ["ID", "NAMESPACE", "FLOW", "REV", "STATE"]
    assert [row.split()[0] for row in rows] == ["exec-3", "exec-2", "exec-1"]  # fake pages by 2

    limited = _run(runner, fake_server, "execution", "list", "--limit", "2", "--output", "json")
    assert [e["id"] for e in json.loads(limited.stdout)] == ["exec-3", "exec-2"]

    by_state = _run(
        runner, fake_server, "execution", "list", "--state", "success", "--state", "FAILED", "-o", "json"
    )
    assert by_state.exit_code == 0
    request = fake_server.fake.requests_of("ListExecutions")[-1]
    assert list(request.states) == [common_pb2.STATE_SUCCESS, common_pb2.STATE_FAILED]
    assert request.namespace == "" and request.flow_id == ""


def test_execution_kill(runner: CliRunner, fake_server: RunningFake, tmp_path: Path) -> None:
    _deploy_hello(runner, fake_server, tmp_path)
    _run(runner, fake_server, "execution", "run", "demo.team", "hello")
    result = _run(runner, fake_server, "execution", "kill", "exec-1")
    assert result.exit_code == 0 and result.stdout == "exec-1 KILLING\n"
    fake_server.fake.fail["KillExecution"] = (
        grpc.StatusCode.FAILED_PRECONDITION,
        "execution exec-1 has already terminated (SUCCESS)",
    )
    refused = _run(runner, fake_server, "execution", "kill", "exec-1")
    assert refused.exit_code == 1
    assert refused.stderr == "error: execution exec-1 has already terminated (SUCCESS)\n"
