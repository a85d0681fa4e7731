"""parse_flow: structure, common task properties, every validation rule with its YAML line."""

from __future__ import annotations

import textwrap

import pytest

from controlplane.errors import FlowValidationError, Issue
from controlplane.flows import parse_flow
from controlplane.model import Flow


def parse(yaml: str) -> Flow:
    return parse_flow(textwrap.dedent(yaml).lstrip("\n"))


def issues_of(yaml: str) -> list[Issue]:
    with pytest.raises(FlowValidationError) as info:
        parse(yaml)
    return info.value.issues


def one_issue(yaml: str) -> Issue:
    issues = issues_of(yaml)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


MINIMAL = """
id: hello
namespace: dev.demo
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: hi
"""


# --- the happy path -----------------------------------------------------------------------------


def test_minimal_flow() -> None:
    flow = parse(MINIMAL)
    assert (flow.namespace, flow.id, flow.revision) == ("dev.demo", "hello", 0)
    assert flow.source.startswith("id: hello")
    [task] = flow.tasks
    assert task.id == "say"
    assert task.type == task.written_type == "io.kestra.plugin.core.log.Log"
    assert task.properties == {"message": "hi"}
    assert task.line == 4


def test_full_document_is_mapped_to_the_model() -> None:
    flow = parse(
        """
        id: full
        namespace: company.team
        description: The whole document
        revision: 7
        disabled: true
        labels:
          team: data
          count: 3
          flag: true
        variables:
          greeting: hello
          nested: {a: [1, 2]}
        inputs:
          - id: user
            type: STRING
            defaults: world
            description: who
          - name: legacy
            type: INT
            required: false
            min: 1
        outputs:
          - id: result
            type: STRING
            value: "{{ outputs.say.value }}"
        tasks:
          - id: say
            type: io.kestra.plugin.core.debug.Return
            format: "{{ inputs.user }}"
        errors:
          - id: on_error
            type: io.kestra.plugin.core.log.Log
            message: failed
        finally:
          - id: cleanup
            type: io.kestra.plugin.core.log.Log
            message: done
        triggers:
          - id: every_minute
            type: io.kestra.plugin.core.trigger.Schedule
            cron: "* * * * *"
        pluginDefaults:
          - type: io.kestra.plugin.core.log.Log
            values: {level: WARN}
        taskDefaults:
          - type: io.kestra.plugin.core.debug.Return
            values: {format: x}
            forced: true
        concurrency:
          limit: 2
          behavior: CANCEL
        retry:
          type: constant
          interval: PT1S
          maxAttempt: 3
        sla:
          - id: max
            type: MAX_DURATION
            behavior: FAIL
            duration: PT1H
        """
    )
    assert flow.description == "The whole document"
    assert flow.revision == 0  # server-managed: the YAML value is ignored
    assert flow.disabled is True
    assert flow.labels == {"team": "data", "count": "3", "flag": "true"}
    assert flow.variables == {"greeting": "hello", "nested": {"a": [1, 2]}}
    assert type(flow.variables["nested"]) is dict and type(flow.variables["nested"]["a"]) is list
    user, legacy = flow.inputs
    assert (user.id, user.type, user.required, user.defaults, user.description, user.line) == (
        "user",
        "STRING",
        True,
        "world",
        "who",
        14,
    )
    assert (legacy.id, legacy.type, legacy.required, legacy.extra) == ("legacy", "INT", False, {"min": 1})
    [output] = flow.outputs
    assert (output.id, output.type, output.value, output.line) == (
        "result",
        "STRING",
        "{{ outputs.say.value }}",
        23,
    )
    assert [t.id for t in flow.errors] == ["on_error"]
    assert [t.id for t in flow.finally_] == ["cleanup"]
    assert flow.triggers == (
        {"id": "every_minute", "type": "io.kestra.plugin.core.trigger.Schedule", "cron": "* * * * *"},
    )
    assert flow.plugin_defaults == (
        {"type": "io.kestra.plugin.core.log.Log", "values": {"level": "WARN"}},
        {"type": "io.kestra.plugin.core.debug.Return", "values": {"format": "x"}, "forced": True},
    )
    assert flow.concurrency == {"limit": 2, "behavior": "CANCEL"}
    assert flow.retry == {"type": "constant", "interval": "PT1S", "maxAttempt": 3}
    assert flow.sla == ({"id": "max", "type": "MAX_DURATION", "behavior": "FAIL", "duration": "PT1H"},)
    assert [t.id for t in flow.walk()] == ["say", "on_error", "cleanup"]


