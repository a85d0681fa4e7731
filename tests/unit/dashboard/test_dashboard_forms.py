"""The Execute and Resume forms: fields from typed inputs, values to send, server errors per field."""

from __future__ import annotations

from datetime import date, time

from controlplane.errors import InputValidationError
from controlplane.flows.inputs import coerce_inputs
from controlplane.flows.parser import parse_flow
from dashboard.forms import collect_inputs, errors_by_input, input_fields, resume_fields
from worker_sdk.types import Flow, FlowInput

SOURCE = """
id: typed
namespace: n
inputs:
  - {id: name, type: STRING}
  - {id: count, type: INT, min: 1}
  - {id: mode, type: SELECT, values: [fast, careful], defaults: fast}
  - {id: tags, type: MULTISELECT, values: [a, b]}
  - {id: day, type: DATE, required: false}
  - {id: payload, type: JSON, required: false}
  - {id: dry, type: BOOLEAN, defaults: false}
  - {id: blob, type: FILE, required: false}
tasks:
  - id: pause
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - {id: approved, type: BOOLEAN}
      - {id: reason, type: STRING, defaults: none, description: Why}
"""


def _flow() -> Flow:
    declared = [
        FlowInput("name", "STRING", required=True),
        FlowInput("count", "INT", required=True),
        FlowInput("mode", "SELECT", required=True, default="fast", has_default=True),
        FlowInput("tags", "MULTISELECT", required=True),
        FlowInput("day", "DATE"),
        FlowInput("payload", "JSON"),
        FlowInput("dry", "BOOLEAN", required=True, default=False, has_default=True),
        FlowInput("blob", "FILE"),
    ]
    return Flow(namespace="n", id="typed", revision=1, source=SOURCE, inputs=declared)


def test_fields_follow_the_declared_types_and_take_select_values_from_the_source() -> None:
    fields = {f.id: f for f in input_fields(_flow())}
    assert {k: f.widget for k, f in fields.items()} == {
        "name": "text",
        "count": "int",
        "mode": "select",
        "tags": "multiselect",
        "day": "date",
        "payload": "textarea",
        "dry": "bool",
        "blob": "unsupported",
    }
    assert fields["mode"].values == ["fast", "careful"] and fields["tags"].values == ["a", "b"]
    assert fields["mode"].required is False  # a default makes it optional in the form
    assert fields["mode"].placeholder == "default: fast" and fields["dry"].placeholder == "default: false"
    assert fields["name"].required and fields["count"].help == "type INT"


def test_select_without_literal_values_becomes_a_text_field() -> None:
    flow = Flow(namespace="n", id="f", revision=1, source="id: f\nnamespace: n\ninputs:\n  - {id: s, type: SELECT, expression: x}",
                inputs=[FlowInput("s", "SELECT", required=True)])  # fmt: skip
    assert input_fields(flow)[0].widget == "text"


def test_collect_inputs_leaves_empty_fields_out_and_types_the_rest() -> None:
    fields = input_fields(_flow())
    inputs, errors = collect_inputs(
        fields,
        {
            "name": "Ada",
            "count": 3.0,
            "mode": "",
            "tags": ["b"],
            "day": date(2024, 2, 29),
            "payload": '{"k": [1, 2]}',
            "dry": "true",
        },
    )
    assert errors == {}
    assert inputs == {
        "name": "Ada",
        "count": 3,
        "tags": ["b"],
        "day": "2024-02-29",
        "payload": {"k": [1, 2]},
        "dry": True,
    }


def test_collect_inputs_reports_required_fields_and_bad_json_per_field() -> None:
    inputs, errors = collect_inputs(input_fields(_flow()), {"name": "  ", "payload": "{nope", "tags": []})
    assert errors == {
        "name": "`name` is required",
        "count": "`count` is required",
        "tags": "`tags` is required",
        "payload": errors["payload"],
    }
    assert errors["payload"].startswith("not valid JSON:")
    assert "name" not in inputs


def test_time_values_are_sent_as_iso_text() -> None:
    flow = Flow(namespace="n", id="f", revision=1, inputs=[FlowInput("t", "TIME", required=True)])
    assert collect_inputs(input_fields(flow), {"t": time(13, 45)}) == ({"t": "13:45:00"}, {})


def test_server_errors_are_split_onto_the_fields() -> None:
    """The message the control plane really produces for bad inputs, parsed back per field."""
    flow = parse_flow(SOURCE.replace("  - {id: blob, type: FILE, required: false}\n", ""))
    try:
        coerce_inputs(flow, {"name": "Ada", "count": "0", "mode": "slow", "tags": ["a"]})
    except InputValidationError as err:
        message = str(err)
    else:
        raise AssertionError("the inputs should have been refused")
    per_field, other = errors_by_input(message, ["name", "count", "mode", "tags"])
    assert set(per_field) == {"count", "mode"}
    assert "more than `1`" in per_field["count"] and "`0`" in per_field["count"]
    assert "fast, careful" in per_field["mode"]
    assert other == []  # the "flow n.typed: invalid inputs:" header is dropped


def test_unplaceable_server_lines_stay_general() -> None:
    per_field, other = errors_by_input("flow n.f is disabled", ["a"])
    assert per_field == {} and other == ["flow n.f is disabled"]
    per_field, other = errors_by_input("input 'a': FILE inputs need internal storage", ["a", "b"])
    assert per_field == {"a": "input 'a': FILE inputs need internal storage"}


def test_resume_fields_come_from_the_paused_task_on_resume() -> None:
    fields = resume_fields(SOURCE, "pause")
    assert [(f.id, f.widget, f.required) for f in fields] == [
        ("approved", "bool", True),
        ("reason", "text", False),
    ]
    assert fields[1].help == 'Why · type STRING · default: "none"'
    assert resume_fields(SOURCE, "missing") == [] and resume_fields("not yaml: [", "pause") == []
