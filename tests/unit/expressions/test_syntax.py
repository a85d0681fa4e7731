"""Pebble syntax on the Jinja engine: operators, precedence, tags, typed results, errors.

Expected values are Pebble's documented behaviour (pebbletemplates.io, kestra.io/docs
expressions) or Kestra's source (``NullCoalescingExpression``, ``OperatorUtils``…)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.errors import ExpressionError
from controlplane.expressions import render, render_string

CTX: dict[str, Any] = {
    "inputs": {"a": 1, "s": "x", "m": {"k": "v", "n": None}, "list": [1, 2, 3], "from-parent": "p", "failed": None},
    "outputs": {"t-1": {"value": "one"}, "ret": {"value": 3}, "nulled": {"value": None}},
    "vars": {"first": "1", "second": "{{vars.first}} > 2", "third": "{{vars.second}} > 3"},
    "flow": {"id": "f", "namespace": "io.k"},
    "taskrun": {"attemptsCount": 1, "value": "value 2"},
}


def r(template: str, **extra: Any) -> Any:
    return render_string(template, {**CTX, **extra}, where="test")


# --- typed results and printing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.a }}", 1),
        ("  {{ inputs.a }}\n", 1),
        ("{{ inputs.list }}", [1, 2, 3]),
        ("{{ inputs.m }}", {"k": "v", "n": None}),
        ("{{ inputs.failed }}", None),
        ("{{ true }}", True),
        ("{{ 1.5 }}", 1.5),
        ("{{ 10L }}", 10),
    ],
)
def test_single_expression_keeps_type(template: str, expected: Any) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a{{ inputs.a }}", "a1"),
        ("{{ true }} {{ false }}", "true false"),
        ("[{{ inputs.failed }}]", "[]"),
        ("{{ inputs.m }}!", '{"k":"v","n":null}!'),
        ("{{ inputs.list }}!", "[1,2,3]!"),
        ("{{ 1.0 }} {{ 100000000000000000000.0 }}", "1.0 1.0E20"),
        ("{{ 0.1 + 0.2 }}!", "0.30000000000000004!"),
        ("no expression", "no expression"),
    ],
)
def test_printing_inside_text(template: str, expected: str) -> None:
    assert r(template) == expected


def test_text_without_expressions_is_unchanged() -> None:
    assert render_string("plain { text } with % and #", {}) == "plain { text } with % and #"


def test_render_walks_lists_and_maps_and_keys() -> None:
    value = {"{{ flow.id }}": ["{{ inputs.a }}", "x{{ inputs.s }}", 3, None], "n": {"deep": "{{ inputs.list }}"}}
    assert render(value, CTX) == {"f": [1, "xx", 3, None], "n": {"deep": [1, 2, 3]}}


def test_rendered_map_keys_are_text() -> None:
    assert render({"{{ true }}": 1, "{{ inputs.a }}": 2, "k": 3}, CTX) == {"true": 1, "1": 2, "k": 3}


def test_input_values_are_data_never_rendered_again() -> None:
    ctx = {"inputs": {"x": "{{ 7*7 }}", "y": "{% for i in range(1, 3) %}{{ i }}{% endfor %}"}}
    assert render_string("{{ inputs.x }}", ctx) == "{{ 7*7 }}"
    assert render_string("value: {{ inputs.x }}", ctx) == "value: {{ 7*7 }}"
    assert render_string("{{ inputs.y }}", ctx) == "{% for i in range(1, 3) %}{{ i }}{% endfor %}"
    assert render({"a": ["{{ inputs.x }}"]}, ctx) == {"a": ["{{ 7*7 }}"]}
    # only render() renders a string on purpose
    assert render_string("{{ render(inputs.x) }}", ctx) == "49"


# --- null coalescing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ outputs.not_existing ?? '' }}", ""),
        ("{{ outputs.not_existing.value ?? 'fallback' }}", "fallback"),
        ("{{ outputs.nulled.value ?? 'was null' }}", "was null"),
        ("{{ inputs.a ?? 2 }}", 1),
        ("{{ missing ?? other ?? 'third' }}", "third"),
        ("{{ missing ?? inputs.s ?? 'third' }}", "x"),
        ("{{ (inputs.failed ?? 'NONE') == 'FIRST' ? ko : '0' }}", "0"),
        ("{{ outputs.default.value ?? outputs['t-1'].value }}", "one"),
        ("{{ inputs.list[10] ?? 'none' }}", "none"),
        # ??? falls back only on undefined, keeps null
        ("{{ outputs.nulled.value ??? 'x' }}", None),
        ("{{ outputs.none.value ??? 'x' }}", "x"),
    ],
)
def test_null_coalescing(template: str, expected: Any) -> None:
    assert r(template) == expected


def test_null_coalescing_right_side_must_resolve() -> None:
    with pytest.raises(ExpressionError, match="Unable to find `other`"):
        r("{{ missing ?? other }}")


def test_null_coalescing_does_not_evaluate_the_fallback_when_not_needed() -> None:
    assert r("{{ inputs.a ?? fromJson('not json') }}") == 1


def test_null_coalescing_binds_tighter_than_comparison_and_filter() -> None:
    # Pebble precedences: ?? 120, | 100, == 30
    assert r("{{ missing ?? 'ab' | upper }}") == "AB"
    assert r("{{ missing ?? 1 == 1 }}") is True


# --- ternary, conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ taskrun.attemptsCount == 1 ? 'ok' : ko }}", "ok"),
        ("{{taskrun.attemptsCount == 3 ? 'ok' : 'ko'}}", "ko"),
        ("{{ inputs.failed == 'true' ? ko: taskrun.value }}", "value 2"),
        ("{{ inputs.a == 1 ? inputs.a == 2 ? 'a' : 'b' : 'c' }}", "b"),
        ("{{ (outputs.state.data.value ?? 0) == 0 ? 'create' : ( outputs.state.data.value == 1 ? 'update' : 'delete') }}", "create"),
        ("{{ 'a ? b : c' }}", "a ? b : c"),
        ("{{ inputs.s == '?' ? ':' : '?:' }}", "?:"),
    ],
)
def test_ternary(template: str, expected: Any) -> None:
    assert r(template) == expected


def test_ternary_does_not_evaluate_the_other_branch() -> None:
    assert r("{{ true ? 1 : undefinedVariable }}") == 1
    with pytest.raises(ExpressionError, match="Unable to find `ko`"):
        r("{{ false ? 1 : ko }}")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ true and false }}", False),
        ("{{ true or undefinedVariable }}", True),
        ("{{ false and undefinedVariable }}", False),
        ("{{ not false }}", True),
        ("{{ not inputs.a == 1 }}", False),  # Pebble: (not 1) == 1 -> false == 1 -> false
        ("{{ inputs.a == 1 and inputs.s == 'x' }}", True),
        ("{{ 1 == 1 or 1 == 2 and false }}", True),  # and binds tighter than or
    ],
)
def test_logic(template: str, expected: Any) -> None:
    assert r(template) == expected


# --- tests (is ...) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.a is defined }}", True),
        ("{{ inputs.crash is defined }}", False),
        ("{{ inputs.crash.deeper is defined }}", False),
        ("{{ inputs.failed is defined }}", False),  # Pebble: defined is "not null"
        ("{{ inputs.crash is not defined }}", True),
        ("{{ inputs.failed is null }}", True),
        ("{{ inputs.a is not null }}", True),
        ("{{ '' is empty }}", True),
        ("{{ '  ' is empty }}", True),
        ("{{ [] is empty }}", True),
        ("{{ {} is empty }}", True),
        ("{{ inputs.failed is empty }}", True),
        ("{{ 'a' is empty }}", False),
        ("{{ 2 is even }}", True),
        ("{{ 3 is odd }}", True),
        ("{{ inputs.list is iterable }}", True),
        ("{{ inputs.m is iterable }}", False),
        ("{{ inputs.m is map }}", True),
        ("{{ '{\"key\": 1}' is json }}", True),
        ("{{ '[1, 2]' is json }}", True),
        ("{{ 'value 1' is json }}", False),
        ("{{ inputs.m is json }}", True),
        ("{{ taskrun.value is not json }}", True),
    ],
)
def test_is_tests(template: str, expected: Any) -> None:
    assert r(template) == expected


def test_is_null_on_undefined_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="Unable to find `nope`"):
        r("{{ inputs.nope is null }}")


def test_unknown_test() -> None:
    with pytest.raises(ExpressionError, match=r"Test \[prime\] does not exist"):
        r("{{ 3 is prime }}")


# --- comparison, equality ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 1 == 1.0 }}", True),
        ("{{ '1' == 1 }}", False),
        ("{{ true == 1 }}", False),
        ("{{ taskrun.value equals 'value 2' }}", True),
        ("{{ inputs.s != 'CANCEL' }}", True),
        ("{{ null == null }}", True),
        ("{{ inputs.failed == 'x' }}", False),
        ("{{ 2 > 1 }}", True),
        ("{{ 2 >= 2.0 }}", True),
        ("{{ 1 < inputs.failed }}", False),  # null on either side is false
        ("{{ inputs.list == [1, 2, 3] }}", True),
        ("{{ inputs.list contains 2 }}", True),
        ("{{ inputs.list contains [1, 3] }}", True),
        ("{{ inputs.m contains 'k' }}", True),
        ("{{ 'hello' contains 'ell' }}", True),
        ("{{ 2 in inputs.list }}", True),
        ("{{ 5 not in inputs.list }}", True),
    ],
)
def test_comparisons(template: str, expected: Any) -> None:
    assert r(template) == expected


def test_ordering_needs_numbers() -> None:
    with pytest.raises(ExpressionError, match="invalid operands for mathematical comparison"):
        r("{{ 'b' > 'a' }}")


# --- arithmetic and concatenation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ outputs.ret.value + 1 }}", 4),
        ("{{ 7 / 2 }}", 3),
        ("{{ -7 / 2 }}", -3),
        ("{{ 7 % 3 }}", 1),
        ("{{ -7 % 3 }}", -1),
        ("{{ 7.0 / 2 }}", 3.5),
        ("{{ 2 * 3 + 4 }}", 10),
        ("{{ 2 + 3 * 4 }}", 14),
        ("{{ (2 + 3) * 4 }}", 20),
        ("{{ 10 - 2 - 3 }}", 5),
        ("{{ -inputs.a }}", -1),
        ("{{ 'a' + 1 }}", "a1"),
        ("{{ 1 + 'a' }}", "1a"),
        ("{{ 'a' + inputs.failed }}", "anull"),
        ("{{ [1] + [2, 3] }}", [1, 2, 3]),
        ("{{ [1] + 2 }}", [1, 2]),
        ("{{ [1, 2, 3] - 2 }}", [1, 3]),
        ("{{ 9223372036854775807 + 1 }}", -9223372036854775808),  # Java long overflow
        ("{{ 1.0 / 0 }}", float("inf")),
        ("{{ 'a' ~ 1 ~ true ~ null }}", "a1true"),
        ("{{ flow.namespace ~ '.' ~ flow.id }}", "io.k.f"),
        ("{{ 'a' ~ 'b' | upper }}", "AB"),  # Pebble: ~ (110) binds tighter than | (100)
        ("{{ 1 + 2 | abs }}", 3),
        ("{{ \"hello #{inputs.s}, #{1 + 1}!\" }}", "hello x, 2!"),
        ("{{ 'it\\'s' }}", "it's"),
        ("{{ 'a\\nb' }}", "a\\nb"),  # Pebble only unescapes quotes and backslashes
    ],
)
def test_arithmetic_and_concat(template: str, expected: Any) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 1 / 0 }}", "/ by zero"),
        ("{{ 'a' * 3 }}", "invalid operands for mathematical operation"),
        ("{{ 'a' - 'b' }}", "invalid operands for mathematical operation"),
        ("{{ inputs.m * 2 }}", "invalid operands for mathematical operation"),
    ],
)
def test_arithmetic_errors(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        r(template)


# --- ranges, subscripts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ range(1, 3) }}", [1, 2, 3]),
        ("{{ range(0, 10, 5) }}", [0, 5, 10]),
        ("{{ range(3, 1, -1) }}", [3, 2, 1]),
        ("{{ range(5, 1) }}", []),
        ("{{ 1..3 }}", [1, 2, 3]),
        ("{{ 'a'..'c' }}", ["a", "b", "c"]),
        ("{{ outputs['t-1'].value }}", "one"),
        ("{{ outputs['t-1']['value'] }}", "one"),
        ("{{ inputs['from-parent'] }}", "p"),
        ("{{ inputs.list[0] }}", 1),
        ("{{ inputs.list.1 }}", 2),
        ("{{ [10, 20][1] }}", 20),
        ("{{ {'a': {'b': 1}}.a.b }}", 1),
        ("{{ {'a b': 2}['a b'] }}", 2),
        ("{{ outputs[taskrun.value] ?? 'no' }}", "no"),
    ],
)
def test_ranges_and_subscripts(template: str, expected: Any) -> None:
    assert r(template) == expected


def test_map_keys_shadow_no_methods() -> None:
    ctx = {"outputs": {"t": {"values": {"count": "6"}, "keys": 1, "items": 2}}}
    assert render_string("{{ outputs.t.values.count == '6' }}", ctx) is True
    assert render_string("{{ outputs.t.keys }}", ctx) == 1
    with pytest.raises(ExpressionError, match="Unable to find `get`"):
        render_string("{{ outputs.t.get('keys') }}", ctx)


# --- tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% if inputs.a == 1 %}one{% elseif inputs.a == 2 %}two{% else %}other{% endif %}", "one"),
        ("{% if inputs.a == 2 %}one{% elseif inputs.a == 1 %}two{% else %}other{% endif %}", "two"),
        ("{% if inputs.failed %}yes{% else %}no{% endif %}", "no"),
        ("{% if 'false' %}yes{% else %}no{% endif %}", "no"),
        ("{% for i in inputs.list %}{{ i }}{% endfor %}", "123"),
        ("{% for i in inputs.list %}{{ loop.index }}/{{ loop.length }}{% if not loop.last %},{% endif %}{% endfor %}", "0/3,1/3,2/3"),
        ("{% for i in inputs.list %}{{ loop.revindex }}{{ loop.first }}{% endfor %}", "2true1false0false"),
        ("{% for e in {'a': 1, 'b': 2} %}{{ e.key }}={{ e.value }};{% endfor %}", "a=1;b=2;"),
        ("{% for i in [] %}x{% else %}empty{% endfor %}", "empty"),
        ("{% for i in inputs.failed %}x{% else %}none{% endfor %}", "none"),
        ("{% for entry in fromJson('{\"NEW\": 1}') %}{{ entry.key }}{% endfor %}", "NEW"),
        ("{% set c = 0 %}{% for i in [1, 2, 3] %}{% set c = c + i %}{% endfor %}{{ c }}", "6"),
        ("{% set x = 1 %}{% for x in [5, 6] %}{{ x }}{% endfor %}{{ x }}", "561"),
        ("{% macro greet(name, punct='!') %}hi {{ name }}{{ punct }}{% endmacro %}{{ greet('bob') }} {{ greet('al', '?') }}", "hi bob! hi al?"),
        ("{% filter upper %}abc {{ inputs.s }}{% endfilter %}", "ABC X"),
        ("{% verbatim %}{{ not rendered }}{% endverbatim %}", "{{ not rendered }}"),
        ("a{# comment #}b", "ab"),
        ("{% autoescape false %}<b>{{ '<i>' }}</b>{% endautoescape %}", "<b><i></b>"),
    ],
)
def test_tags(template: str, expected: str) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a  {{- inputs.a -}}  b", "a1b"),
        ("x\n  {%- if true -%}\n  y\n  {%- endif -%}\n  z", "xyz"),
        ("{%- for log in inputs.list -%}\n- {{ log }}\n{%- endfor -%}\n", "- 1- 2- 3"),
        ("a {#- c -#} b", "ab"),
    ],
)
def test_whitespace_control(template: str, expected: str) -> None:
    assert r(template) == expected


def test_unknown_and_unsupported_tags() -> None:
    with pytest.raises(ExpressionError, match="Unexpected tag name"):
        r("{% raw %}x{% endraw %}")
    with pytest.raises(ExpressionError, match="not supported"):
        r("{% include 'other' %}")
    with pytest.raises(ExpressionError, match="Unclosed tag"):
        r("{% if true %}x")


# --- errors -------------------------------------------------------------------------------------


def test_undefined_variable_names_expression_and_place() -> None:
    with pytest.raises(ExpressionError) as caught:
        render_string("hello {{ outputs.nothing.value }}", CTX, where="task 'log' property 'message'")
    message = str(caught.value)
    assert "Unable to find `nothing`" in message
    assert "hello {{ outputs.nothing.value }}" in message
    assert "task 'log' property 'message'" in message


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ missingVar }}", "Unable to find `missingVar`"),
        ("{{ inputs.list[7] }}", "Index 7 is out of bounds"),
        ("{{ inputs.s.length }}", "Unable to find `length`"),
        ("{{ unknownFunction(1) }}", r"Function or Macro \[unknownFunction\] does not exist"),
        ("{{ 1 | unknownFilter }}", r"Filter \[unknownFilter\] does not exist"),
        ("{{ 1 + }}", "Unexpected"),
        ("{{ 'unclosed }}", "Unexpected character"),
        ("{{ (1 }}", "Unclosed"),
        ("{{ a ? b }}", "expected ':'"),
        ("{{ parents[0].taskrun.value == 'C' and {% for e in x %}{{ e.key }}{% endfor %}== 'N'}}", "Unexpected"),
        ("{{ 2.5 if true else 0.3 }}", "Unexpected token"),
    ],
)
def test_errors(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        r(template)


def test_error_messages_shorten_long_templates() -> None:
    template = "x" * 5000 + "{{ missing }}"
    with pytest.raises(ExpressionError) as caught:
        r(template)
    assert len(str(caught.value)) < 600
