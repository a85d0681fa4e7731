"""The flows in ``examples/`` are what a newcomer runs first: they must be well-formed Kestra flows.

Checked offline: YAML shape (id, namespace, tasks), known task and input types, defaults of the
declared type, unique task ids, and that every ``inputs.x`` / ``vars.x`` / ``outputs.t`` an
expression names exists (outputs: of an earlier task). The flows also go through the control
plane's parser (``controlplane.flows.parse_flow``). The README's run commands must name deployed flows.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
FILES = sorted([*EXAMPLES.rglob("*.yml"), *EXAMPLES.rglob("*.yaml")])

#: Runnable task types the walking skeleton ships (current Kestra names and legacy aliases).
KNOWN_TYPES = {
    "io.kestra.plugin.core.log.Log",
    "io.kestra.core.tasks.log.Log",
    "io.kestra.plugin.core.debug.Return",
    "io.kestra.core.tasks.debugs.Return",
    "io.kestra.plugin.core.debug.Echo",
    "io.kestra.core.tasks.debugs.Echo",
    "io.kestra.plugin.core.output.OutputValues",
    "io.kestra.plugin.core.execution.Fail",
    "io.kestra.core.tasks.executions.Fail",
    "io.kestra.plugin.scripts.shell.Commands",
}
INPUT_TYPES = {"STRING": str, "INT": int, "FLOAT": (int, float), "BOOLEAN": bool}
ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
EXPR_RE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)


def _load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: top level must be a mapping"
    return data


def _strings(value: Any) -> list[str]:
    """Every string inside a YAML value (map keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _expressions(value: Any) -> list[str]:
    return [a or b for s in _strings(value) for a, b in EXPR_RE.findall(s)]


def test_there_are_examples() -> None:
    names = {p.name for p in FILES}
    assert {"hello-inputs.yml", "shell-outputs.yml"} <= names, names


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_is_a_well_formed_flow(path: Path) -> None:
    flow = _load(path)
    assert ID_RE.match(str(flow.get("id", ""))) and len(flow["id"]) <= 100, "id"
    assert flow["id"] == path.stem, "file name should be the flow id"
    assert NAMESPACE_RE.match(str(flow.get("namespace", ""))), "namespace"
    assert flow["namespace"] in {"company.team", "examples"}

    inputs = flow.get("inputs", [])
    assert isinstance(inputs, list)
    input_ids = set()
    for spec in inputs:
        assert ID_RE.match(spec["id"]), spec
        assert spec["type"] in INPUT_TYPES, f"input {spec['id']}: unsupported type {spec['type']}"
        assert "defaults" in spec, f"input {spec['id']}: examples give every input a default"
        expected = INPUT_TYPES[spec["type"]]
        default = spec["defaults"]
        assert isinstance(default, expected) and not (spec["type"] == "INT" and isinstance(default, bool)), (
            f"input {spec['id']}: default {default!r} is not {spec['type']}"
        )
        input_ids.add(spec["id"])

    variables = flow.get("variables", {})
    assert isinstance(variables, dict)
    labels = flow.get("labels", {})
    assert isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values()), "labels are strings"

    tasks = flow.get("tasks")
    assert isinstance(tasks, list) and tasks, "tasks must be a non-empty list"
    seen: list[str] = []
    for task in tasks:
        assert ID_RE.match(str(task.get("id", ""))), task
        assert task["id"] not in seen, f"duplicate task id {task['id']}"
        assert task.get("type") in KNOWN_TYPES, f"task {task['id']}: unknown type {task.get('type')}"
        for expr in _expressions(task):
            for name in re.findall(r"(?<![\w.])inputs\.(\w+)", expr):
                assert name in input_ids, f"task {task['id']}: unknown input {name} in {expr!r}"
            for name in re.findall(r"(?<![\w.])vars\.(\w+)", expr):
                assert name in variables, f"task {task['id']}: unknown variable {name} in {expr!r}"
            refs = re.findall(r"\boutputs\.([\w]+)", expr) + re.findall(
                r"\boutputs\[['\"]([^'\"]+)['\"]\]", expr
            )
            for ref in refs:
                assert ref in seen, f"task {task['id']}: outputs of {ref!r} used before that task ran"
        seen.append(task["id"])


def test_hello_inputs_greets_the_user() -> None:
    flow = _load(EXAMPLES / "hello-inputs.yml")
    assert flow["namespace"] == "company.team"
    inputs = {i["id"]: i for i in flow["inputs"]}
    assert inputs["user"]["type"] == "STRING" and inputs["user"]["defaults"]
    logs = [t for t in flow["tasks"] if t["type"].endswith("log.Log")]
    assert any("{{ inputs.user }}" in str(t["message"]) for t in logs)


def test_shell_outputs_feed_later_tasks() -> None:
    flow = _load(EXAMPLES / "shell-outputs.yml")
    shell = next(t for t in flow["tasks"] if t["type"] == "io.kestra.plugin.scripts.shell.Commands")
    later = flow["tasks"][flow["tasks"].index(shell) + 1 :]
    assert any(f"outputs.{shell['id']}.vars.rows" in s for t in later for s in _strings(t))

    # The commands really print the outputs marker the worker parses.
    result = subprocess.run(
        ["/bin/sh", "-c", "\n".join(shell["commands"])],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    markers = [m for m in re.findall(r"^::(\{.*\})::$", result.stdout, re.M)]
    assert [json.loads(m) for m in markers] == [{"outputs": {"rows": 42}}], result.stdout


def test_readme_run_commands_name_example_flows() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    deployed = {(f["namespace"], f["id"]) for f in map(_load, FILES)}
    runs = re.findall(r"kestrel execution run ([a-z0-9._-]+) ([A-Za-z0-9._-]+)", readme)
    assert runs, "the README should show `kestrel execution run <namespace> <flow>`"
    for namespace, flow_id in runs:
        assert (namespace, flow_id) in deployed, f"README runs {namespace}.{flow_id}, not in examples/"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_passes_the_control_plane_parser(path: Path) -> None:
    from controlplane.flows import parse_flow

    raw = _load(path)
    flow = parse_flow(path.read_text(encoding="utf-8"))
    assert (flow.namespace, flow.id) == (raw["namespace"], raw["id"])
    assert [task.id for task in flow.tasks] == [task["id"] for task in raw["tasks"]]