def test_labels_in_list_form() -> None:
    flow = parse(
        """
        id: f
        namespace: ns
        labels:
          - key: env
            value: prod
          - key: n
            value: 1.5
          - key: system.readOnly
            value: "true"
        tasks:
          - {id: t, type: io.kestra.plugin.core.log.Log, message: x}
        """
    )
    assert flow.labels == {"env": "prod", "n": "1.5", "system.readOnly": "true"}


def test_yaml_scalars_follow_jackson_not_yaml_1_1() -> None:
    flow = parse(
        """
        id: f
        namespace: ns
        variables:
          date: 2023-01-01
          stamp: 2023-01-01T10:00:00Z
          yes_is_text: yes
          on_is_text: on
          hex: 0x1f
          float: 1.5e3
          2: int key
          true: bool key
        tasks:
          - {id: t, type: io.kestra.plugin.core.log.Log, message: x}
        """
    )
    assert flow.variables == {
        "date": "2023-01-01",
        "stamp": "2023-01-01T10:00:00Z",
        "yes_is_text": "yes",
        "on_is_text": "on",
        "hex": 31,
        "float": 1500.0,
        "2": "int key",
        "true": "bool key",
    }
    assert type(flow.variables["hex"]) is int and type(flow.variables["float"]) is float


def test_common_task_properties_are_mapped_to_fields() -> None:
    flow = parse(
        """
        id: f
        namespace: ns
        tasks:
          - id: t
            type: io.kestra.plugin.core.log.Log
            message: x
            description: a task
            disabled: true
            timeout: PT1M30.5S
            retry:
              type: exponential
              interval: PT1S
              maxInterval: PT10S
              maxAttempt: 4
            allowFailure: true
            allowWarning: "true"
            runIf: "{{ inputs.go }}"
            logLevel: WARN
            logToFile: true
            workerGroup:
              key: gpu
        """
    )
    [task] = flow.tasks
    assert task.description == "a task"
    assert task.disabled is True
    assert task.timeout == 90.5
    assert task.retry == {"type": "exponential", "interval": "PT1S", "maxInterval": "PT10S", "maxAttempt": 4}
    assert (task.allow_failure, task.allow_warning) == (True, True)
    assert task.run_if == "{{ inputs.go }}"
    assert task.log_level == "WARN"
    assert task.worker_group == "gpu"
    assert task.properties == {"message": "x", "logToFile": True}


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("PT5M", 300.0), ("PT0.250S", 0.25), ("pt0.25s", 0.25), ("P1DT2H", 93600.0), (60, 60.0)],
)
def test_timeout_forms(written: object, seconds: float) -> None:
    flow = parse(MINIMAL + f"    timeout: {written}\n")
    assert flow.tasks[0].timeout == seconds


def test_timeout_expression_is_kept_for_run_time() -> None:
    flow = parse(MINIMAL + '    timeout: "{{ inputs.timeout }}"\n')
    assert flow.tasks[0].timeout is None
    assert flow.tasks[0].properties["timeout"] == "{{ inputs.timeout }}"


def test_run_if_boolean_becomes_text() -> None:
    assert parse(MINIMAL + "    runIf: false\n").tasks[0].run_if == "false"


def test_flowable_children_go_to_subtasks_in_yaml_order() -> None:
    flow = parse(
        """
        id: f
        namespace: ns
        tasks:
          - id: seq
            type: io.kestra.plugin.core.flow.Sequential
            tasks:
              - id: a
                type: io.kestra.plugin.core.log.Log
                message: a
              - id: inner
                type: io.kestra.plugin.core.flow.Sequential
                tasks:
                  - id: b
                    type: io.kestra.plugin.core.debug.Return
                    format: b
            errors:
              - id: err
                type: io.kestra.plugin.core.log.Log
                message: e
            finally:
              - id: fin
                type: io.kestra.plugin.core.log.Log
                message: f
          - id: when
            type: io.kestra.plugin.core.flow.If
            condition: "{{ true }}"
            then:
              - {id: yes_branch, type: io.kestra.plugin.core.log.Log, message: y}
            else:
              - {id: no_branch, type: io.kestra.plugin.core.log.Log, message: n}
          - id: choose
            type: io.kestra.plugin.core.flow.Switch
            value: "{{ inputs.x }}"
            cases:
              FIRST:
                - {id: first, type: io.kestra.plugin.core.log.Log, message: "1"}
              2:
                - {id: second, type: io.kestra.plugin.core.log.Log, message: "2"}
            defaults:
              - {id: other, type: io.kestra.plugin.core.log.Log, message: d}
        """
    )
    seq, when, choose = flow.tasks
    assert list(seq.subtasks) == ["tasks", "errors", "finally"]
    assert [t.id for t in seq.tasks] == ["a", "inner"]
    assert [t.id for t in seq.tasks[1].tasks] == ["b"]
    assert [t.id for t in seq.errors] == ["err"]
    assert [t.id for t in seq.finally_] == ["fin"]
    assert seq.properties == {}
    assert list(when.subtasks) == ["then", "else"]
    assert when.properties == {"condition": "{{ true }}"}
    assert list(choose.subtasks) == ["cases.FIRST", "cases.2", "defaults"]
    assert choose.properties == {"value": "{{ inputs.x }}"}
    assert [t.id for t in flow.walk()] == [
        "seq",
        "a",
        "inner",
        "b",
        "err",
        "fin",
        "when",
        "yes_branch",
        "no_branch",
        "choose",
        "first",
        "second",
        "other",
    ]
    assert flow.find_task("b").line == 13


