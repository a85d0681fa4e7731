"""Registration-time literal checks (``controlplane/flows/literal_checks.py``): duplicate SLA ids
and a Subflow's literal ``scheduleDate`` that is not a date-time are errors naming the field and
the YAML line, through ``kestrel flow validate --local`` too; ``--lenient-expressions`` makes them
warnings (Kestra's own corpus repeats an SLA id); the parser itself still accepts them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.flows import parse_flow
from controlplane.flows.literal_checks import check_literals

HEAD = "id: lit\nnamespace: dev.demo\ninputs:\n  - {id: when, type: STRING}\n"
DUPLICATE_SLA = (HEAD + "sla:\n"
                 "  - {id: s, type: MAX_DURATION, duration: PT1H}\n"
                 "  - {id: other, type: MAX_DURATION, duration: PT2H}\n"
                 "  - id: s\n    type: EXECUTION_ASSERTION\n    assert: '{{ true }}'\n"
                 "tasks:\n  - {id: say, type: io.kestra.plugin.core.log.Log, message: hi}\n")


def _subflow(literal: str) -> str:
    return (HEAD + "tasks:\n  - id: par\n    type: io.kestra.plugin.core.flow.Parallel\n    tasks:\n"
            "      - id: sub\n        type: io.kestra.plugin.core.flow.Subflow\n        namespace: other\n"
            f"        flowId: child\n        scheduleDate: {literal}\n")


def test_duplicate_sla_ids_name_the_field_and_both_lines() -> None:
    issues = check_literals(parse_flow(DUPLICATE_SLA))
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("sla[2].id", 8, "sla 's': duplicate sla id 's' (first at line 6); each SLA of a flow needs its own id")]


def test_distinct_sla_ids_pass() -> None:
    assert check_literals(parse_flow(DUPLICATE_SLA.replace("  - id: s\n", "  - id: third\n"))) == []


@pytest.mark.parametrize(("literal", "why"), [
    ("tomorrow", "must be an ISO-8601 date-time with an offset (e.g. 2026-01-01T10:00:00+01:00), got 'tomorrow'"),
    ("2026-01-01", "needs a time zone offset"),
    ("2026-01-01T10:00:00", "needs a time zone offset"),
    ("5", "must be an ISO-8601 date-time"),
])
def test_a_literal_schedule_date_that_is_not_a_date_time_is_an_error(literal: str, why: str) -> None:
    [issue] = check_literals(parse_flow(_subflow(literal)))
    assert (issue.path, issue.line) == ("tasks[0].tasks[0].scheduleDate", 13)
    assert issue.message.startswith("task 'sub': property 'scheduleDate' ") and why in issue.message, issue.message


@pytest.mark.parametrize("literal", [
    "2026-01-01T10:00:00+01:00", '"2026-01-01T10:00:00Z"', '"{{ inputs.when }}"',
    "\"{{ now() | dateAdd(1, 'DAYS') }}\"", '"{% if true %}2026-01-01T10:00:00Z{% endif %}"',
])
def test_dates_and_rendered_values_pass(literal: str) -> None:
    assert check_literals(parse_flow(_subflow(literal))) == []


def test_a_schedule_date_from_plugin_defaults_points_at_the_task() -> None:
    source = _subflow("x").replace("        scheduleDate: x\n", "") + (
        "pluginDefaults:\n  - type: io.kestra.plugin.core.flow.Subflow\n    values: {scheduleDate: soon}\n")
    [issue] = check_literals(parse_flow(source))
    assert (issue.path, issue.line) == ("tasks[0].tasks[0].scheduleDate", 9) and "got 'soon'" in issue.message


def test_flow_validate_local_refuses_them_and_lenient_warns(tmp_path: Path) -> None:
    path = tmp_path / "flow.yml"
    path.write_text(DUPLICATE_SLA, encoding="utf-8")
    runner = CliRunner()
    strict = runner.invoke(app, ["flow", "validate", "--local", str(path)])
    assert strict.exit_code == 1
    assert f"{path}:8: error: sla 's': duplicate sla id 's' (first at line 6)" in strict.stdout, strict.stdout
    lenient = runner.invoke(app, ["flow", "validate", "--local", "--lenient-expressions", str(path)])
    assert lenient.exit_code == 0, lenient.stdout
    assert f"{path}:8: warning: sla 's': duplicate sla id 's'" in lenient.stdout
    assert f"{path}: ok (dev.demo.lit)" in lenient.stdout
