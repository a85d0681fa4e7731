"""coerce_inputs: Kestra's input semantics, table-driven."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from controlplane.errors import InputValidationError
from controlplane.flows import coerce_inputs, parse_flow
from controlplane.model import Flow, Input


def flow_with(*inputs: Input) -> Flow:
    base = parse_flow(
        "id: f\nnamespace: ns\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}\n"
    )
    return replace(base, inputs=tuple(inputs))


def one(kind: str, value: Any, **extra: Any) -> Any:
    return coerce_inputs(flow_with(Input(id="x", type=kind, extra=extra)), {"x": value})["x"]


def refused(kind: str, value: Any, **extra: Any) -> str:
    with pytest.raises(InputValidationError) as info:
        one(kind, value, **extra)
    return str(info.value)



@pytest.fixture(autouse=True)
def _no_encryption_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run without a control plane: no SECRET-input key, whatever ran before."""
    from controlplane import crypto

    monkeypatch.setattr(crypto, "_encryptor", None)

@pytest.mark.parametrize(
    ("kind", "raw", "typed"),
    [
        ("STRING", "hello", "hello"),
        ("STRING", "", ""),
        ("STRING", "{{ 7*7 }}", "{{ 7*7 }}"),
        ("STRING", 42, "42"),
        ("STRING", True, "true"),
        ("INT", "42", 42),
        ("INT", "-7", -7),
        ("INT", "+3", 3),
        ("INT", 42, 42),
        ("INT", "12345678901234", 12345678901234),
        ("FLOAT", "1.5", 1.5),
        ("FLOAT", "-2", -2.0),
        ("FLOAT", "1e3", 1000.0),
        ("FLOAT", ".5", 0.5),
        ("FLOAT", 1.5, 1.5),
        ("FLOAT", 2, 2.0),
        ("BOOLEAN", "true", True),
        ("BOOLEAN", "FALSE", False),
        ("BOOLEAN", "True", True),
        ("BOOLEAN", False, False),
        ("DATETIME", "2019-10-06T18:27:49Z", "2019-10-06T18:27:49Z"),
        ("DATETIME", "2019-10-06T20:27:49+02:00", "2019-10-06T18:27:49Z"),
        ("DATETIME", "2019-10-06T18:27:49.123Z", "2019-10-06T18:27:49.123Z"),
        ("DATETIME", "2019-10-06T18:27Z", "2019-10-06T18:27:00Z"),
        ("DATE", "2023-12-31", "2023-12-31"),
        ("TIME", "13:45", "13:45:00"),
        ("TIME", "13:45:10", "13:45:10"),
        ("DURATION", "PT5M6S", "PT5M6S"),
        ("DURATION", "PT90S", "PT1M30S"),
        ("JSON", '{"a": [1, 2]}', {"a": [1, 2]}),
        ("JSON", "{}", {}),
        ("JSON", {"typed": True}, {"typed": True}),
        ("YAML", "a: 1\nb: [x]\n", {"a": 1, "b": ["x"]}),
        ("YAML", {"typed": 1}, {"typed": 1}),
        ("URI", "https://kestra.io/docs", "https://kestra.io/docs"),
        ("EMAIL", "me@example.com", "me@example.com"),
    ],
)
def test_coercion_table(kind: str, raw: Any, typed: Any) -> None:
    result = one(kind, raw)
    assert result == typed
    assert type(result) is type(typed)