def test_dag_children_keep_depends_on_in_properties() -> None:
    flow = parse(
        """
        id: f
        namespace: ns
        tasks:
          - id: dag
            type: io.kestra.plugin.core.flow.Dag
            tasks:
              - task:
                  id: one
                  type: io.kestra.plugin.core.log.Log
                  message: "1"
              - task:
                  id: two
                  type: io.kestra.plugin.core.log.Log
                  message: "2"
                dependsOn:
                  - one
        """
    )
    one, two = flow.tasks[0].tasks
    assert one.properties == {"message": "1", "dependsOn": []}
    assert two.properties == {"message": "2", "dependsOn": ["one"]}
    assert (one.line, two.line) == (8, 12)


def test_unknown_types_keep_everything_in_properties() -> None:
    flow = parse(
        """
        id: f
        namespace: ns
        tasks:
          - id: custom
            type: acme.tasks.Thing
            anything: {nested: [1, 2]}
            tasks: [not, parsed]
        """
    )
    assert flow.tasks[0].properties == {"anything": {"nested": [1, 2]}, "tasks": ["not", "parsed"]}
    assert flow.tasks[0].subtasks == {}


# --- YAML-level errors --------------------------------------------------------------------------


def test_yaml_syntax_error_has_the_line() -> None:
    issue = one_issue(
        """
        id: f
        namespace: ns
        tasks:
          - id: [unclosed
            type: x
        """
    )
    assert issue.message.startswith("invalid YAML")
    assert issue.line == 5


def test_duplicate_yaml_key_is_refused_with_its_line() -> None:
    issue = one_issue(
        """
        id: f
        namespace: ns
        tasks:
          - id: t
            type: io.kestra.plugin.core.log.Log
            message: a
            message: b
        """
    )
    assert 'duplicate key "message"' in issue.message
    assert issue.line == 7


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "the flow source is empty"),
        ("# only a comment\n", "the flow source is empty"),
        ("- a\n- b\n", "a flow must be a YAML mapping"),
        ("just text\n", "a flow must be a YAML mapping"),
    ],
)
def test_top_level_must_be_a_mapping(source: str, message: str) -> None:
    with pytest.raises(FlowValidationError) as info:
        parse_flow(source)
    assert message in str(info.value)
    assert info.value.issues[0].line == 1


def test_several_documents_are_refused() -> None:
    with pytest.raises(FlowValidationError, match="single document"):
        parse_flow(MINIMAL + "---\n" + MINIMAL)


