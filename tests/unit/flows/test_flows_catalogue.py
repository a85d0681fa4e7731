"""The task catalogue: aliases, kinds, supported types, check_task_types messages; durations."""

from __future__ import annotations

import textwrap

import pytest

from controlplane.flows import (
    CORE_TASK_TYPES,
    LEGACY_ALIASES,
    SUPPORTED_TASK_TYPES,
    TaskKind,
    canonical_type,
    check_task_types,
    format_duration,
    is_flowable,
    parse_duration,
    parse_flow,
    task_type_info,
    walk_with_paths,
)
from controlplane.flows.catalogue import suggest_type

CORE = "io.kestra.plugin.core."


@pytest.mark.parametrize(
    ("legacy", "canonical"),
    [
        ("io.kestra.core.tasks.log.Log", CORE + "log.Log"),
        ("io.kestra.core.tasks.debugs.Return", CORE + "debug.Return"),
        ("io.kestra.core.tasks.debugs.Echo", CORE + "debug.Echo"),
        ("io.kestra.core.tasks.executions.Fail", CORE + "execution.Fail"),
        ("io.kestra.core.tasks.outputs.OutputValues", CORE + "output.OutputValues"),
        ("io.kestra.core.tasks.flows.Sequential", CORE + "flow.Sequential"),
        ("io.kestra.core.tasks.flows.Parallel", CORE + "flow.Parallel"),
        ("io.kestra.core.tasks.flows.If", CORE + "flow.If"),
        ("io.kestra.core.tasks.flows.Switch", CORE + "flow.Switch"),
        ("io.kestra.core.tasks.flows.EachSequential", CORE + "flow.EachSequential"),
        ("io.kestra.core.tasks.flows.EachParallel", CORE + "flow.EachParallel"),
        ("io.kestra.core.tasks.flows.Dag", CORE + "flow.Dag"),
        ("io.kestra.core.tasks.flows.Pause", CORE + "flow.Pause"),
        ("io.kestra.core.tasks.flows.Subflow", CORE + "flow.Subflow"),
        ("io.kestra.core.tasks.flows.Flow", CORE + "flow.Subflow"),
        ("io.kestra.core.tasks.flows.WorkingDirectory", CORE + "flow.WorkingDirectory"),
        ("io.kestra.core.tasks.flows.Worker", CORE + "flow.WorkingDirectory"),
        ("io.kestra.core.tasks.flows.AllowFailure", CORE + "flow.AllowFailure"),
        ("io.kestra.core.tasks.flows.ForEachItem", CORE + "flow.ForEachItem"),
        ("io.kestra.core.tasks.flows.Template", CORE + "flow.Template"),
        ("io.kestra.core.tasks.states.Get", CORE + "state.Get"),
        ("io.kestra.core.tasks.states.Set", CORE + "state.Set"),
        ("io.kestra.core.tasks.states.Delete", CORE + "state.Delete"),
        ("io.kestra.core.tasks.storages.LocalFiles", CORE + "storage.LocalFiles"),
        ("io.kestra.core.tasks.storages.Purge", CORE + "execution.PurgeExecutions"),
        ("io.kestra.core.tasks.storages.PurgeExecution", CORE + "storage.PurgeCurrentExecutionFiles"),
        ("io.kestra.core.tasks.executions.Counts", CORE + "execution.Count"),
        ("io.kestra.core.tasks.trigger.Toggle", CORE + "trigger.Toggle"),
        ("io.kestra.plugin.fs.http.Request", CORE + "http.Request"),
        ("io.kestra.core.models.triggers.types.Schedule", CORE + "trigger.Schedule"),
        ("io.kestra.plugin.fs.http.Trigger", CORE + "http.Trigger"),
        ("io.kestra.plugin.core.condition.ExpressionCondition", CORE + "condition.Expression"),
        (
            "io.kestra.core.models.conditions.types.ExecutionStatusCondition",
            CORE + "condition.ExecutionStatus",
        ),
        (CORE + "log.Log", CORE + "log.Log"),
        ("acme.Custom", "acme.Custom"),
    ],
)
def test_canonical_type(legacy: str, canonical: str) -> None:
    assert canonical_type(legacy) == canonical


def test_every_alias_points_at_a_known_name() -> None:
    for legacy, canonical in LEGACY_ALIASES.items():
        assert canonical.startswith(CORE), legacy
        assert legacy != canonical
        if ".tasks." in legacy or ".fs.http.Request" in legacy or ".fs.http.Download" in legacy:
            assert canonical in CORE_TASK_TYPES, legacy


def test_corpus_manifest_aliases_are_in_the_table() -> None:
    # The conformance manifest's `legacy_aliases` (copied here so the test runs without it).
    manifest = {
        "io.kestra.plugin.fs.http.Trigger": "io.kestra.plugin.core.http.Trigger",
        "io.kestra.core.tasks.trigger.Toggle": "io.kestra.plugin.core.trigger.Toggle",
        "io.kestra.core.tasks.executions.Fail": "io.kestra.plugin.core.execution.Fail",
        "io.kestra.core.tasks.log.Log": "io.kestra.plugin.core.log.Log",
        "io.kestra.plugin.core.condition.ExpressionCondition": "io.kestra.plugin.core.condition.Expression",
    }
    for legacy, canonical in manifest.items():
        assert canonical_type(legacy) == canonical


