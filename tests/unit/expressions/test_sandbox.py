"""The sandbox: attribute walks, huge ranges and strings, format-string tricks, endless loops and
recursion all end in a clear ExpressionError, within the time limit, with no code run.

Each test asserts the error (not a timing); pytest-timeout stops a test that would hang."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.errors import ExpressionError
from controlplane.expressions import limits, render_string

pytestmark = pytest.mark.timeout(10)

CTX: dict[str, Any] = {"inputs": {"x": "text", "m": {"k": "v"}, "n": 5}, "outputs": {"t": {"value": [1, 2]}}}


def fails(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        render_string(template, CTX, where="sandbox test")


@pytest.mark.parametrize(
    "template",
    [
        "{{ inputs.__class__ }}",
        "{{ inputs['__class__'] }}",
        "{{ inputs.x.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ inputs.m.items() }}",
        "{{ inputs.m.keys }}",
        "{{ inputs.x.upper() }}",
        "{{ outputs.t.value.append(3) }}",
        "{{ outputs.t.value.__len__() }}",
        "{{ inputs.m.__init__.__globals__ }}",
        "{{ inputs.m.mro }}",
        "{{ inputs.n.real }}",
    ],
)
def test_attribute_walks_find_nothing(template: str) -> None:
    fails(template, "Unable to find")


@pytest.mark.parametrize(
    "template",
    [
        "{{ __builtins__ }}",
        "{{ __import__('os') }}",
        "{{ __k_var('inputs') }}",
        "{{ __lazy_default(1, 2) }}",
        "{{ inputs.m | default(__globals__) }}",
    ],
)
def test_reserved_names_are_refused(template: str) -> None:
    fails(template, "reserved")


@pytest.mark.parametrize(
    "template",
    [
        "{{ self.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ joiner }}",
        "{{ namespace }}",
        "{{ dict(a=1) }}",
        "{{ config }}",
        "{{ request }}",
    ],
)
def test_jinja_globals_do_not_exist(template: str) -> None:
    fails(template, "Unable to find|does not exist")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ '{0.__class__}'.format(inputs) }}", "Unable to find `format`"),
        ("{{ '%s' % inputs }}", "invalid operands"),
        ("{{ '%(a)s' % inputs.m }}", "invalid operands"),
        ("{{ inputs | format('x') }}", "does not exist"),
        ("{{ 'a' * 1000000000 }}", "invalid operands"),
        ("{{ inputs.x * 1000000000 }}", "invalid operands"),
        ("{{ [1] * 1000000000 }}", "invalid operands"),
        ("{{ 10 ** 9 }}", "Unexpected token"),
        ("{{ range(10**9) }}", "Unexpected token"),
        ("{{ range(0, 1000000000) }}", "cannot produce more than 1000000 elements"),
        ("{{ 0..1000000000 }}", "cannot produce more than 1000000 elements"),
        ("{{ range(1, 9223372036854775807) | length }}", "cannot produce more than"),
    ],
)
def test_format_tricks_and_huge_values(template: str, message: str) -> None:
    fails(template, message)


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(1, 100000) %}{% for j in range(1, 100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(1, 1000000) %}{% for j in range(1, 1000000) %}{{ i }}{% endfor %}{% endfor %}",
        "{% for a in range(1, 1000) %}{% for b in range(1, 1000) %}{% for c in range(1, 1000) %}{% endfor %}{% endfor %}{% endfor %}",
    ],
)
def test_long_loops_hit_the_time_limit(template: str) -> None:
    fails(template, "longer than the .* s limit")


def test_doubling_strings_hit_the_size_limit() -> None:
    template = "{% set s = 'aaaaaaaaaa' %}{% for i in range(1, 100) %}{% set s = s ~ s %}{% endfor %}{{ s | length }}"
    fails(template, "characters long, more than the limit")


def test_doubling_lists_hit_the_size_limit() -> None:
    template = "{% set l = [1] %}{% for i in range(1, 100) %}{% set l = l + l %}{% endfor %}{{ l | length }}"
    fails(template, "items, more than the limit")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ ('a\nb') | indent(1000000000) }}", "more than the limit"),
        ("{{ 'xxxxxxxxxx' | replace({'x': 'yyyyyyyyyyyyyyyyyyyy'}) | replace({'y': 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz'}) | replace({'z': 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'}) | replace({'w': 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv'}) | replace({'v': 'uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu'}) }}", "more than the limit"),
        # the size or the time limit, whichever comes first on this machine
        ("{{ range(1, 1000000) | join('xxxxxxxxxxxxxxxxxxxxxxxx') }}", "limit"),
    ],
)
def test_amplifying_filters_are_bounded(template: str, message: str) -> None:
    fails(template, message)


def test_rendered_text_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_STRING_LENGTH", 1000)
    fails("{% for i in range(1, 500) %}{{ i }}{% endfor %}", "rendered text would be")


def test_recursive_macros_end() -> None:
    fails("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursi")


def test_recursive_render_ends() -> None:
    ctx = {"vars": {"loop": "{{ render(vars.loop) }}", "grow": "x{{ vars.grow }}"}}
    with pytest.raises(ExpressionError, match="nested more than"):
        render_string("{{ render(vars.loop) }}", ctx)
    with pytest.raises(ExpressionError, match="still changes"):
        render_string("{{ render(vars.grow) }}", ctx)


def test_deep_nesting_is_refused() -> None:
    fails("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", "nested more than")
    fails("{{ " + "[" * 200 + "]" * 200 + " }}", "nested more than")
    fails("{{ " + "not " * 200 + "true }}", "nested more than")


def test_long_chains_work_or_fail_cleanly() -> None:
    assert render_string("{{ " + " ~ ".join(["'a'"] * 500) + " }}", {}) == "a" * 500
    assert render_string("{{ " + " ?? ".join(["x"] * 100) + " ?? 1 }}", {}) == 1
    with pytest.raises(ExpressionError):
        render_string("{{ " + " + ".join(["1"] * 5000) + " }}", {})


def test_integers_stay_java_longs() -> None:
    template = "{% set n = 3 %}{% for i in range(1, 200) %}{% set n = n * n %}{% endfor %}{{ n }}"
    value = render_string(template, CTX)
    assert -(2**63) <= int(value) < 2**63


@pytest.mark.parametrize(
    "template",
    [
        "{{ [1] | jq('[range(1e12)]') }}",
        "{{ [1] | jq('def f: f; f') }}",
        "{{ 'x' | toJson | jq('. * 1000000000') }}",
    ],
)
def test_jq_cannot_loop_forever_or_blow_up(template: str) -> None:
    fails(template, "limit|jq program")


def test_jq_cannot_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KESTREL_TEST_SECRET", "do-not-leak")
    assert "do-not-leak" not in render_string("{{ [1] | jq('$ENV') | toJson }}", CTX)
    assert render_string("{{ [1] | jq('env.KESTREL_TEST_SECRET') }}", CTX) == [None]


def test_jq_simple_paths_run_in_process() -> None:
    from controlplane.expressions import jq

    assert jq.is_simple(".key")
    assert jq.is_simple('.a.b[0]["c"][] | .d?')
    assert not jq.is_simple("[.[], .[]]")
    assert not jq.is_simple("$ENV")
    assert not jq.is_simple('"\\(env)"')


def test_time_limit_applies_per_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "RENDER_TIMEOUT_SECONDS", 0.05)
    fails("{% for i in range(1, 1000000) %}{{ i }}{% endfor %}", "longer than the 0.05 s limit")
    # a normal render afterwards is unaffected (the deadline is per render)
    assert render_string("{{ inputs.n }}", CTX) == 5


def test_no_python_code_runs_from_values() -> None:
    ctx = {"inputs": {"x": "{{ ''.__class__.__mro__[1].__subclasses__() }}", "y": "__import__('os').system('false')"}}
    assert render_string("{{ inputs.x }} {{ inputs.y }}", ctx) == f"{ctx['inputs']['x']} {ctx['inputs']['y']}"
    with pytest.raises(ExpressionError, match="Unable to find `__class__`"):
        render_string("{{ render(inputs.x) }}", ctx)


# --- work that one library call would do without checking the deadline is bounded beforehand --


def test_templates_with_too_many_tokens_are_refused_before_compiling() -> None:
    many = "".join(f"line {i} {{{{ inputs.x ~ {i} }}}}\n" for i in range(3000))
    fails(many, "tokens, more than the limit of 10000")
    fails("{{ " + " ~ ".join(["'a'"] * 6000) + " }}", "tokens, more than the limit")
    # below the limit the same shape renders
    assert render_string("".join(f"{{{{ {i} }}}}" for i in range(500)), {}) == "".join(str(i) for i in range(500))


@pytest.mark.parametrize(
    "template",
    [
        "{{ inputs.s | replace({'(x+x+)+y': 'z'}, regexp=true) }}",
        "{{ inputs.s | split('(x+x+)+y') }}",
    ],
)
def test_backtracking_regular_expressions_stop_at_the_render_limit(template: str) -> None:
    with pytest.raises(ExpressionError, match="catastrophic backtracking"):
        render_string(template, {"inputs": {"s": "x" * 5000}})


def test_regular_expression_filters_still_work() -> None:
    assert render_string("{{ 'abc' | replace({'(b)': '[$1]'}, regexp=true) }}", {}) == "a[b]c"
    assert render_string("{{ 'a1b22c' | split('[0-9]+') }}", {}) == ["a", "b", "c"]


def test_date_parsing_is_bounded() -> None:
    fails("{{ '" + "2" * 300 + "' | date(existingFormat='yyyy') }}", "at most 256 characters")
    assert render_string("{{ '2024-02-03' | date('dd.MM.yyyy', existingFormat='yyyy-MM-dd') }}", {}) == "03.02.2024"


def test_yaml_of_a_large_document_stops_at_the_render_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "RENDER_TIMEOUT_SECONDS", 0.05)
    text = "".join(f"k{i}: [a, b, {{x: {i}}}]\n" for i in range(20000))
    with pytest.raises(ExpressionError, match="longer than the 0.05 s limit"):
        render_string("{{ yaml(t) }}", {"t": text})
    assert render_string("{{ yaml('a: [1, 2]') }}", {}) == {"a": [1, 2]}


def test_long_jq_programs_never_run_in_process() -> None:
    from controlplane.expressions import jq

    assert not jq.is_simple("." + " " * 131072 + "a")  # answers at once (was quadratic)
    fails("{{ [1] | jq(p) }}".replace("p", "'" + "." * (limits.MAX_JQ_PROGRAM_LENGTH + 1) + "'"), "jq program is")