def test_alias_bombs_are_stopped() -> None:
    lines = ["id: f", "namespace: ns", "variables:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"  a{level}: &a{level} [{refs}]")
    lines += ["tasks:", "  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}"]
    with pytest.raises(FlowValidationError, match="expands to more than"):
        parse_flow("\n".join(lines) + "\n")


def test_non_string_source_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_flow(b"id: x")  # type: ignore[arg-type]


# --- flow-level rules ---------------------------------------------------------------------------


def test_all_issues_are_collected_and_sorted_by_line() -> None:
    with pytest.raises(FlowValidationError) as info:
        parse(
            """
            id: "bad id"
            namespace: Bad
            foo: 1
            tasks:
              - type: io.kestra.plugin.core.log.Log
                message: x
              - id: t
            """
        )
    err = info.value
    assert [(i.path, i.line) for i in err.issues] == [
        ("id", 1),
        ("namespace", 2),
        ("foo", 3),
        ("tasks[0].id", 5),
        ("tasks[1].type", 7),
    ]
    assert err.flow_ref == ""
    text = str(err)
    assert text.startswith("flow is invalid:")
    assert "line 7: tasks[1].type: task 't': 'type' is required" in text


def test_flow_ref_names_the_flow() -> None:
    with pytest.raises(FlowValidationError) as info:
        parse(MINIMAL + "    bogus: 1\n")
    assert info.value.flow_ref == "dev.demo.hello"
    assert str(info.value).startswith("flow dev.demo.hello is invalid:")


@pytest.mark.parametrize(
    ("header", "path", "line", "message"),
    [
        ("namespace: ns\n", "id", 1, "'id' is required"),
        ("id: f\n", "namespace", 1, "'namespace' is required"),
        ("id: 'my#flow'\nnamespace: ns\n", "id", 1, "'my#flow' is not a valid flow id"),
        ("id: -flow\nnamespace: ns\n", "id", 1, "'-flow' is not a valid flow id"),
        ("id: f\nnamespace: My.Team\n", "namespace", 2, "'My.Team' is not a valid namespace"),
        ("id: f\nnamespace: 'a b'\n", "namespace", 2, "'a b' is not a valid namespace"),
        (f"id: {'x' * 101}\nnamespace: ns\n", "id", 1, "at most 100"),
        (f"id: f\nnamespace: {'n' * 151}\n", "namespace", 2, "at most 150"),
        ("id: [a]\nnamespace: ns\n", "id", 1, "'id' must be a string, not a list"),
    ],
)
def test_flow_id_and_namespace_rules(header: str, path: str, line: int, message: str) -> None:
    body = "tasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}\n"
    issue = one_issue(header + body)
    assert (issue.path, issue.line) == (path, line)
    assert message in issue.message


def test_valid_identifiers_at_the_limits() -> None:
    flow = parse_flow(
        f"id: {'A' * 100}\nnamespace: {'a.b_c-d' + 'n' * 143}\n"
        "tasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}\n"
    )
    assert len(flow.id) == 100 and len(flow.namespace) == 150


def test_integer_ids_are_read_as_text_like_jackson() -> None:
    flow = parse_flow(
        "id: 42\nnamespace: ns\ntasks:\n  - {id: 1, type: io.kestra.plugin.core.log.Log, message: x}\n"
    )
    assert flow.id == "42" and flow.tasks[0].id == "1"


@pytest.mark.parametrize(
    ("tasks", "message", "line"),
    [
        ("", "'tasks' is required", 1),
        ("tasks:\n", "'tasks' is required", 3),
        ("tasks: []\n", "'tasks' must not be empty", 3),
        ("tasks: {id: t}\n", "'tasks' must be a list, not a mapping", 3),
    ],
)
def test_tasks_required_non_empty_list(tasks: str, message: str, line: int) -> None:
    issue = one_issue("id: f\nnamespace: ns\n" + tasks)
    assert message in issue.message
    assert issue.line == line


def test_unknown_top_level_key_is_named_with_a_suggestion() -> None:
    issue = one_issue(MINIMAL + "task:\n  - x\n")
    assert issue.path == "task"
    assert issue.line == 7
    assert "unknown property 'task' (did you mean 'tasks'?)" in issue.message


def test_listeners_are_refused_explicitly() -> None:
    issue = one_issue(MINIMAL + "listeners:\n  - tasks: []\n")
    assert issue.line == 7
    assert "'listeners' (deprecated in Kestra) is not supported" in issue.message


@pytest.mark.parametrize(
    ("block", "path", "line", "message"),
    [
        ("labels: [a]\n", "labels[0]", 7, "must be a mapping {key, value}"),
        ("labels: 3\n", "labels", 7, "must be a map or a list"),
        ("labels:\n  a: [1]\n", "labels.a", 8, "must have a scalar value"),
        ("labels:\n  a:\n", "labels.a", 8, "label 'a' has no value"),
        (
            "labels:\n  system.custom: x\n",
            "labels.system.custom",
            8,
            "System labels can only be set by Kestra itself, offending label: system.custom=x",
        ),
        ("variables: [1]\n", "variables", 7, "'variables' must be a mapping, not a list"),
        ("disabled: maybe\n", "disabled", 7, "'disabled' must be true or false"),
        ("concurrency:\n  behavior: QUEUE\n", "concurrency.limit", 8, "'limit' is required"),
        ("concurrency:\n  limit: 0\n", "concurrency.limit", 8, "'limit' must be an integer > 0"),
        (
            "concurrency:\n  limit: 1\n  behavior: WAIT\n",
            "concurrency.behavior",
            9,
            "invalid 'behavior' 'WAIT'",
        ),
        ("retry:\n  maxAttempt: 2\n", "retry.type", 8, "retry: 'type' is required"),
        ("retry:\n  type: linear\n", "retry.type", 8, "invalid retry type 'linear'"),
        (
            "triggers:\n  - type: io.kestra.plugin.core.trigger.Schedule\n",
            "triggers[0].id",
            8,
            "'id' is required",
        ),
        ("triggers:\n  - id: t\n", "triggers[0].type", 8, "trigger 't': 'type' is required"),
        ("pluginDefaults:\n  - values: {a: 1}\n", "pluginDefaults[0].type", 8, "'type' is required"),
        ("outputs:\n  - id: o\n    type: STRING\n", "outputs[0].value", 8, "output 'o': 'value' is required"),
        (
            "outputs:\n  - id: o\n    type: NUMBER\n    value: 1\n",
            "outputs[0].type",
            9,
            "invalid type 'NUMBER'",
        ),
    ],
)
def test_flow_level_property_rules(block: str, path: str, line: int, message: str) -> None:
    issue = one_issue(MINIMAL + block)
    assert issue.path == path, str(issue)
    assert issue.line == line, str(issue)
    assert message in issue.message


def test_duplicate_trigger_ids() -> None:
    issue = one_issue(
        MINIMAL
        + "triggers:\n"
        + "  - {id: t, type: io.kestra.plugin.core.trigger.Schedule, cron: '* * * * *'}\n"
        + "  - {id: t, type: io.kestra.plugin.core.trigger.Webhook, key: k}\n"
    )
    assert (issue.path, issue.line) == ("triggers[1].id", 9)
    assert issue.message == "duplicate trigger id 't' (first at line 8)"


def test_duplicate_output_ids() -> None:
    issue = one_issue(
        MINIMAL + "outputs:\n  - {id: o, type: STRING, value: a}\n  - {id: o, type: STRING, value: b}\n"
    )
    assert (issue.path, issue.line, issue.message) == (
        "outputs[1].id",
        9,
        "duplicate output id 'o' (first at line 8)",
    )


# --- task rules ---------------------------------------------------------------------------------


def test_task_must_be_a_mapping() -> None:
    issue = one_issue("id: f\nnamespace: ns\ntasks:\n  - just a string\n")
    assert (issue.path, issue.line) == ("tasks[0]", 4)
    assert "a task must be a mapping" in issue.message


def test_missing_type_names_the_task_and_field() -> None:
    issue = one_issue(
        """
        id: f
        namespace: ns
        tasks:
          - id: first
            type: io.kestra.plugin.core.log.Log
            message: x
          - id: second
            type: io.kestra.plugin.core.log.Log
            message: y
          - id: hello
            message: z
        """
    )
    assert (issue.path, issue.line) == ("tasks[2].type", 10)
    assert issue.message == "task 'hello': 'type' is required"
    assert str(issue) == "line 10: tasks[2].type: task 'hello': 'type' is required"


def test_missing_id_names_the_type() -> None:
    issue = one_issue(
        "id: f\nnamespace: ns\ntasks:\n  - type: io.kestra.plugin.core.log.Log\n    message: x\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].id", 4)
    assert issue.message == "'id' is required (a task of type 'io.kestra.plugin.core.log.Log')"


@pytest.mark.parametrize("task_id", ["has space", "dot.ted", "-lead", "_lead", "é"])
def test_task_id_pattern(task_id: str) -> None:
    issue = one_issue(
        f"id: f\nnamespace: ns\ntasks:\n  - id: '{task_id}'\n    type: io.kestra.plugin.core.log.Log\n"
        "    message: x\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].id", 4)
    assert "not a valid task id" in issue.message


def test_type_must_be_a_string() -> None:
    issue = one_issue("id: f\nnamespace: ns\ntasks:\n  - id: t\n    type: {a: 1}\n")
    assert (issue.path, issue.line) == ("tasks[0].type", 5)
    assert "task 't': 'type' must be a string, not a mapping" == issue.message


def test_duplicate_task_ids_across_the_whole_flow() -> None:
    issues = issues_of(
        """
        id: f
        namespace: ns
        tasks:
          - id: x
            type: io.kestra.plugin.core.log.Log
            message: a
          - id: seq
            type: io.kestra.plugin.core.flow.Sequential
            tasks:
              - id: x
                type: io.kestra.plugin.core.log.Log
                message: b
            errors:
              - id: seq
                type: io.kestra.plugin.core.log.Log
                message: c
        errors:
          - id: x
            type: io.kestra.plugin.core.log.Log
            message: d
        finally:
          - id: seq
            type: io.kestra.plugin.core.log.Log
            message: e
        """
    )
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("tasks[1].tasks[0].id", 10, "duplicate task id 'x' (first at line 4)"),
        ("tasks[1].errors[0].id", 14, "duplicate task id 'seq' (first at line 7)"),
        ("errors[0].id", 18, "duplicate task id 'x' (first at line 4)"),
        ("finally[0].id", 22, "duplicate task id 'seq' (first at line 7)"),
    ]


