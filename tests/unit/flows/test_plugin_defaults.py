"""``pluginDefaults``/``taskDefaults`` merged into tasks at parse time (Kestra's PluginDefaultService)."""

from __future__ import annotations

from controlplane.flows import parse_flow
from controlplane.flows.features import not_applied_warnings

FLOW = """\
id: defaults
namespace: tests.defaults
pluginDefaults:
  - type: io.kestra.plugin.core.log
    values:
      level: WARN
      message: default message
  - type: io.kestra.core.tasks.debugs.Return
    forced: true
    values:
      format: forced
      retry:
        type: constant
        interval: PT1S
        maxAttempts: 2
taskDefaults:
  - type: io.kestra.plugin.core.flow.Parallel
    values:
      concurrent: 2
tasks:
  - id: plain
    type: io.kestra.plugin.core.log.Log
  - id: own
    type: io.kestra.plugin.core.log.Log
    message: own message
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: mine
  - id: par
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: nested
        type: io.kestra.core.tasks.log.Log
"""


def test_defaults_fill_missing_properties_by_prefix_alias_and_exact_type():
    flow = parse_flow(FLOW)
    tasks = {t.id: t for t in flow.walk()}
    assert tasks["plain"].properties == {"level": "WARN", "message": "default message"}
    assert tasks["own"].properties == {"message": "own message", "level": "WARN"}
    assert tasks["nested"].properties == {"level": "WARN", "message": "default message"}  # legacy alias
    assert tasks["par"].properties == {"concurrent": 2}


def test_forced_defaults_override_and_common_properties_are_parsed():
    ret = parse_flow(FLOW).find_task("ret")
    assert ret.properties == {"format": "forced"}
    assert ret.retry == {"type": "constant", "interval": "PT1S", "maxAttempts": 2}


def test_maps_are_merged_key_by_key_with_the_task_winning():
    flow = parse_flow(
        "id: m\nnamespace: a.b\npluginDefaults:\n  - type: io.kestra.plugin.core.output.OutputValues\n"
        "    values:\n      values: {a: default, b: default}\ntasks:\n  - id: o\n"
        "    type: io.kestra.plugin.core.output.OutputValues\n    values: {a: mine}\n"
    )
    assert flow.tasks[0].properties == {"values": {"a": "mine", "b": "default"}}


def test_the_stored_source_is_unchanged_and_no_not_applied_warning():
    flow = parse_flow(FLOW)
    assert flow.source == FLOW
    assert not [w for w in not_applied_warnings(flow) if "pluginDefaults" in w.path]


def test_a_default_matching_no_task_is_warned_about():
    flow = parse_flow(
        "id: w\nnamespace: a.b\npluginDefaults:\n  - type: io.kestra.plugin.core.log.Lgo\n    values: {level: WARN}\n"
        "tasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n"
    )
    [warning] = [w for w in not_applied_warnings(flow) if w.path.startswith("pluginDefaults")]
    assert warning.path == "pluginDefaults[0].type"
    assert "plugin default for 'io.kestra.plugin.core.log.Lgo' matches no task" in warning.message


def test_child_task_lists_are_never_defaulted():
    from controlplane.errors import FlowValidationError

    source = (
        "id: r\nnamespace: a.b\npluginDefaults:\n  - type: io.kestra.plugin.core.flow.Sequential\n    values:\n"
        "      tasks:\n        - id: inner\n          type: io.kestra.plugin.core.flow.Sequential\n"
        "tasks:\n  - id: s\n    type: io.kestra.plugin.core.flow.Sequential\n"
    )
    try:
        parse_flow(source)
    except FlowValidationError as exc:
        assert "'tasks' must not be empty" in str(exc)
    else:
        raise AssertionError("a Sequential without tasks must be refused, not filled from a default")
