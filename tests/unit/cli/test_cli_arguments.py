"""The CLI's pure helpers, --help, argument errors, and an unreachable server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from controlplane.cli import (
    FileInputNotSupportedError,
    app,
    collect_flow_files,
    format_duration,
    format_log_line,
    parse_inputs,
    parse_key_value,
    parse_labels,
)
from worker_sdk.types import LogEntry, LogLevel


@pytest.mark.parametrize(
    "text, expected",
    [
        ("user=Ada", ("user", "Ada")),
        ("expr=a=b", ("expr", "a=b")),  # split at the first '='
        ("empty=", ("empty", "")),
        (" padded =  kept ", ("padded", "  kept ")),
    ],
)
def test_parse_key_value(text: str, expected: tuple[str, str]) -> None:
    assert parse_key_value(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=value", "  =x", ""])
def test_parse_key_value_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="expected KEY=VALUE"):
        parse_key_value(text)


def test_parse_inputs_keeps_strings_and_last_value() -> None:
    assert parse_inputs(["user=Ada", "count=3", "user=Grace", "handle=@@ada"]) == {
        "user": "Grace",
        "count": "3",
        "handle": "@ada",  # '@@' escapes a literal '@'
    }


def test_parse_inputs_file_input_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    with pytest.raises(FileInputNotSupportedError) as info:
        parse_inputs([f"data=@{data}"])
    assert info.value.key == "data" and info.value.path == str(data)
    assert "FILE inputs need internal storage, not available in this version" in str(info.value)


def test_parse_labels() -> None:
    assert parse_labels(["team=data", "env=dev"]) == {"team": "data", "env": "dev"}
    with pytest.raises(typer.BadParameter):
        parse_labels(["team"])


def test_collect_flow_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.yml", "a.yaml", "sub/c.yml", "notes.txt", "sub/d.json"):
        (tmp_path / name).write_text("x")
    single = tmp_path / "notes.txt"
    found = collect_flow_files([tmp_path, single, tmp_path / "b.yml"])
    assert found == [tmp_path / "a.yaml", tmp_path / "b.yml", tmp_path / "sub" / "c.yml", single]


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, "-"),
        (timedelta(seconds=1.2345), "1.234s"),
        (timedelta(seconds=12.34), "12.3s"),
        (timedelta(minutes=2, seconds=3), "2m03s"),
        (timedelta(hours=1, minutes=2, seconds=3), "1h02m03s"),
    ],
)
def test_format_duration(value: timedelta | None, expected: str) -> None:
    assert format_duration(value) == expected


def test_format_log_line() -> None:
    entry = LogEntry(
        sequence=1,
        execution_id="e",
        level=LogLevel.INFO,
        message="Hello, Ada!",
        timestamp=datetime(2024, 5, 1, 10, 0, 1, 250000, tzinfo=UTC),
        task_id="hello",
    )
    assert format_log_line(entry) == "2024-05-01T10:00:01.250Z INFO  hello Hello, Ada!"
    bare = LogEntry(sequence=2, execution_id="e", level=LogLevel.WARN, message="m")
    assert format_log_line(bare) == "- WARN  - m"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["server", "--help"],
        ["server", "local", "--help"],
        ["server", "standalone", "--help"],
        ["db", "migrate", "--help"],
        ["worker", "--help"],
        ["flow", "--help"],
        ["flow", "validate", "--help"],
        ["flow", "deploy", "--help"],
        ["flow", "list", "--help"],
        ["flow", "get", "--help"],
        ["execution", "--help"],
        ["execution", "run", "--help"],
        ["execution", "get", "--help"],
        ["execution", "logs", "--help"],
        ["execution", "list", "--help"],
        ["execution", "kill", "--help"],
    ],
)
def test_help(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(app, args)
    # Without arguments the usage is shown as an error (click's no_args_is_help: exit 2).
    assert result.exit_code == (0 if args else 2), result.output
    assert "Usage" in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("kestrel ")


def test_client_commands_take_server_from_env() -> None:
    result = CliRunner().invoke(app, ["execution", "run", "--help"], env={"KESTREL_SERVER": "h:1"})
    assert "KESTREL_SERVER" in result.output


def _unboxed(output: str) -> str:
    """The output without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["execution", "run", "ns"], "Missing argument"),
        (["execution", "run", "ns", "f", "--input", "novalue"], "expected KEY=VALUE"),
        (["execution", "run", "ns", "f", "--label", "=x"], "expected KEY=VALUE"),
        (["execution", "run", "ns", "f", "--output", "yaml"], "yaml"),
        (["execution", "list", "--state", "DONE"], "DONE"),
        (["execution", "logs", "x", "--level", "LOUD"], "LOUD"),
        (["flow", "validate"], "Missing argument"),
        (["flow", "validate", "/nonexistent/flow.yml"], "does not exist"),
        (["flow", "list", "--timeout", "0"], "timeout"),
        (["flow", "list", "--server", ""], "server address must not be empty"),
        (["server", "local", "--workers", "-1"], "workers"),
        (["worker", "--label", "novalue"], "expected KEY=VALUE"),
        (["worker", "--concurrency", "0"], "concurrency"),
    ],
)
def test_argument_errors_exit_2(runner: CliRunner, args: list[str], fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert fragment in _unboxed(result.output)
    assert "Traceback" not in result.output


def test_file_input_of_a_missing_file_is_exit_2(runner: CliRunner, tmp_path: Path, closed_address: str) -> None:
    result = runner.invoke(
        app, ["execution", "run", "ns", "f", "--input", f"data=@{tmp_path}/none.csv", "--server", closed_address]
    )
    assert result.exit_code == 2
    assert "no such file" in _unboxed(result.output)


def test_file_input_is_uploaded_first(runner: CliRunner, tmp_path: Path, closed_address: str) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    result = runner.invoke(
        app, ["execution", "run", "ns", "f", "--input", f"data=@{data}", "--server", closed_address]
    )
    assert result.exit_code == 1  # the upload reached for the (closed) server: one error line
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["flow", "list"],
        ["flow", "get", "ns", "id"],
        ["execution", "run", "ns", "f", "--input", "user=Ada"],
        ["execution", "run", "ns", "f", "--wait", "--output", "json"],
        ["execution", "get", "x"],
        ["execution", "logs", "x"],
        ["execution", "logs", "x", "--follow"],
        ["execution", "list"],
        ["execution", "kill", "x"],
    ],
)
def test_unreachable_server_is_one_clean_line(
    runner: CliRunner, closed_address: str, args: list[str]
) -> None:
    result = runner.invoke(app, [*args, "--server", closed_address, "--timeout", "2"])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach the Kestrel server at {closed_address}")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unreachable_server_via_env(closed_address: str) -> None:
    result = CliRunner().invoke(app, ["execution", "get", "x"], env={"KESTREL_SERVER": closed_address})
    assert result.exit_code == 1
    assert f"cannot reach the Kestrel server at {closed_address}" in result.stderr


def test_deploy_to_unreachable_server_stops_at_once(
    runner: CliRunner, closed_address: str, tmp_path: Path
) -> None:
    for name in ("a.yml", "b.yml", "c.yml"):
        (tmp_path / name).write_text("id: x\nnamespace: y\n")
    result = runner.invoke(app, ["flow", "deploy", str(tmp_path), "--server", closed_address])
    assert result.exit_code == 1
    assert result.stderr.count("cannot reach the Kestrel server") == 1