@pytest.mark.parametrize(
    ("kind", "raw", "reason"),
    [
        ("STRING", [1], "it must be a string"),
        ("INT", "4.0", "it must be an integer"),
        ("INT", "abc", "it must be an integer"),
        ("INT", " 4", "it must be an integer"),
        ("INT", True, "it must be an integer"),
        ("INT", 4.0, "it must be an integer"),
        ("FLOAT", "abc", "it must be a number"),
        ("FLOAT", False, "it must be a number"),
        ("FLOAT", "nan", "it must be a number"),
        ("FLOAT", float("inf"), "it must be a finite number"),
        ("BOOLEAN", "yes", "it must be `true` or `false`"),
        ("BOOLEAN", 1, "it must be `true` or `false`"),
        ("DATETIME", "2019-10-06T18:27:49", "with an offset"),
        ("DATETIME", "2019-10-06", "with an offset"),
        ("DATE", "2023-13-01", "ISO-8601 date"),
        ("DATE", "20230101", "ISO-8601 date"),
        ("TIME", "25:00", "ISO-8601 time"),
        ("DURATION", "5 minutes", "ISO-8601 duration"),
        ("JSON", "{not json", "it must be valid JSON"),
        ("YAML", "a: [", "it must be valid YAML"),
        ("URI", "http:/bla", "Expected `URI`"),
        ("EMAIL", "not-an-email", "it must be an email address"),
        ("FILE", "/tmp/a.txt", "Expected a `kestra:///` URI of an uploaded file"),
        ("SECRET", "s3cr3t", "SECRET inputs need an encryption key"),  # none configured in unit tests
    ],
)
def test_refused_values_name_flow_input_type_and_value(kind: str, raw: Any, reason: str) -> None:
    message = refused(kind, raw)
    assert message.startswith("flow ns.f: invalid inputs:")
    assert f"Invalid input for `x` ({kind})" in message
    assert reason in message
    if kind == "SECRET":
        assert "but received `******`" in message and raw not in message  # never echoed
    elif isinstance(raw, str):
        assert f"but received `{raw}`" in message


@pytest.mark.parametrize(
    ("kind", "extra", "raw", "expected"),
    [
        ("STRING", {"validator": r"A\d+"}, "A12", "A12"),
        ("INT", {"min": 10, "max": 20}, "10", 10),
        ("FLOAT", {"min": 0.1, "max": 0.5}, "0.5", 0.5),
        ("ENUM", {"values": ["ENUM_VALUE", "OTHER_ONE"]}, "OTHER_ONE", "OTHER_ONE"),
        ("SELECT", {"values": ["A", "B"]}, "B", "B"),
        ("SELECT", {"values": ["A", "B"], "allowCustomValue": True}, "C", "C"),
        ("SELECT", {"expression": "{{ kv('x') }}"}, "anything", "anything"),
        ("MULTISELECT", {"values": ["A", "B", "C"]}, '["A", "C"]', ["A", "C"]),
        ("MULTISELECT", {"options": ["A", "B"]}, ["B"], ["B"]),
        ("DATE", {"after": "2023-01-01", "before": "2023-12-31"}, "2023-06-01", "2023-06-01"),
        ("DATETIME", {"after": "2023-01-01T00:00:00Z"}, "2023-01-01T00:00:00Z", "2023-01-01T00:00:00Z"),
        ("TIME", {"after": "01:00:00", "before": "11:59:59"}, "10:00", "10:00:00"),
        ("DURATION", {"min": "PT10S", "max": "PT20S"}, "PT15S", "PT15S"),
        ("ARRAY", {"itemType": "INT"}, "[1, 2, 3]", [1, 2, 3]),
        ("ARRAY", {"itemType": "INT"}, ["1", 2], [1, 2]),
        ("ARRAY", {"itemType": "STRING"}, ["a", "b"], ["a", "b"]),
        ("ARRAY", {"itemType": "DATE"}, '["2024-01-01"]', ["2024-01-01"]),
    ],
)
def test_rules_accept(kind: str, extra: dict[str, Any], raw: Any, expected: Any) -> None:
    assert one(kind, raw, **extra) == expected


