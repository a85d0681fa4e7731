"""Limits that keep a small hostile flow from costing the control plane seconds of CPU."""

from __future__ import annotations

import pytest

from controlplane.errors import FlowValidationError
from controlplane.flows import parse_flow
from controlplane.flows.parser import MAX_ISSUES, MAX_SOURCE_BYTES, MAX_TASKS


def _alias_bomb(levels: int) -> str:
    lines = ["id: b", "namespace: n", "tasks:", "  - &t0\n    id: l0\n    type: io.kestra.plugin.core.log.Log\n    message: x"]
    for level in range(1, levels + 1):
        kids = "\n".join(f"      - *t{level - 1}" for _ in range(10))
        lines.append(f"  - &t{level}\n    id: l{level}\n    type: io.kestra.plugin.core.flow.Sequential\n    tasks:\n{kids}")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_of_tasks_stops_at_the_issue_limit():
    with pytest.raises(FlowValidationError) as err:
        parse_flow(_alias_bomb(7))  # ~1 KB describing 10 million tasks
    assert len(err.value.issues) == MAX_ISSUES + 1
    assert "more than" in err.value.issues[0].message


def test_too_many_distinct_tasks_are_refused():
    tasks = "".join(f"  - id: t{i}\n    type: io.kestra.plugin.core.log.Log\n    message: x\n" for i in range(MAX_TASKS + 1))
    with pytest.raises(FlowValidationError) as err:
        parse_flow(f"id: big\nnamespace: n\ntasks:\n{tasks}")
    assert any(f"more than {MAX_TASKS} tasks" in i.message for i in err.value.issues)


def test_a_source_over_the_size_limit_is_refused_before_parsing():
    header = "id: big\nnamespace: a.b\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: "
    source = header + '"' + "é" * (MAX_SOURCE_BYTES // 2) + '"\n'  # 2 bytes per character in UTF-8
    with pytest.raises(FlowValidationError, match=f"more than the limit of {MAX_SOURCE_BYTES} bytes"):
        parse_flow(source)
    ok = header + '"' + "x" * (MAX_SOURCE_BYTES - len(header) - 3) + '"\n'
    assert parse_flow(ok).id == "big"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_defaults_with_non_finite_numbers_are_refused_at_deploy(constant):
    source = (
        "id: j\nnamespace: a.b\ninputs:\n  - id: j\n    type: JSON\n"
        f"    defaults: '{{\"a\": {constant}}}'\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n"
    )
    with pytest.raises(FlowValidationError, match=f"line 6: inputs\\[0\\].defaults: input 'j': invalid default: "
                       f"it must be valid JSON \\({constant} is not a JSON number\\)"):
        parse_flow(source)