@pytest.mark.parametrize(
    ("extra", "path", "line", "message"),
    [
        ("    disabled: sometimes\n", "tasks[0].disabled", 7, "task 'say': 'disabled' must be true or false"),
        ("    allowFailure: 1\n", "tasks[0].allowFailure", 7, "'allowFailure' must be true or false"),
        (
            "    timeout: 5 minutes\n",
            "tasks[0].timeout",
            7,
            "invalid 'timeout': '5 minutes' is not an ISO-8601 duration",
        ),
        ("    timeout: P1M\n", "tasks[0].timeout", 7, "is not an ISO-8601 duration"),
        ("    timeout: PT0S\n", "tasks[0].timeout", 7, "'timeout' must be positive"),
        ("    timeout: [1]\n", "tasks[0].timeout", 7, "'timeout' must be an ISO-8601 duration"),
        ("    logLevel: info\n", "tasks[0].logLevel", 7, "invalid 'logLevel' 'info' (did you mean 'INFO'?)"),
        ("    workerGroup: gpu\n", "tasks[0].workerGroup", 7, "'workerGroup' must be a mapping"),
        ("    retry: 3\n", "tasks[0].retry", 7, "'retry' must be a mapping"),
        ("    retry:\n      type: sometimes\n", "tasks[0].retry.type", 8, "invalid retry type 'sometimes'"),
        ("    runIf: [a]\n", "tasks[0].runIf", 7, "'runIf' must be an expression string"),
        ("    description: {a: 1}\n", "tasks[0].description", 7, "'description' must be a string"),
        (
            "    mesage: typo\n",
            "tasks[0].mesage",
            7,
            "unknown property 'mesage' for type io.kestra.plugin.core.log.Log (did you mean 'message'?)",
        ),
    ],
)
def test_task_property_rules(extra: str, path: str, line: int, message: str) -> None:
    issue = one_issue(MINIMAL + extra)
    assert (issue.path, issue.line) == (path, line), str(issue)
    assert message in issue.message