@pytest.mark.parametrize(
    ("name", "flowable"),
    [
        (CORE + "flow.Sequential", True),
        ("io.kestra.core.tasks.flows.Sequential", True),
        (CORE + "flow.Parallel", True),
        (CORE + "flow.Dag", True),
        (CORE + "flow.Subflow", True),
        (CORE + "flow.Pause", True),
        (CORE + "flow.WorkingDirectory", True),
        (CORE + "flow.Sleep", False),
        (CORE + "log.Log", False),
        ("io.kestra.plugin.scripts.shell.Commands", False),
        ("acme.Custom", False),
    ],
)
def test_is_flowable(name: str, flowable: bool) -> None:
    assert is_flowable(name) is flowable


def test_supported_types() -> None:
    assert SUPPORTED_TASK_TYPES == {
        CORE + "flow.Sleep",
        CORE + "log.Log",
        CORE + "debug.Return",
        CORE + "debug.Echo",
        CORE + "output.OutputValues",
        CORE + "execution.Fail",
        "io.kestra.plugin.scripts.shell.Commands",
        CORE + "flow.Sequential",
        CORE + "flow.Parallel",
        CORE + "flow.If",
        CORE + "flow.Switch",
        CORE + "flow.ForEach",
        CORE + "flow.EachSequential",
        CORE + "flow.EachParallel",
        CORE + "flow.Dag",
        CORE + "flow.AllowFailure",
        CORE + "flow.Pause",
        CORE + "flow.Subflow",
        CORE + "execution.Resume",
        CORE + "execution.Labels",
        CORE + "flow.WaitFor",
        CORE + "flow.WorkingDirectory",
        CORE + "trigger.Toggle",
        # storage, KV and script tasks (issue 6)
        *(f"io.kestra.plugin.scripts.{lang}.{kind}" for lang in ("shell", "python", "node")
          for kind in ("Commands", "Script")),
        CORE + "log.Fetch",
        *(CORE + f"kv.{n}" for n in ("Set", "Get", "GetKeys", "Delete")),
        *(CORE + f"state.{n}" for n in ("Set", "Get", "Delete")),
        *(CORE + f"storage.{n}" for n in ("LocalFiles", "Concat", "Split", "Reverse", "Size", "Delete",
                                          "PurgeCurrentExecutionFiles", "FilterItems", "DeduplicateItems")),
        *(CORE + f"namespace.{n}Files" for n in ("Upload", "Download", "Delete")),
        CORE + "http.Request",
        CORE + "http.Download",
        # ForEachItem and the three tasks it expands into
        CORE + "flow.ForEachItem",
        *(CORE + f"flow.ForEachItem${n}" for n in ("ForEachItemSplit", "ForEachItemExecutable",
                                                   "ForEachItemMergeOutputs")),
    }
    assert {t for t in SUPPORTED_TASK_TYPES if is_flowable(t)} == {
        CORE + f"flow.{name}"
        for name in (
            "Sequential", "Parallel", "If", "Switch", "ForEach", "EachSequential", "EachParallel", "Dag",
            "AllowFailure", "Pause", "Subflow", "WaitFor", "WorkingDirectory", "ForEachItem",
            "ForEachItem$ForEachItemExecutable", "ForEachItem$ForEachItemMergeOutputs",
        )
    } | {CORE + "execution.Resume", CORE + "execution.Labels", CORE + "trigger.Toggle"}


def test_child_keys_of_flowables() -> None:
    def info(name: str):  # noqa: ANN202
        found = task_type_info(CORE + name)
        assert found is not None
        return found

    assert info("flow.Sequential").child_lists == ("tasks", "errors", "finally")
    assert info("flow.If").child_lists == ("then", "else", "errors", "finally")
    assert info("flow.Switch").child_maps == ("cases",)
    assert "defaults" in info("flow.Switch").child_lists
    assert info("flow.Dag").dag_tasks
    assert info("flow.WorkingDirectory").runnable_children_only
    assert info("flow.Subflow").executable and info("flow.ForEachItem").executable
    assert info("log.Log").kind is TaskKind.RUNNABLE and info("log.Log").child_keys == ()


def flow_of(yaml: str):  # noqa: ANN201
    return parse_flow(textwrap.dedent(yaml).lstrip("\n"))


MIXED = """
id: mixed
namespace: ns
tasks:
  - id: log
    type: io.kestra.core.tasks.log.Log
    message: hi
  - id: par
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - id: kvset
        type: io.kestra.plugin.core.templating.TemplatedTask
        uri: x
      - id: typo
        type: io.kestra.plugin.core.log.Logg
        message: x
  - id: mine
    type: acme.tasks.Custom
errors:
  - id: short
    type: Return
"""