@pytest.mark.parametrize(
    ("kind", "extra", "raw", "reason"),
    [
        ("STRING", {"validator": r"A\d+"}, "A12b", r"it must match the pattern `A\d+`"),
        ("INT", {"min": 10}, "9", "it must be more than `10`"),
        ("INT", {"max": 20}, "21", "it must be less than `20`"),
        ("FLOAT", {"max": 0.5}, "0.6", "it must be less than `0.5`"),
        (
            "ENUM",
            {"values": ["ENUM_VALUE", "OTHER_ONE"]},
            "NOPE",
            "it must match the values `[ENUM_VALUE, OTHER_ONE]`",
        ),
        ("SELECT", {"values": ["A", "B"]}, "C", "it must match the values `[A, B]`"),
        ("MULTISELECT", {"values": ["A"]}, ["A", "Z"], "it must match the values `[A]`"),
        ("MULTISELECT", {"values": ["A"]}, "A", "it must be a list or a JSON array"),
        ("DATE", {"after": "2023-01-01"}, "2022-12-31", "it must be after `2023-01-01`"),
        ("DATE", {"before": "2023-12-31"}, "2024-01-01", "it must be before `2023-12-31`"),
        ("DURATION", {"min": "PT10S"}, "PT5S", "It must be more than `PT10S`"),
        ("DURATION", {"max": "PT20S"}, "PT1M", "It must be less than `PT20S`"),
        ("ARRAY", {"itemType": "INT"}, '["s1"]', "Unable to parse array element as `INT` on `s1`"),
        ("ARRAY", {"itemType": "INT"}, "not a list", "it must be a list or a JSON array"),
    ],
)
def test_rules_refuse(kind: str, extra: dict[str, Any], raw: Any, reason: str) -> None:
    assert reason in refused(kind, raw, **extra)


def test_defaults_missing_required_optional_and_unknown_names() -> None:
    flow = flow_with(
        Input(id="with_default", type="INT", defaults=5),
        Input(id="given", type="STRING"),
        Input(id="optional", type="FLOAT", required=False),
        Input(id="optional_default", type="BOOLEAN", required=False, defaults="true"),
        Input(id="empty_default", type="STRING", defaults=""),
    )
    result = coerce_inputs(flow, {"given": "g", "not_declared": "ignored", "with_default": None})
    assert result == {
        "with_default": 5,
        "given": "g",
        "optional": None,
        "optional_default": True,
        "empty_default": "",
    }


def test_all_problems_are_reported_together() -> None:
    flow = flow_with(
        Input(id="a", type="INT"),
        Input(id="b", type="BOOLEAN"),
        Input(id="c", type="STRING"),
        Input(id="d", type="INT", defaults="oops"),
    )
    with pytest.raises(InputValidationError) as info:
        coerce_inputs(flow, {"a": "x", "b": "maybe"})
    assert str(info.value) == (
        "flow ns.f: invalid inputs:\n"
        "  - Invalid input for `a` (INT), it must be an integer, but received `x`\n"
        "  - Invalid input for `b` (BOOLEAN), it must be `true` or `false`, but received `maybe`\n"
        "  - Invalid input for `c` (STRING), missing required input, but received `null`\n"
        "  - Invalid input for `d` (INT), it must be an integer, but received `oops` (its default)"
    )


def test_dotted_ids_nest_like_kestra() -> None:
    flow = flow_with(
        Input(id="nested.string", type="STRING"),
        Input(id="nested.more.int", type="INT"),
        Input(id="top", type="BOOLEAN", required=False),
    )
    assert coerce_inputs(flow, {"nested.string": "s", "nested.more.int": "3"}) == {
        "nested": {"string": "s", "more": {"int": 3}},
        "top": None,
    }


def test_none_raw_mapping_means_no_values() -> None:
    assert coerce_inputs(flow_with(Input(id="o", type="STRING", required=False)), None) == {"o": None}


def test_long_values_are_shortened_in_messages() -> None:
    message = refused("INT", "9" * 50 + "x" * 500)
    assert "..." in message and len(message) < 400


def test_inputs_of_a_parsed_corpus_like_flow() -> None:
    flow = parse_flow(
        "id: inputs\nnamespace: io.kestra.tests\n"
        "inputs:\n"
        "  - {id: string, type: STRING}\n"
        "  - {id: int, type: INT}\n"
        "  - {id: validatedDate, type: DATE, after: 2023-01-01, before: 2023-12-31, required: false}\n"
        "  - {id: instantDefaults, type: DATETIME, defaults: '2013-08-09T14:19:00Z'}\n"
        "  - {name: yaml, type: YAML, defaults: {property: something}}\n"
        "tasks:\n  - {id: t, type: io.kestra.plugin.core.debug.Return, format: x}\n"
    )
    assert coerce_inputs(flow, {"string": "myString", "int": "42", "validatedDate": "2023-06-06"}) == {
        "string": "myString",
        "int": 42,
        "validatedDate": "2023-06-06",
        "instantDefaults": "2013-08-09T14:19:00Z",
        "yaml": {"property": "something"},
    }