def test_unknown_property_of_a_flowable_we_run() -> None:
    issue = one_issue(
        """
        id: f
        namespace: ns
        tasks:
          - id: seq
            type: io.kestra.plugin.core.flow.Sequential
            concurrent: 2
            tasks:
              - {id: t, type: io.kestra.plugin.core.log.Log, message: x}
        """
    )
    assert (issue.path, issue.line) == ("tasks[0].concurrent", 6)


@pytest.mark.parametrize(
    ("task_type", "children"),
    [
        ("io.kestra.plugin.core.flow.Sequential", ""),
        ("io.kestra.plugin.core.flow.Sequential", "    tasks: []\n"),
        ("io.kestra.plugin.core.flow.Sequential", "    tasks:\n"),
        ("io.kestra.plugin.core.flow.Parallel", ""),
        ("io.kestra.plugin.core.flow.ForEach", "    values: [1]\n"),
        ("io.kestra.plugin.core.flow.AllowFailure", "    tasks: []\n"),
        ("io.kestra.plugin.core.flow.WorkingDirectory", ""),
        ("io.kestra.core.tasks.flows.Sequential", ""),
    ],
)
def test_flowables_need_their_tasks(task_type: str, children: str) -> None:
    issue = one_issue(f"id: f\nnamespace: ns\ntasks:\n  - id: flowable\n    type: {task_type}\n{children}")
    assert issue.path == "tasks[0].tasks"
    assert issue.message == "task 'flowable': 'tasks' must not be empty: give at least one task"
    assert issue.line in (4, 6)


def test_if_needs_then() -> None:
    issue = one_issue(
        "id: f\nnamespace: ns\ntasks:\n  - id: when\n    type: io.kestra.plugin.core.flow.If\n"
        "    condition: 'true'\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].then", 4)


def test_child_list_must_be_a_list() -> None:
    issue = one_issue(
        "id: f\nnamespace: ns\ntasks:\n  - id: seq\n    type: io.kestra.plugin.core.flow.Sequential\n"
        "    tasks: nope\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].tasks", 6)
    assert "task 'seq': 'tasks' must be a list, not the string 'nope'" == issue.message


def test_switch_needs_a_case_or_defaults() -> None:
    issue = one_issue(
        """
        id: f
        namespace: ns
        tasks:
          - id: impossible
            type: io.kestra.plugin.core.flow.Switch
            value: x
            cases: {}
            defaults:
            errors:
              - {id: e, type: io.kestra.plugin.core.log.Log, message: x}
        """
    )
    assert (issue.path, issue.line) == ("tasks[0]", 4)
    assert issue.message == "task 'impossible': No task defined, neither cases or default have any tasks"


def test_switch_case_must_be_a_task_list() -> None:
    issue = one_issue(
        "id: f\nnamespace: ns\ntasks:\n  - id: sw\n    type: io.kestra.plugin.core.flow.Switch\n"
        "    value: x\n    cases:\n      A: nope\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].cases.A", 8)


