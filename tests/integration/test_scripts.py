"""Script tasks on a real worker: Python and Node scripts emit outputs through the ``::{…}::``
protocol and a later task reads them; files in and out; exit codes; stderr warnings."""

from __future__ import annotations

import pytest

from tests.integration.storage_support import by_task, run, storage_stack, wait_for_workers
from worker_sdk.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("scripts"), workers=1) as (server, client):
        wait_for_workers(client, count=1)
        yield server, client


def _state(execution) -> str:
    return execution.state.current.value


def _errors(execution) -> list:
    return [(t.task_id, t.error) for t in execution.task_runs if t.error]


LANGUAGES = """
id: languages
namespace: tests.scripts
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    env: {GREETING: hello}
    script: |
      import json, os
      print("::" + json.dumps({"outputs": {"greeting": os.environ["GREETING"], "n": 21 * 2}}) + "::")
      print('::{"metrics": [{"name": "rows", "type": "counter", "value": 3}]}::')
      print("plain line")
  - id: node
    type: io.kestra.plugin.scripts.node.Script
    script: |
      const n = {{ outputs.py.vars.n }};
      console.log('::' + JSON.stringify({outputs: {double: n * 2, from: "{{ outputs.py.vars.greeting }}"}}) + '::');
  - id: py-commands
    type: io.kestra.plugin.scripts.python.Commands
    beforeCommands: ["echo 'print(\\"::{\\\\\\"outputs\\\\\\": {\\\\\\"cmd\\\\\\": 1}}::\\")' > main.py"]
    commands: ["python main.py"]
  - id: node-commands
    type: io.kestra.plugin.scripts.node.Commands
    inputFiles:
      main.js: "console.log('::{\\"outputs\\": {\\"js\\": true}}::')"
    commands: ["node main.js"]
  - id: shell-script
    type: io.kestra.plugin.scripts.shell.Script
    script: |
      echo "in {{ workingDir }}" > where.txt
      echo "::{\\"outputs\\": {\\"dir\\": \\"$(cat where.txt)\\"}}::"
  - id: use
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.node.vars.double }} {{ outputs.node.vars.from }} {{ outputs['py-commands'].vars.cmd }} {{ outputs['node-commands'].vars.js }}"
"""


def test_python_and_node_scripts_emit_outputs_read_by_later_tasks(stack):
    _, client = stack
    execution = run(client, LANGUAGES)
    assert _state(execution) == "SUCCESS", _errors(execution)
    tasks = by_task(execution)
    assert tasks["py"].outputs["vars"] == {"greeting": "hello", "n": 42}
    assert tasks["py"].outputs["exitCode"] == 0
    assert tasks["use"].outputs["value"] == "84 hello 1 true"
    assert tasks["shell-script"].outputs["vars"]["dir"].startswith("in /")
    lines = [entry.message for entry in client.list_logs(execution.id) if entry.task_id == "py"]
    assert "plain line" in lines
    assert not any("metrics" in line for line in lines)


def test_exit_code_fails_the_task_and_stderr_can_warn(stack):
    _, client = stack
    execution = run(client, """
id: exits
namespace: tests.scripts
tasks:
  - id: warn
    type: io.kestra.plugin.scripts.shell.Commands
    warningOnStdErr: true
    commands: ["echo oops >&2"]
  - id: fail
    type: io.kestra.plugin.scripts.python.Script
    script: |
      import sys
      print('::{"outputs": {"before": 1}}::')
      sys.exit(3)
""")
    assert _state(execution) == "FAILED"
    tasks = by_task(execution)
    assert tasks["warn"].state.current.value == "WARNING"
    assert tasks["fail"].error == "Command failed with exit code 3"
    assert tasks["fail"].outputs["vars"] == {"before": 1}


def test_output_files_globs_and_input_files_from_storage(stack):
    _, client = stack
    execution = run(client, """
id: files
namespace: tests.scripts
tasks:
  - id: make
    type: io.kestra.plugin.scripts.python.Script
    outputFiles: ["*.csv", "sub/**/*.json"]
    script: |
      import os
      os.makedirs("sub/deep", exist_ok=True)
      open("a.csv", "w").write("1\\n")
      open("b.csv", "w").write("2\\n")
      open("skip.txt", "w").write("no")
      open("sub/deep/c.json", "w").write("{}")
  - id: use
    type: io.kestra.plugin.scripts.shell.Commands
    inputFiles:
      x/a.csv: "{{ outputs.make.outputFiles['a.csv'] }}"
      literal.txt: "literal content"
    commands:
      - 'echo "::{\\"outputs\\": {\\"a\\": \\"$(cat x/a.csv)\\", \\"lit\\": \\"$(cat literal.txt)\\"}}::"'
""")
    assert _state(execution) == "SUCCESS", _errors(execution)
    tasks = by_task(execution)
    assert set(tasks["make"].outputs["outputFiles"]) == {"a.csv", "b.csv", "sub/deep/c.json"}
    assert tasks["use"].outputs["vars"] == {"a": "1", "lit": "literal content"}


def test_script_properties_are_required_at_deploy(stack):
    _, client = stack
    with pytest.raises(InvalidArgumentError, match="property 'script' is required"):
        client.deploy_flow("id: bad\nnamespace: tests.scripts\ntasks:\n"
                           "  - {id: s, type: io.kestra.plugin.scripts.python.Script}\n")
    with pytest.raises(InvalidArgumentError, match="property 'commands' is required"):
        client.deploy_flow("id: bad\nnamespace: tests.scripts\ntasks:\n"
                           "  - {id: s, type: io.kestra.plugin.scripts.node.Commands}\n")
