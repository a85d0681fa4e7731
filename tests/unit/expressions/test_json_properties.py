"""Property tests: JSON values survive ``toJson``/``json`` then ``fromJson``/``json()``, and
printing; strings are data, whatever they contain."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.expressions import render_string

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text() | st.floats(
    allow_nan=False, allow_infinity=False
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@SETTINGS
@given(json_values)
def test_to_json_then_from_json_round_trips(value: Any) -> None:
    ctx = {"v": value}
    assert _same(render_string("{{ fromJson(v | toJson) }}", ctx), value)
    assert _same(render_string("{{ json(v | json) }}", ctx), value)


@SETTINGS
@given(json_values)
def test_to_json_is_compact_standard_json(value: Any) -> None:
    text = render_string("{{ v | toJson }}", {"v": value})
    assert isinstance(text, str)
    assert _same(json.loads(text), value)
    if isinstance(value, dict | list):
        assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@SETTINGS
@given(json_values)
def test_from_json_of_json_text_gives_the_value(value: Any) -> None:
    text = json.dumps(value)
    assert _same(render_string("{{ fromJson(t) }}", {"t": text}), value)


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4) | st.lists(json_values, max_size=4))
def test_printing_a_map_or_list_in_text_is_its_json(value: Any) -> None:
    printed = render_string("<{{ v }}>", {"v": value})
    assert _same(json.loads(printed[1:-1]), value)


@SETTINGS
@given(st.text())
def test_any_string_value_is_data(text: str) -> None:
    ctx = {"inputs": {"x": text}}
    assert render_string("{{ inputs.x }}", ctx) == text
    assert render_string("[{{ inputs.x }}]", ctx) == f"[{text}]"
    assert render_string("{{ inputs.x | toJson }}", ctx) == json.dumps(text, ensure_ascii=False)