def test_working_directory_accepts_only_runnable_children() -> None:
    issue = one_issue(
        """
        id: f
        namespace: ns
        tasks:
          - id: wd
            type: io.kestra.plugin.core.flow.WorkingDirectory
            tasks:
              - {id: ok, type: io.kestra.plugin.core.log.Log, message: x}
              - id: seq
                type: io.kestra.plugin.core.flow.Sequential
                tasks:
                  - {id: inner, type: io.kestra.plugin.core.log.Log, message: y}
        """
    )
    assert (issue.path, issue.line) == ("tasks[0].tasks[1]", 8)
    assert "Only runnable tasks are allowed as children of a WorkingDirectory task" in issue.message


DAG_HEAD = """
id: f
namespace: ns
tasks:
  - id: dag
    type: io.kestra.plugin.core.flow.Dag
    tasks:
"""


def test_dag_unknown_dependency() -> None:
    issue = one_issue(
        DAG_HEAD
        + "      - task: {id: a, type: io.kestra.plugin.core.log.Log, message: a}\n"
        + "        dependsOn: [zz]\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].tasks[0].dependsOn", 8)
    assert issue.message == "task 'dag': dag: Not existing task id in dependency: zz"


def test_dag_cycle() -> None:
    issue = one_issue(
        DAG_HEAD
        + "      - task: {id: a, type: io.kestra.plugin.core.log.Log, message: a}\n"
        + "        dependsOn: [c]\n"
        + "      - task: {id: b, type: io.kestra.plugin.core.log.Log, message: b}\n"
        + "        dependsOn: [a]\n"
        + "      - task: {id: c, type: io.kestra.plugin.core.log.Log, message: c}\n"
        + "        dependsOn: [b]\n"
        + "      - task: {id: d, type: io.kestra.plugin.core.log.Log, message: d}\n"
        + "        dependsOn: [c]\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].tasks[0].dependsOn", 8)
    assert issue.message == "task 'dag': dag: Cyclic dependency detected: a, c, b"


def test_dag_item_shape() -> None:
    issues = issues_of(
        DAG_HEAD
        + "      - id: not-wrapped\n"
        + "        type: io.kestra.plugin.core.log.Log\n"
        + "      - task: {id: a, type: io.kestra.plugin.core.log.Log, message: a}\n"
        + "        after: [x]\n"
    )
    assert [(i.path, i.line) for i in issues] == [("tasks[0].tasks[0]", 7), ("tasks[0].tasks[1].after", 10)]


def test_subflow_calling_its_own_flow_is_refused() -> None:
    issue = one_issue(
        "id: me\nnamespace: ns\ntasks:\n  - id: again\n    type: io.kestra.plugin.core.flow.Subflow\n"
        "    namespace: ns\n    flowId: me\n"
    )
    assert (issue.path, issue.line) == ("tasks[0].flowId", 7)
    assert issue.message == "task 'again': Recursive call to flow [ns.me]"


def test_subflow_calling_another_flow_is_fine() -> None:
    flow = parse_flow(
        "id: me\nnamespace: ns\ntasks:\n  - id: other\n    type: io.kestra.core.tasks.flows.Flow\n"
        "    namespace: ns\n    flowId: child\n"
    )
    assert flow.tasks[0].type == "io.kestra.plugin.core.flow.Subflow"
    assert flow.tasks[0].properties == {"namespace": "ns", "flowId": "child"}


def test_legacy_aliases_are_canonicalised_everywhere() -> None:
    flow = parse(
        """
        id: f
        namespace: ns
        tasks:
          - id: seq
            type: io.kestra.core.tasks.flows.Sequential
            tasks:
              - id: log
                type: io.kestra.core.tasks.log.Log
                message: x
              - id: ret
                type: io.kestra.core.tasks.debugs.Return
                format: y
        errors:
          - id: fail
            type: io.kestra.core.tasks.executions.Fail
        """
    )
    assert [(t.id, t.type, t.written_type) for t in flow.walk()] == [
        ("seq", "io.kestra.plugin.core.flow.Sequential", "io.kestra.core.tasks.flows.Sequential"),
        ("log", "io.kestra.plugin.core.log.Log", "io.kestra.core.tasks.log.Log"),
        ("ret", "io.kestra.plugin.core.debug.Return", "io.kestra.core.tasks.debugs.Return"),
        ("fail", "io.kestra.plugin.core.execution.Fail", "io.kestra.core.tasks.executions.Fail"),
    ]


# --- input declarations -------------------------------------------------------------------------


def test_input_name_is_an_alias_of_id() -> None:
    flow = parse(MINIMAL + "inputs:\n  - name: old\n    type: STRING\n")
    assert flow.inputs[0].id == "old"
    assert flow.inputs[0].required is True


