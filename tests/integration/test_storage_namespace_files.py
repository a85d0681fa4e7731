"""Namespace files end to end: uploaded by the CLI, used by script tasks (``namespaceFiles``),
``read('path')``, the namespace.* tasks, and isolation between namespaces."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from tests.integration.storage_support import by_task, run, storage_stack, wait_for_workers


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("nsfiles"), workers=1) as (server, client):
        wait_for_workers(client, count=1)
        yield server, client


def _cli(server, *args: str):
    return CliRunner().invoke(app, [*args, "--server", server.address])


@pytest.fixture(scope="module")
def uploaded(stack, tmp_path_factory):
    server, _ = stack
    root = tmp_path_factory.mktemp("project")
    (root / "scripts").mkdir()
    (root / "scripts" / "etl.py").write_text(
        "import json\nrows = open('data/x.txt').read().split()\n"
        "print('::' + json.dumps({'outputs': {'rows': len(rows)}}) + '::')\n")
    (root / "data").mkdir()
    (root / "data" / "x.txt").write_text("a b c\n")
    result = _cli(server, "namespace", "files", "upload", "company.nsfiles", str(root))
    assert result.exit_code == 0, result.output
    return root


def test_cli_lists_downloads_and_removes(stack, uploaded, tmp_path):
    server, _ = stack
    listing = _cli(server, "namespace", "files", "ls", "company.nsfiles").stdout.splitlines()
    assert [line.split("\t")[0] for line in listing] == [
        "kestra:///company/nsfiles/_files/data/x.txt", "kestra:///company/nsfiles/_files/scripts/etl.py"]
    got = _cli(server, "namespace", "files", "download", "company.nsfiles", "data/x.txt", "-o", str(tmp_path / "x"))
    assert got.exit_code == 0, got.output
    assert (tmp_path / "x").read_text() == "a b c\n"
    assert _cli(server, "namespace", "files", "upload", "company.nsfiles", str(uploaded / "data" / "x.txt"),
                "--to", "tmp").exit_code == 0
    assert _cli(server, "namespace", "files", "rm", "company.nsfiles", "tmp/x.txt").exit_code == 0
    assert _cli(server, "namespace", "files", "rm", "company.nsfiles", "tmp/x.txt").exit_code == 1


FLOW = """
id: uses-nsfiles
namespace: company.nsfiles
tasks:
  - id: etl
    type: io.kestra.plugin.scripts.python.Commands
    namespaceFiles:
      enabled: true
    commands: ["python scripts/etl.py"]
  - id: only-scripts
    type: io.kestra.plugin.scripts.shell.Commands
    namespaceFiles: {enabled: true, include: ["scripts/*"]}
    commands: ['echo "::{\\"outputs\\": {\\"data\\": \\"$(ls data 2>/dev/null | wc -l)\\"}}::"']
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ read('data/x.txt') }}"
  - id: upload
    type: io.kestra.plugin.core.namespace.UploadFiles
    namespace: company.nsfiles
    files:
      gen/out.txt: "generated"
      gen/copy.txt: "{{ outputs.etl.vars.rows }}"
  - id: download
    type: io.kestra.plugin.core.namespace.DownloadFiles
    namespace: company.nsfiles
    files: ["gen/*"]
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ read(outputs.download.files['gen/out.txt']) }}"
  - id: delete
    type: io.kestra.plugin.core.namespace.DeleteFiles
    namespace: company.nsfiles
    files: ["gen/*"]
"""


def test_scripts_read_and_namespace_tasks_use_namespace_files(stack, uploaded):
    _, client = stack
    execution = run(client, FLOW)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    assert tasks["etl"].outputs["vars"] == {"rows": 3}
    assert tasks["only-scripts"].outputs["vars"] == {"data": "0"}
    assert tasks["read"].outputs["value"] == "a b c\n"
    assert set(tasks["upload"].outputs["files"]) == {"gen/out.txt", "gen/copy.txt"}
    assert set(tasks["download"].outputs["files"]) == {"gen/out.txt", "gen/copy.txt"}
    assert tasks["show"].outputs["value"] == "generated"
    assert sorted(tasks["delete"].outputs["files"]) == ["gen/copy.txt", "gen/out.txt"]
    assert [f.uri.rsplit("/_files/", 1)[1] for f in client.list_namespace_files("company.nsfiles")] == [
        "data/x.txt", "scripts/etl.py"]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("{id: t, type: io.kestra.plugin.core.debug.Return, format: \"{{ read('data/x.txt') }}\"}",
         "not found"),
        ("{id: t, type: io.kestra.plugin.core.debug.Return, "
         "format: \"{{ read('kestra:///company/nsfiles/_files/data/x.txt') }}\"}", "access refused"),
        ("{id: t, type: io.kestra.plugin.core.namespace.DownloadFiles, namespace: company.nsfiles, files: ['*']}",
         "may only reach its own namespace files"),
    ],
)
def test_another_namespace_cannot_reach_them(stack, uploaded, task, expected):
    _, client = stack
    execution = run(client, f"id: other\nnamespace: company.other\ntasks:\n  - {task}\n")
    assert execution.state.current.value == "FAILED"
    assert expected in (by_task(execution)["t"].error or "")
