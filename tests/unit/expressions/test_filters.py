"""Every filter, against Pebble's and Kestra's documented behaviour (values written down from
pebbletemplates.io, kestra.io/docs/expressions/filters and the filters' Java sources)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.errors import ExpressionError
from controlplane.expressions import render_string

CTX: dict[str, Any] = {
    "names": ["Alex", "Joe", "Bob"],
    "users": [{"name": "a"}, {"name": "b"}],
    "m": {"this": "foo", "that": "bar"},
    "nothing": None,
    "json_text": '{"key": "my-complex", "value": {"sub": 1, "bool": true}}',
}


def r(template: str, **extra: Any) -> Any:
    return render_string(template, {**CTX, **extra}, where="test")


STRING_CASES = [
    ('{{ "LOUD TEXT" | lower }}', "loud text"),
    ('{{ "quiet text" | upper }}', "QUIET TEXT"),
    ('{{ "article title" | title }}', "Article Title"),
    ('{{ "aRTICLE tITLE" | title }}', "ARTICLE TITLE"),  # Pebble keeps the other letters
    ('{{ "hello world" | capitalize }}', "Hello world"),
    ('{{ "hELLO" | capitalize }}', "HELLO"),
    ('{{ "  padded  " | trim }}', "padded"),
    ('{{ "this is a long sentence." | abbreviate(7) }}', "this..."),
    ('{{ "short" | abbreviate(10) }}', "short"),
    ('{{ "I like %this% and %that%." | replace({"%this%": "foo", "%that%": "bar"}) }}', "I like foo and bar."),
    ('{{ "a1b22" | replace({"[0-9]+": "#"}, regexp=true) }}', "a#b#"),
    ('{{ "2024-01-05" | replace({"(\\\\d+)-(\\\\d+)-(\\\\d+)": "$3/$2/$1"}, regexp=true) }}', "05/01/2024"),
    ('{{ ["a-b", "c"] | replace({"-": "+"}) }}', ["a+b", "c"]),
    ('{{ {"k": "a-b", "n": 1} | replace({"-": "+"}) }}', {"k": "a+b", "n": "1"}),
    ('{{ "a.b.c" | substringBefore(".") }}', "a"),
    ('{{ "a.b.c" | substringAfter(".") }}', "b.c"),
    ('{{ "a.b.c" | substringBeforeLast(".") }}', "a.b"),
    ('{{ "a.b.c" | substringAfterLast(".") }}', "c"),
    ('{{ "abc" | substringBefore("x") }}', "abc"),
    ('{{ "abc" | substringAfter("x") }}', ""),
    ('{{ "abc" | substringBeforeLast("x") }}', "abc"),
    ('{{ "abc" | substringAfterLast("x") }}', ""),
    ('{{ "Hello World! Kestra_Flow" | slugify }}', "hello-world-kestra-flow"),
    ('{{ "  Crème  Brûlée  " | slugify }}', "creme-brulee"),
    ('{{ "kestra.io" | startsWith("kestra") }}', True),
    ('{{ "kestra.io" | endsWith(".io") }}', True),
    ('{{ "kestra.io" | startsWith(value="io") }}', False),
    ('{{ "it\'s" | escapeChar("single") }}', "it\\'s"),
    ('{{ \'say "hi"\' | escapeChar("double") }}', 'say \\"hi\\"'),
    ('{{ "it\'s" | escapeChar("shell") }}', "it'\\''s"),
    ('{{ "a b&c=d/é~*" | urlencode }}', "a+b%26c%3Dd%2F%C3%A9%7E*"),
    ('{{ "a+b%26c%3Dd%2F%C3%A9" | urldecode }}', "a b&c=d/é"),
    ('{{ "test" | base64encode }}', "dGVzdA=="),
    ('{{ "dGVzdA==" | base64decode }}', "test"),
    ('{{ "hello" | sha256 }}', "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
    ('{{ "hello" | sha1 }}', "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
    ('{{ "hello" | md5 }}', "5d41402abc4b2a76b9719d911017c592"),
    (
        '{{ "hello" | sha512 }}',
        "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043",
    ),
    ('{{ "a,b,,c,," | split(",") }}', ["a", "b", "", "c"]),
    ('{{ "a.b.c" | split(".") }}', []),  # Java String.split: the delimiter is a regex, "." matches all
    ('{{ "a.b.c" | split("\\\\.") }}', ["a", "b", "c"]),
    ('{{ "a1b22c" | split("[0-9]+") }}', ["a", "b", "c"]),
    ('{{ "a,b,c" | split(",", 2) }}', ["a", "b,c"]),
    ('{{ "" | split(",") }}', [""]),
    ('{{ "abc" | split("") }}', ["a", "b", "c"]),
    ("{{ 'line1\nline2' | indent(2) }}", "line1\n  line2"),
    ("{{ 'line1\nline2' | nindent(2) }}", "\n  line1\n  line2"),
    ("{{ 'a\nb' | indent(1, '\t') }}", "a\n\tb"),
    ("{{ '' | indent(4) }}", ""),
]


@pytest.mark.parametrize(("template", "expected"), STRING_CASES)
def test_string_filters(template: str, expected: Any) -> None:
    assert r(template) == expected


COLLECTION_CASES = [
    ("{{ names | join(',') }}", "Alex,Joe,Bob"),
    ("{{ names | join }}", "AlexJoeBob"),
    ("{{ [1, null, true] | join('-') }}", "1-null-true"),
    ("{{ users | first }}", {"name": "a"}),
    ("{{ 'Mitch' | first }}", "M"),
    ("{{ ['apple', 'banana', 'cherry'] | last }}", "cherry"),
    ("{{ 'Kestra' | last }}", "a"),
    ("{{ [] | first }}", None),
    ("{{ ['apple', 'banana'] | length }}", 2),
    ("{{ 'Kestra' | length }}", 6),
    ("{{ m | length }}", 2),
    ("{{ nothing | length }}", 0),
    ("{{ m | keys }}", ["this", "that"]),
    ("{{ [0, 1, 3] | keys }}", [0, 1, 2]),
    ("{{ m | values }}", ["foo", "bar"]),
    ("{{ [3, 1, 2] | sort }}", [1, 2, 3]),
    ("{{ [3, 1, 2] | rsort }}", [3, 2, 1]),
    ("{{ [1, 2, 3] | reverse }}", [3, 2, 1]),
    ("{{ [1, 2, 3, 4] | slice(1, 3) }}", [2, 3]),
    ("{{ 'Kestra' | slice(0, 3) }}", "Kes"),
    ("{{ [1, 2, 3, 4] | slice(2) }}", [3, 4]),
    ("{{ [1, 2] | merge([3]) }}", [1, 2, 3]),
    ("{{ {'a': 1, 'b': 2} | merge({'b': 3, 'c': 4}) }}", {"a": 1, "b": 3, "c": 4}),
    ("{{ [1, 2, 3, 4, 5, 6, 7, 8, 9] | chunk(2) }}", [[1, 2], [3, 4], [5, 6], [7, 8], [9]]),
    ("{{ [[1, 2], [3], 4] | flatten }}", [1, 2, 3, 4]),
    ("{{ [1, 2, 1, '1', 2] | distinct }}", [1, 2, "1"]),
    ("{{ -7 | abs }}", 7),
    ("{{ -1.5 | abs }}", 1.5),
    ("{{ nothing | default('x') }}", "x"),
    ("{{ '' | default('x') }}", "x"),
    ("{{ [] | default('x') }}", "x"),
    ("{{ undefinedVar | default('x') }}", "x"),
    ("{{ undefinedVar.deep | default('x') }}", "x"),
    ("{{ 'v' | default('x') }}", "v"),
    ("{{ 0 | default('x') }}", 0),
    ("{{ nothing | upper }}", None),
]


@pytest.mark.parametrize(("template", "expected"), COLLECTION_CASES)
def test_collection_filters(template: str, expected: Any) -> None:
    assert r(template) == expected


NUMBER_CASES = [
    ('{{ "12" | number }}', 12),
    ('{{ "12.3" | number }}', 12.3),
    ('{{ "12.3" | number | className }}', "java.lang.Float"),
    ('{{ "12" | number | className }}', "java.lang.Integer"),
    ('{{ "3000000000" | number | className }}', "java.lang.Long"),
    ('{{ "12" | number("LONG") | className }}', "java.lang.Long"),
    ('{{ "9223372036854775807" | number("BIGDECIMAL") | className }}', "java.math.BigDecimal"),
    ('{{ "12" | number("DOUBLE") }}', 12.0),
    ('{{ "0x1F" | number }}', 31),
    ('{{ "010" | number }}', 8),  # Java Integer.decode: octal
    ('{{ "12" | number + 1 }}', 13),
    ("{{ 3.141592653 | numberFormat('#.##') }}", "3.14"),
    ("{{ 1234567.891 | numberformat }}", "1,234,567.891"),
    ("{{ 1234.5 | numberformat('#,##0.00') }}", "1,234.50"),
    ("{{ 0.125 | numberformat('0.00') }}", "0.12"),  # HALF_EVEN
    ("{{ 0.5 | numberformat('#.##') }}", ".5"),
    ("{{ 0.256 | numberformat('#%') }}", "26%"),
    ("{{ -3 | numberformat('000') }}", "-003"),
    ("{{ 'text' | className }}", "java.lang.String"),
    ("{{ 1 | className }}", "java.lang.Integer"),
    ("{{ 1.5 | className }}", "java.lang.Double"),
    ("{{ true | className }}", "java.lang.Boolean"),
    ("{{ [1] | className }}", "java.util.ArrayList"),
    ("{{ {'a': 1} | className }}", "java.util.LinkedHashMap"),
]


@pytest.mark.parametrize(("template", "expected"), NUMBER_CASES)
def test_number_filters(template: str, expected: Any) -> None:
    assert r(template) == expected


JSON_CASES = [
    ("{{ [1, 2, 3] | toJson }}", "[1,2,3]"),
    ("{{ true | toJson }}", "true"),
    ('{{ "foo" | toJson }}', '"foo"'),
    ("{{ nothing | toJson }}", "null"),
    ("{{ m | json }}", '{"this":"foo","that":"bar"}'),
    ("{{ {'é': 'ü'} | toJson }}", '{"é":"ü"}'),
    ("{{ json_text | jq('.key') }}", ["my-complex"]),
    ("{{ json_text | jq('.value') }}", [{"sub": 1, "bool": True}]),
    ("{{ json_text | jq('.value.sub') | first }}", 1),
    ("{{ [1, 2, 3] | jq('.') }}", [[1, 2, 3]]),
    ("{{ [1, 2, 3] | jq('.[0]') | first }}", 1),
    ("{{ [1, 2, 3] | jq('.[]') }}", [1, 2, 3]),
    ("{{ users | jq('.[].name') }}", ["a", "b"]),
    ("{{ nothing | jq('.a') }}", None),
    ("{{ {'value': 2} | jq('.value * 2') | first }}", 4),  # runs in the isolated process
    ("{{ users | jq('map(.name) | join(\",\")') }}", ["a,b"]),
    ("{{ {'a': 1, 'b': [1, 2]} | yaml }}", "a: 1\nb:\n  - 1\n  - 2\n"),
    ("{{ 'text' | yaml }}", "text\n"),
    ("{{ {'e': null, 'n': '1', 'l': [{'k': true}]} | yaml }}", "e: null\nn: '1'\nl:\n  - k: true\n"),
    ("{{ nothing | yaml }}", "null"),
]


@pytest.mark.parametrize(("template", "expected"), JSON_CASES)
def test_json_yaml_jq_filters(template: str, expected: Any) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'abc' | substringBefore }}", "expects an argument 'separator'"),
        ("{{ 'abc' | jq }}", "expects an argument 'expression'"),
        ("{{ 'not json' | jq('.a') }}", "Unable to parse jq value"),
        ("{{ '{}' | jq('.a |||') }}", "Failed to resolve JQ expression"),
        ("{{ 'abc' | number }}", "is not a valid number"),
        ("{{ 3 | number }}", "can only be applied to String"),
        ("{{ 'x' | escapeChar('triple') }}", "either 'single', 'double', or 'shell'"),
        ("{{ 'x' | indent(-1) }}", "positive integer"),
        ("{{ [1] | chunk(0) }}", "greater than 0"),
        ("{{ 'x' | values }}", "'values' filter can only be applied to Map"),
        ("{{ 'x' | keys }}", "'keys' filter can only be applied to List, Map, Array"),
        ("{{ 'x' | flatten }}", "can only be applied to lists"),
        ("{{ 'a' | join }}", "either a collection or an array"),
        ("{{ 'a' | abs }}", "expects a number"),
        ("{{ [1, 2] | slice(2, 1) }}", "toIndex must be greater than fromIndex"),
        ("{{ 'x' | base64decode }}", "could not decode"),
        ("{{ 'x' | toIon }}", "not supported"),
        ("{{ 1 | sha256 }}", "Need a string to hash"),
        ("{{ 'x' | replace }}", "'replace_pairs' is required"),
        ("{{ 'x' | split }}", "missing delimiter"),
        ("{{ 'x' | upper('extra') }}", "The 'upper' filter expects the arguments"),
    ],
)
def test_filter_errors(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        r(template)


def test_every_corpus_filter_is_registered() -> None:
    from controlplane.expressions.engine import ENV

    for name in ("json", "toJson", "jq", "date", "dateAdd", "timestamp", "timestampMicro", "timestampNano",
                 "number", "first", "last", "keys", "values", "length", "upper", "lower", "title", "capitalize",
                 "replace", "split", "join", "slugify", "substringBefore", "substringAfter", "substringBeforeLast",
                 "substringAfterLast", "startsWith", "endsWith", "abs", "urlencode", "urldecode", "yaml", "sha256",
                 "md5", "base64encode", "base64decode", "indent", "nindent", "className", "chunk", "flatten"):
        assert name in ENV.filters, name
