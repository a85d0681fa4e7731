"""Functions: Pebble core (range, max, min) and Kestra's (fromJson, json, yaml, render,
currentEachOutput, printContext, now, uuid, id, randomInt), plus the service stubs and the
registration hook."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controlplane.errors import ExpressionError
from controlplane.expressions import EvaluationError, current_context, register_function, render_string
from controlplane.expressions import functions as functions_module
from controlplane.expressions.engine import ENV

CTX: dict[str, Any] = {
    "vars": {"first": "1", "second": "{{vars.first}} > 2", "third": "{{vars.second}} > 3", "plain": "text"},
    "inputs": {"body": '{"id": 7, "items": [1, 2]}', "y": "a: 1\nb: [x, y]\n"},
    "flow": {"id": "f"},
}


def r(template: str, **extra: Any) -> Any:
    return render_string(template, {**CTX, **extra}, where="test")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ range(1, 5) }}", [1, 2, 3, 4, 5]),
        ("{{ range(10, 0, -5) }}", [10, 5, 0]),
        ("{{ max(1, 5, 3) }}", 5),
        ("{{ min(4, 2.5, 3) }}", 2.5),
        ("{{ fromJson(inputs.body).id }}", 7),
        ("{{ json(inputs.body).items }}", [1, 2]),
        ("{{ fromJson('[1, \"a\", null, true]') }}", [1, "a", None, True]),
        ("{{ fromJson(null) }}", None),
        ("{{ json(inputs.body).id is not null }}", True),
        ("{{ yaml(inputs.y) }}", {"a": 1, "b": ["x", "y"]}),
        ("{{ render(vars.third) }}", "1 > 2 > 3"),
        ("{{ render(vars.third, false) }}", "{{vars.first}} > 2 > 3"),
        ("{{ renderOnce(vars.third) }}", "{{vars.first}} > 2 > 3"),
        ("{{ render(vars.plain) }}", "text"),
        ("{{ render('{{ 1 + 1 }}') }}", "2"),
        ("{{ render(null) }}", None),
        ("{{ printContext().flow.id }}", "f"),
        ("{{ fetchContext().vars.plain }}", "text"),
    ],
)
def test_functions(template: str, expected: Any) -> None:
    assert r(template) == expected


def test_render_function_uses_the_render_variables_not_local_sets() -> None:
    ctx = {"vars": {"t": "{{ flow.id }}"}, "flow": {"id": "f"}}
    assert render_string("{% set flow = 'local' %}{{ render(vars.t) }}", ctx) == "f"


def test_render_errors_name_the_inner_template() -> None:
    with pytest.raises(ExpressionError, match="Unable to find `nope`"):
        render_string("{{ render(vars.t) }}", {"vars": {"t": "{{ nope }}"}})


def test_now_uses_java_patterns_and_time_zones() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", r("{{ now() }}"))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r("{{ now('yyyy-MM-dd') }}"))
    assert re.fullmatch(r"\d{2}:\d{2}\+\d{2}:\d{2}", r("{{ now(format='HH:mmXXX', timeZone='Asia/Kolkata') }}"))
    assert r("{{ now(timeZone='Asia/Kolkata') }}").endswith("+05:30")


def test_random_and_ids() -> None:
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", r("{{ uuid() }}"))
    assert re.fullmatch(r"[0-9A-Za-z]{22}", r("{{ id() }}"))
    assert r("{{ id() }}") != r("{{ id() }}")
    values = {r("{{ randomInt(1, 3) }}") for _ in range(50)}
    assert values <= {1, 2} and values
    assert r("{{ randomInt(4, 4) }}") == 4


def test_current_each_output_walks_parents_outermost_first() -> None:
    outputs = {"s1": {"a a": {"value": "deep"}}, "s2": {"a a": {"value": "other"}}}
    ctx = {
        "outputs": {"t": outputs},
        "parents": [{"taskrun": {"value": "s1"}}],  # closest parent first, as Kestra's parents
        "taskrun": {"value": "a a"},
    }
    assert render_string("{{ currentEachOutput(outputs.t).value }}", ctx) == "deep"
    two_levels = {
        "outputs": {"t": {"outer": {"inner": {"leaf": {"value": 1}}}}},
        "parents": [{"taskrun": {"value": "inner"}}, {"taskrun": {"value": "outer"}}],
        "taskrun": {"value": "leaf"},
    }
    assert render_string("{{ currentEachOutput(outputs.t).value }}", two_levels) == 1
    assert render_string("{{ (currentEachOutput(outputs.t).data.value ?? 'null') ~ '-' ~ taskrun.value }}", ctx) == "null-a a"


def test_current_each_output_needs_a_map_and_a_task_run() -> None:
    with pytest.raises(ExpressionError, match="with type map"):
        render_string("{{ currentEachOutput('x') }}", {})
    with pytest.raises(ExpressionError, match="needs a task run"):
        render_string("{{ currentEachOutput({}) }}", {})


@pytest.mark.parametrize("name", ["fileURI", "fileSize", "encrypt", "decrypt", "fromIon"])
def test_service_functions_say_not_available_yet(name: str) -> None:
    with pytest.raises(ExpressionError, match=rf"The '{name}\(\)' function is not available yet"):
        r(f"{{{{ {name}('x') }}}}")


def test_errorlogs_in_a_for_loop_fails_clearly() -> None:
    template = "{%- for log in errorLogs() -%}- task: {{ log.taskId }}{%- endfor -%}"
    with pytest.raises(ExpressionError, match="errorLogs"):
        r(template)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ fromJson('{bad') }}", "Invalid json"),
        ("{{ fromJson(1) }}", "with type string"),
        ("{{ yaml('a: [') }}", "Invalid yaml"),
        ("{{ randomInt(3, 1) }}", "upper is less than lower"),
        ("{{ range(1, 3, 0) }}", "must be different than 0"),
        ("{{ range('ab', 'c') }}", "Number or String with a length of 1"),
        ("{{ max('a', 1) }}", "invalid operands"),
        ("{{ render(vars.plain, 'yes') }}", "with type boolean"),
        ("{{ now(timeZone='Mars/Base') }}", "Unknown time-zone ID"),
        ("{{ now(locale='fr_FR') }}", "not supported"),
    ],
)
def test_function_errors(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        r(template)


def test_register_function_with_context() -> None:
    saved = functions_module.FUNCTIONS["secret"], ENV.globals["__f_secret"]

    def secret(context: Any, key: str) -> str:
        if key != "KEY":
            raise EvaluationError(f"secret '{key}' not found")
        return f"s3cr3t-for-{context['flow']['id']}"

    try:
        register_function("secret", secret, needs_context=True)
        assert r("{{ secret('KEY') }}") == "s3cr3t-for-f"
        with pytest.raises(ExpressionError, match="secret 'NOPE' not found"):
            r("{{ secret('NOPE') }}")
    finally:
        functions_module.FUNCTIONS["secret"], ENV.globals["__f_secret"] = saved
        from controlplane.expressions.engine import _compile

        _compile.cache_clear()
    with pytest.raises(ExpressionError, match="Cannot find secret for key 'KEY'"):
        r("{{ secret('KEY') }}")  # the built-in function is back


def test_register_function_rejects_bad_names() -> None:
    with pytest.raises(ValueError):
        register_function("__hidden", lambda: 1)
    with pytest.raises(ValueError):
        register_function("not a name", lambda: 1)


def test_current_context_outside_a_render_is_empty() -> None:
    assert current_context() == {}
