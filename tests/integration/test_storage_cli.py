"""The CLI's file and KV commands against a live control plane and worker:
``execution run --input f=@path``, ``execution files``, ``execution download`` and ``kv set/get/ls/rm``."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from tests.integration.storage_support import storage_stack, wait_for_workers

FLOW = """
id: cli-files
namespace: tests.cli
inputs:
  - {id: data, type: FILE}
tasks:
  - id: copy
    type: io.kestra.plugin.scripts.shell.Commands
    inputFiles:
      in.txt: "{{ inputs.data }}"
    outputFiles: ["out.txt"]
    commands: ["tr a-z A-Z < in.txt > out.txt"]
"""


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("cli"), workers=1) as (server, client):
        wait_for_workers(client, count=1)
        client.deploy_flow(FLOW)
        yield server, client


def _cli(server, *args: str):
    return CliRunner().invoke(app, [*args, "--server", server.address])


def test_run_with_a_file_input_then_list_and_download(stack, tmp_path):
    server, client = stack
    data = tmp_path / "in.txt"
    data.write_text("hello cli\n")
    result = _cli(server, "execution", "run", "tests.cli", "cli-files", "--input", f"data=@{data}", "--wait",
                  "--output", "json")
    assert result.exit_code == 0, result.output
    execution_id = json.loads(result.stdout)["id"]
    listed = _cli(server, "execution", "files", execution_id)
    assert listed.exit_code == 0, listed.output
    uri = listed.stdout.split()[0]
    assert uri.endswith("/tasks/copy/" + uri.split("/")[-2] + "/out.txt")
    assert listed.stdout.split()[1] == "10"
    target = tmp_path / "out.txt"
    downloaded = _cli(server, "execution", "download", uri, "-o", str(target))
    assert downloaded.exit_code == 0, downloaded.output
    assert target.read_text() == "HELLO CLI\n"
    assert hashlib.sha256(target.read_bytes()).hexdigest() in downloaded.stdout


def test_missing_local_file_is_a_usage_error(stack, tmp_path):
    server, _ = stack
    result = _cli(server, "execution", "run", "tests.cli", "cli-files", "--input", f"data=@{tmp_path}/none.txt")
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_kv_commands(stack):
    server, _ = stack
    assert _cli(server, "kv", "set", "tests.cli", "n", "41", "--type", "NUMBER").exit_code == 0
    assert _cli(server, "kv", "set", "tests.cli", "obj", '{"a": 1}').exit_code == 0
    assert _cli(server, "kv", "get", "tests.cli", "n").stdout.strip() == "41"
    assert json.loads(_cli(server, "kv", "get", "tests.cli", "obj").stdout) == {"a": 1}
    assert _cli(server, "kv", "get", "tests.cli.child", "n", "--inherit").stdout.strip() == "41"
    refused = _cli(server, "kv", "set", "tests.cli", "n", "1", "--no-overwrite")
    assert refused.exit_code == 1 and "already exists" in refused.output
    listing = _cli(server, "kv", "ls", "tests.cli").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listing] == [["n", "NUMBER"], ["obj", "JSON"]]
    assert _cli(server, "kv", "rm", "tests.cli", "n").exit_code == 0
    assert _cli(server, "kv", "rm", "tests.cli", "n").exit_code == 1
    missing = _cli(server, "kv", "get", "tests.cli", "n")
    assert missing.exit_code == 1 and "does not exist" in missing.output
