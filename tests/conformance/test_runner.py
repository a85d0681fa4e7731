"""The harness's own pure logic: output matchers, result categories, the expected-failures file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.runner import (
    CorpusFlow,
    FlowResult,
    check_outputs,
    failure_category,
    format_expected_failures,
    load_expected_failures,
    summary_line,
)
from worker_sdk.types import Execution, TaskRun


def _flow(outputs: dict[str, object], file: str = "f.yaml") -> CorpusFlow:
    return CorpusFlow(file, "f", "ns", None, "SUCCESS", 1, outputs)


def _execution() -> Execution:
    runs = [
        TaskRun(id="1", execution_id="e", task_id="each"),
        TaskRun(id="2", execution_id="e", task_id="seq", parent_task_run_id="1", value="a"),
        TaskRun(
            id="3",
            execution_id="e",
            task_id="ret",
            parent_task_run_id="2",
            value="b",
            outputs={"value": "ab"},
        ),
        TaskRun(id="4", execution_id="e", task_id="ret", outputs={"value": "top", "n": 3}),
        TaskRun(id="5", execution_id="e", task_id="vals", outputs={"values": {"count": "4"}}),
    ]
    return Execution(id="e", namespace="ns", flow_id="f", task_runs=runs, outputs={"out": [1, 2]})


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ret.value", "ab"),  # first task run of the task
        ("ret[a,b].value", "ab"),
        ("ret[a][b].value", "ab"),
        ("ret.n", {"matches": "x"}),  # matchers only match strings
        ("taskRunList[1].value", "a"),
        ("taskRunList[2].outputs.value", {"startsWith": "a"}),
        ("execution.outputs.out", [1, 2]),
        ("<last taskrun>.values.count", "4"),
        ("vals.values.count", {"contains": "4"}),
    ],
)
def test_check_outputs_resolves_every_key_form(key: str, expected: object) -> None:
    checked, mismatches = check_outputs(_flow({key: expected}), _execution())
    assert checked == 1
    assert bool(mismatches) == (key == "ret.n"), mismatches


def test_check_outputs_equality_is_typed() -> None:
    _, mismatches = check_outputs(_flow({"ret.n": "3", "taskRunList[9].value": "x"}), _execution())
    assert [m.split(":")[0] for m in mismatches] == ["ret.n", "taskRunList[9].value"]
    assert "only 5 task runs" in mismatches[1]


def test_failure_categories() -> None:
    def category(reason: str) -> str:
        return failure_category(FlowResult("f", "SUCCESS/1", reason=reason))

    assert category("expected SUCCESS got FAILED") == "wrong final state"
    assert category("expected task runs 3 got 1") == "wrong task-run count"
    assert category("expected SUCCESS got FAILED; expected task runs 3 got 1") == (
        "wrong final state and task-run count"
    )
    assert category("task type not supported yet: x") == "task type not supported yet"
    assert failure_category(FlowResult("f", "SUCCESS/1", passed=True)) == ""


def test_expected_failures_round_trip(tmp_path: Path) -> None:
    results = [
        FlowResult("a.yaml", "SUCCESS/1", reason="expected SUCCESS got FAILED", detail="t: boom"),
        FlowResult("b.yaml", "SUCCESS/1", passed=True, output_mismatches=["x.value: expected 1, got 2"]),
        FlowResult("c.yaml", "SUCCESS/1", passed=True),
    ]
    path = tmp_path / "expected.txt"
    path.write_text(format_expected_failures(results), encoding="utf-8")
    assert load_expected_failures(path) == {
        "a.yaml": "expected SUCCESS got FAILED (t: boom)",
        "outputs:b.yaml": "expected outputs differ: x.value",
    }
    assert summary_line(results) == "conformance: 2 passed, 1 failed (of 3 run-kind flows)"
    path.write_text("a.yaml  one\na.yaml  two\n", encoding="utf-8")
    with pytest.raises(ValueError, match="listed twice"):
        load_expected_failures(path)