@pytest.mark.parametrize(
    ("block", "path", "line", "message"),
    [
        ("  - type: STRING\n", "inputs[0].id", 8, "input: 'id' is required"),
        ("  - id:\n    type: STRING\n", "inputs[0].id", 8, "input: 'id' is required"),
        ("  - id: x\n", "inputs[0].type", 8, "input 'x': 'type' is required"),
        ("  - id: x\n    type: FOO\n", "inputs[0].type", 9, "input 'x': invalid type 'FOO'; one of STRING"),
        (
            "  - id: x\n    type: string\n",
            "inputs[0].type",
            9,
            "invalid type 'string' (did you mean 'STRING'?)",
        ),
        ("  - id: 'wrong one'\n    type: STRING\n", "inputs[0].id", 8, "not a valid input id"),
        ("  - id: x\n    name: y\n    type: STRING\n", "inputs[0].name", 9, "differs from 'id'"),
        (
            "  - id: x\n    type: STRING\n    required: perhaps\n",
            "inputs[0].required",
            10,
            "must be true or false",
        ),
        (
            "  - id: x\n    type: STRING\n    min: 1\n",
            "inputs[0].min",
            10,
            "unknown property 'min' for a STRING input",
        ),
        (
            "  - id: x\n    type: STRING\n    validator: '['\n",
            "inputs[0].validator",
            10,
            "'validator' is not a valid regular expression",
        ),
        ("  - id: x\n    type: INT\n    min: one\n", "inputs[0].min", 10, "'min' is not a valid INT"),
        (
            "  - id: x\n    type: DURATION\n    max: 5m\n",
            "inputs[0].max",
            10,
            "'max' is not a valid DURATION",
        ),
        (
            "  - id: x\n    type: DATE\n    after: yesterday\n",
            "inputs[0].after",
            10,
            "'after' is not a valid DATE",
        ),
        ("  - id: x\n    type: ENUM\n", "inputs[0].values", 8, "'values' is required for an ENUM input"),
        ("  - id: x\n    type: SELECT\n", "inputs[0].values", 8, "needs 'values' or 'expression'"),
        (
            "  - id: x\n    type: ARRAY\n",
            "inputs[0].itemType",
            8,
            "'itemType' is required for an ARRAY input",
        ),
        (
            "  - id: x\n    type: ARRAY\n    itemType: ARRAY\n",
            "inputs[0].itemType",
            10,
            "`itemType` cannot be `ARRAY`",
        ),
        (
            "  - id: x\n    type: ARRAY\n    itemType: LONG\n",
            "inputs[0].itemType",
            10,
            "invalid `itemType` 'LONG'",
        ),
        (
            "  - id: x\n    type: FILE\n    defaults: a.txt\n",
            "inputs[0].defaults",
            10,
            "no `defaults` can be set for inputs of type 'FILE'",
        ),
        (
            "  - id: x\n    type: STRING\n  - id: x\n    type: INT\n",
            "inputs[1].id",
            10,
            "duplicate input id 'x' (first at line 8)",
        ),
        (
            "  - id: a\n    type: STRING\n  - id: a.b\n    type: STRING\n",
            "inputs.a.b",
            10,
            "nests under input 'a'",
        ),
        (
            "  - id: a\n    type: STRING\n    dependsOn:\n      inputs: [zz]\n",
            "inputs[0].dependsOn",
            8,
            "Input with id 'a' depends on a non-existent input 'zz'",
        ),
        ("  - just text\n", "inputs[0]", 8, "an input must be a mapping"),
    ],
)
def test_input_declaration_rules(block: str, path: str, line: int, message: str) -> None:
    issue = one_issue(MINIMAL + "inputs:\n" + block)
    assert (issue.path, issue.line) == (path, line), str(issue)
    assert message in issue.message


def test_input_dependency_cycle() -> None:
    issues = issues_of(
        MINIMAL + "inputs:\n"
        "  - {id: a, type: STRING, dependsOn: {inputs: [b]}}\n"
        "  - {id: b, type: STRING, dependsOn: {inputs: [a]}}\n"
    )
    assert [i.message for i in issues] == ["Cycle dependency detected for input with id 'a': [a, b]"]


def test_input_type_specific_settings_go_to_extra() -> None:
    flow = parse(
        MINIMAL
        + "inputs:\n"
        + "  - id: choice\n    type: SELECT\n    values: [A, B]\n    allowCustomValue: true\n"
        + "    displayName: Choose\n    dependsOn:\n      inputs: [n]\n      condition: '{{ true }}'\n"
        + "  - id: n\n    type: INT\n    min: 1\n    max: 10\n    defaults: 5\n"
    )
    choice, n = flow.inputs
    assert choice.extra == {
        "values": ["A", "B"],
        "allowCustomValue": True,
        "displayName": "Choose",
        "dependsOn": {"inputs": ["n"], "condition": "{{ true }}"},
    }
    assert (n.extra, n.defaults) == ({"min": 1, "max": 10}, 5)