def test_check_task_types_messages() -> None:
    issues = check_task_types(flow_of(MIXED), ())
    assert [(i.path, i.line) for i in issues] == [
        ("tasks[1].tasks[0].type", 10),
        ("tasks[1].tasks[1].type", 13),
        ("tasks[2].type", 16),
        ("errors[0].type", 19),
    ]
    messages = [""] + [i.message for i in issues]  # WorkingDirectory ('par') runs now
    assert messages[1] == (
        "task 'kvset': task type 'io.kestra.plugin.core.templating.TemplatedTask' is a Kestra core type this version "
        "of Kestrel does not run yet"
    )
    assert messages[2] == (
        "task 'typo': unknown task type 'io.kestra.plugin.core.log.Logg' (did you mean "
        "'io.kestra.plugin.core.log.Log'?); custom task types become known once a worker that registers "
        "them has connected"
    )
    assert messages[3].startswith("task 'mine': unknown task type 'acme.tasks.Custom'; custom task types")
    assert "(did you mean 'io.kestra.plugin.core.debug.Return'?)" in messages[4]


def test_registered_types_are_accepted_but_never_as_flowables() -> None:
    registered = [
        "acme.tasks.Custom",
        "io.kestra.plugin.core.templating.TemplatedTask",
        "io.kestra.plugin.core.flow.WorkingDirectory",
    ]
    issues = check_task_types(flow_of(MIXED), registered)
    assert [i.path for i in issues] == ["tasks[1].tasks[1].type", "errors[0].type"]
    assert "unknown task type" in issues[0].message


def test_supported_flow_has_no_type_issue() -> None:
    flow = flow_of(
        """
        id: ok
        namespace: ns
        tasks:
          - id: seq
            type: io.kestra.core.tasks.flows.Sequential
            tasks:
              - {id: a, type: io.kestra.plugin.core.log.Log, message: x}
              - {id: b, type: io.kestra.core.tasks.debugs.Return, format: y}
              - {id: c, type: io.kestra.core.tasks.debugs.Echo, format: z}
              - {id: d, type: io.kestra.plugin.core.output.OutputValues, values: {a: 1}}
              - {id: e, type: io.kestra.plugin.scripts.shell.Commands, commands: [echo hi]}
        errors:
          - {id: f, type: io.kestra.core.tasks.executions.Fail}
        """
    )
    assert check_task_types(flow, ()) == []


def test_suggestions() -> None:
    assert suggest_type("Log") == CORE + "log.Log"
    assert suggest_type("io.kestra.plugin.core.debug.Retrun") == CORE + "debug.Return"
    assert suggest_type("acme.Thing", ["acme.Things"]) == "acme.Things"
    assert suggest_type("completely.different.Name") is None


def test_walk_with_paths_follows_yaml_paths() -> None:
    flow = flow_of(
        """
        id: w
        namespace: ns
        tasks:
          - id: sw
            type: io.kestra.plugin.core.flow.Switch
            value: x
            cases:
              A:
                - {id: a, type: io.kestra.plugin.core.log.Log, message: a}
          - id: dag
            type: io.kestra.plugin.core.flow.Dag
            tasks:
              - task: {id: d1, type: io.kestra.plugin.core.log.Log, message: d}
        finally:
          - {id: fin, type: io.kestra.plugin.core.log.Log, message: f}
        """
    )
    assert [(p, t.id) for p, t in walk_with_paths(flow)] == [
        ("tasks[0]", "sw"),
        ("tasks[0].cases.A[0]", "a"),
        ("tasks[1]", "dag"),
        ("tasks[1].tasks[0].task", "d1"),
        ("finally[0]", "fin"),
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT5M", 300),
        ("PT1H", 3600),
        ("P2D", 172800),
        ("P1DT1H1M1S", 90061),
        ("PT0.250S", 0.25),
        ("PT0,5S", 0.5),
        ("pt15m", 900),
        ("-PT1S", -1),
        ("PT-1M30S", -30),
        ("PT0.000000001S", 1e-9),
        (" PT1S ", 1),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "5m", "P1M", "P1Y", "P1W", "PT1.5M", "PTS", "1S", "PT1S2"]
)
def test_parse_duration_refuses_what_java_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601 duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "PT0S"), (90, "PT1M30S"), (0.25, "PT0.25S"), (93600, "PT26H"), (3600.5, "PT1H0.5S")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_template_is_refused_with_the_reason_and_what_to_do_instead() -> None:
    flow = flow_of(
        """
        id: with-template
        namespace: io.kestra.tests
        tasks:
          - id: 2-template
            type: io.kestra.core.tasks.flows.Template
            namespace: io.kestra.tests
            templateId: template
        """
    )
    [issue] = check_task_types(flow, ())
    assert issue.path == "tasks[0].type" and issue.line == 4
    assert issue.message.startswith(
        "task '2-template': task type 'io.kestra.plugin.core.flow.Template': templates are not supported"
    )
    assert "io.kestra.plugin.core.flow.Subflow" in issue.message
