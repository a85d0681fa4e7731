"""Registration-time expression checks: syntax, unknown tasks/inputs/variables, ordering warnings."""

from __future__ import annotations

from controlplane.flows import parse_flow
from controlplane.flows.static_checks import LENIENT_SUFFIX, check_expressions, lenient_warning

HEADER = """\
id: checks
namespace: tests.checks
inputs:
  - id: name
    type: STRING
  - id: nested.value
    type: INT
variables:
  greeting: hello
"""


def check(tasks: str, extra: str = "") -> tuple[list[str], list[str]]:
    errors, warnings = check_expressions(parse_flow(HEADER + extra + "tasks:\n" + tasks))
    return [str(i) for i in errors], [str(i) for i in warnings]


def test_valid_references_pass():
    errors, warnings = check(
        """\
  - id: first
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.name }} {{ inputs.nested.value }} {{ inputs['name'] }} {{ vars.greeting }}"
  - id: second
    type: io.kestra.plugin.core.log.Log
    message: "{{ outputs.first.value }} {{ outputs['first'].value }} {{ flow.id }} {{ execution.id }}"
"""
    )
    assert errors == [] and warnings == []


def test_syntax_error_names_task_property_and_line():
    errors, _ = check(
        """\
  - id: broken
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.name "
"""
    )
    assert len(errors) == 1
    assert errors[0].startswith("line 13: tasks[0].message: task 'broken' property 'message': invalid expression")


def test_unknown_task_input_and_variable_are_errors_with_hints():
    errors, _ = check(
        """\
  - id: first
    type: io.kestra.plugin.core.debug.Return
    format: x
  - id: second
    type: io.kestra.plugin.core.log.Log
    message: "{{ outputs.frist.value }} {{ inputs.nmae }} {{ vars.greting }}"
"""
    )
    text = "\n".join(errors)
    assert "task 'second' property 'message' reads outputs of 'frist', which is not a task of this flow (did you mean 'first'?)" in text
    assert "reads input 'nmae', which the flow does not declare (did you mean 'name'?)" in text
    assert "reads variable 'greting', which 'variables' does not define (did you mean 'greeting'?)" in text
    assert all(e.startswith("line 16: tasks[1].message") for e in errors)


def test_guarded_reads_are_allowed():
    errors, _ = check(
        """\
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: "{{ outputs.missing ?? '' }} {{ inputs.other is defined }} {{ vars.nope | default('x') }}"
"""
    )
    assert errors == []


def test_reading_a_later_task_is_a_warning_but_not_in_errors_or_children():
    errors, warnings = check(
        """\
  - id: early
    type: io.kestra.plugin.core.log.Log
    message: "{{ outputs.late.value }}"
  - id: late
    type: io.kestra.plugin.core.debug.Return
    format: x
errors:
  - id: handler
    type: io.kestra.plugin.core.log.Log
    message: "{{ outputs.late.value ?? '' }} {{ outputs.early }}"
"""
    )
    assert errors == []
    assert len(warnings) == 1 and "reads outputs of task 'late', which comes after it" in warnings[0]


def test_nested_paths_and_list_items_are_checked():
    errors, _ = check(
        """\
  - id: loop
    type: io.kestra.plugin.core.flow.ForEach
    values: ["{{ inputs.nope }}"]
    tasks:
      - id: inner
        type: io.kestra.plugin.core.log.Log
        message: "{{ outputs.ghost }}"
"""
    )
    assert any(e.startswith("line 13: tasks[0].values[0]: task 'loop' property 'values[0]'") for e in errors), errors
    assert any(e.startswith("line 17: tasks[0].tasks[0].message: task 'inner'") for e in errors), errors


def test_descriptions_and_trigger_references_are_not_checked():
    errors, _ = check(
        """\
  - id: t
    type: io.kestra.plugin.core.log.Log
    description: "{{ not rendered"
    message: hi
""",
        extra='triggers:\n  - id: s\n    type: io.kestra.plugin.core.trigger.Schedule\n    cron: "0 * * * *"\n'
        '    inputs:\n      name: "{{ trigger.date }} {{ outputs.x }}"\n',
    )
    assert errors == []


def test_lenient_warning_keeps_path_and_line():
    errors, _ = check("  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: '{{ outputs.x.value }}'\n")
    issue = check_expressions(parse_flow(HEADER + "tasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: '{{ outputs.x.value }}'\n"))[0][0]
    warning = lenient_warning(issue)
    assert warning.message.endswith(LENIENT_SUFFIX) and warning.line == issue.line == 13 and errors


def test_long_chains_are_reported_not_crashed_on():
    chain = " + ".join(["1"] * 1500)
    errors, _ = check(f"  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: '{{{{ {chain} }}}}'\n")
    assert len(errors) == 1 and "too deeply" in errors[0]


def test_a_name_merely_containing_outputs_does_not_disable_the_checks():
    errors, _ = check(
        "  - id: t\n    type: io.kestra.plugin.core.log.Log\n"
        "    message: '{% set my_outputs = 1 %}{{ outputs.nothere }}'\n"
    )
    assert any("reads outputs of 'nothere'" in e for e in errors), errors

