"""Deeply nested flow collections are refused before ruamel parses them (its scanner is
quadratic in their depth), with the line; nesting a real flow uses is accepted."""

from __future__ import annotations

import pytest

from controlplane.flows import _yaml


def test_brackets_nested_past_the_limit_are_refused_with_the_line():
    source = "id: x\nnamespace: n\nvariables:\n  a: " + "[" * 3000 + "]" * 3000 + "\n"
    with pytest.raises(_yaml.YamlSyntaxError) as err:
        _yaml.load(source)
    assert "nested too deeply" in str(err.value) and err.value.line == 4


def test_nesting_at_the_limit_and_brackets_in_expressions_are_accepted():
    depth = _yaml.MAX_FLOW_NESTING
    loaded = _yaml.load("a: " + "[" * depth + "1" + "]" * depth + "\nb: \"{{ [1, [2, {'k': 3}]] }}\"\n")
    value = loaded["a"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == [1] and loaded["b"] == "{{ [1, [2, {'k': 3}]] }}"


def test_script_container_settings_are_warned_about_at_registration():
    from controlplane.flows import parse_flow
    from controlplane.flows.features import not_applied_warnings

    flow = parse_flow("""
id: ci
namespace: t.x
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    containerImage: python:3.12-slim
    taskRunner:
      type: io.kestra.plugin.scripts.runner.docker.Docker
    script: print(1)
  - id: local
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands: [echo hi]
""")
    warned = {w.path: w.message for w in not_applied_warnings(flow)}
    assert set(warned) == {"tasks[0].containerImage", "tasks[0].taskRunner"}
    assert "local processes" in warned["tasks[0].containerImage"]
