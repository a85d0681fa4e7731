"""The Execute form: fields generated from a flow's typed inputs, and errors placed next to them.

:func:`input_fields` merges what the API says about each input (``Flow.inputs``: id, type,
required, default, description) with what only the source has (``values`` of SELECT /
MULTISELECT inputs). :func:`collect_inputs` turns the widgets' values into the ``inputs`` mapping
for ``StartExecution`` and reports per-field problems that need no server (a required field left
empty, JSON that does not parse). The server then validates for real; :func:`errors_by_input`
splits its INVALID_ARGUMENT message (``Invalid input for `id` (TYPE), reason, but received …``)
back onto the fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from dashboard.model import parse_flow_source
from worker_sdk.types import Flow

__all__ = ["InputField", "collect_inputs", "errors_by_input", "input_fields", "resume_fields"]

#: Widget used for each Kestra input type; anything else is a one-line text field.
WIDGETS: dict[str, str] = {
    "STRING": "text",
    "EMAIL": "text",
    "URI": "text",
    "DURATION": "text",
    "DATETIME": "text",
    "INT": "int",
    "FLOAT": "float",
    "BOOLEAN": "bool",
    "BOOL": "bool",
    "DATE": "date",
    "TIME": "time",
    "SELECT": "select",
    "ENUM": "select",
    "MULTISELECT": "multiselect",
    "JSON": "textarea",
    "YAML": "textarea",
    "ARRAY": "textarea",
    "FILE": "unsupported",
    "SECRET": "password",
}

_PLACEHOLDERS = {
    "DATETIME": "2024-01-31T18:30:00Z",
    "DURATION": "PT5M",
    "URI": "https://example.com/path",
    "EMAIL": "someone@example.com",
    "JSON": '{"key": "value"}',
    "ARRAY": '["a", "b"]  (JSON array)',
    "YAML": "key: value",
}


@dataclass(frozen=True)
class InputField:
    """One field of the Execute form.

    Attributes:
        id: Input id (the key sent to the server).
        type: Kestra input type name, upper case.
        widget: ``text``, ``int``, ``float``, ``bool``, ``date``, ``time``, ``select``,
            ``multiselect``, ``textarea``, ``password`` or ``unsupported``.
        required: Whether the server needs a value (no default and ``required``).
        default: The declared default (parsed), ``None`` when none.
        has_default: Whether a default is declared.
        description: The input's description.
        values: Allowed values of SELECT / MULTISELECT inputs, from the source.
        placeholder: Example text for text-like widgets, or the default shown as a hint.
    """

    id: str
    type: str
    widget: str
    required: bool = False
    default: Any = None
    has_default: bool = False
    description: str = ""
    values: list[str] = field(default_factory=list)
    placeholder: str = ""

    @property
    def help(self) -> str:
        """Help text: description, type, and the default when there is one."""
        parts = [self.description] if self.description else []
        parts.append(f"type {self.type}")
        if self.has_default:
            parts.append(f"default: {json.dumps(self.default, default=str)}")
        return " · ".join(parts)


def _source_inputs(source: str) -> dict[str, dict[str, Any]]:
    doc = parse_flow_source(source)
    out = {}
    for item in doc.get("inputs") or []:
        if isinstance(item, dict) and item.get("id") is not None:
            out[str(item["id"])] = item
    return out


def _field(
    input_id: str,
    kind: str,
    *,
    required: bool,
    default: Any,
    has_default: bool,
    description: str,
    raw_values: Any,
) -> InputField:
    kind = kind.upper()
    widget = WIDGETS.get(kind, "text")
    values = [str(v) for v in raw_values] if isinstance(raw_values, list) else []
    if widget in ("select", "multiselect") and not values:
        widget = "text"  # values come from an expression: let the user type it
    if has_default:
        shown = default if isinstance(default, str) else json.dumps(default, default=str)
        placeholder = f"default: {shown}"
    else:
        placeholder = _PLACEHOLDERS.get(kind, "")
    return InputField(
        id=input_id,
        type=kind,
        widget=widget,
        required=required and not has_default,
        default=default,
        has_default=has_default,
        description=description,
        values=values,
        placeholder=placeholder,
    )


def input_fields(flow: Flow) -> list[InputField]:
    """The Execute form's fields for ``flow``, in declaration order.

    Args:
        flow: A flow from ``GetFlow`` (with its source, for SELECT values).
    """
    extra = _source_inputs(flow.source)
    return [
        _field(
            declared.id,
            declared.type,
            required=declared.required,
            default=declared.default,
            has_default=declared.has_default,
            description=declared.description,
            raw_values=extra.get(declared.id, {}).get("values"),
        )
        for declared in flow.inputs
    ]


def _find_task(tasks: Any, task_id: str) -> dict[str, Any] | None:
    """Depth-first search of a task by id in parsed YAML (any nesting key, Dag items too)."""
    stack = [tasks]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("id") == task_id and "type" in node:
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return None


def resume_fields(source: str, task_id: str) -> list[InputField]:
    """The Resume form's fields: the ``onResume`` inputs of the Pause task ``task_id``.

    Kestra's Pause task declares them like flow inputs (``id``, ``type``, ``defaults``,
    ``required``, ``values``, ``description``); ``required`` defaults to true, as for flow inputs.

    Args:
        source: The flow's YAML source (of the execution's revision).
        task_id: Id of the paused task.

    Returns:
        The fields in declaration order; empty when the task declares none or is not found.
    """
    doc = parse_flow_source(source)
    task = _find_task([doc.get(k) for k in ("tasks", "errors", "finally")], task_id)
    declared = task.get("onResume") if task else None
    fields = []
    for item in declared if isinstance(declared, list) else []:
        if not isinstance(item, dict) or item.get("id") is None:
            continue
        has_default = "defaults" in item and item["defaults"] is not None
        fields.append(
            _field(
                str(item["id"]),
                str(item.get("type") or "STRING"),
                required=bool(item.get("required", True)),
                default=item.get("defaults"),
                has_default=has_default,
                description=str(item.get("description") or ""),
                raw_values=item.get("values"),
            )
        )
    return fields


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def collect_inputs(
    fields: Sequence[InputField], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``inputs`` to send, and the problems found without asking the server.

    An empty widget is left out, so the server applies the input's default (or refuses a required
    input, naming it). Values go as the server's form coercion expects them: text as typed,
    numbers and booleans as JSON values, dates and times as ISO text, JSON/ARRAY text parsed,
    MULTISELECT as a list.

    Args:
        fields: From :func:`input_fields`.
        values: Input id -> the widget's value (``None`` or ``""`` when left empty).

    Returns:
        ``(inputs, errors)``: ``errors`` maps an input id to a message for its field.
    """
    inputs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        value = values.get(f.id)
        if f.widget == "unsupported":
            if f.required:
                errors[f.id] = f"{f.type} inputs need internal storage, not available in this version"
            continue
        if _is_empty(value):
            if f.required:
                errors[f.id] = f"`{f.id}` is required"
            continue
        if f.widget in ("date", "time") and isinstance(value, date | time | datetime):
            inputs[f.id] = value.isoformat()
        elif f.widget == "int" and isinstance(value, float):
            inputs[f.id] = int(value) if value.is_integer() else value
        elif f.widget == "textarea" and f.type in ("JSON", "ARRAY"):
            try:
                inputs[f.id] = json.loads(value)
            except ValueError as err:
                errors[f.id] = f"not valid JSON: {err}"
        elif f.widget == "bool" and isinstance(value, str):
            inputs[f.id] = value.strip().lower() == "true"
        else:
            inputs[f.id] = value
    return inputs, errors


_INVALID_INPUT = re.compile(r"Invalid input for `(?P<id>[^`]+)`(?: \([^)]*\))?,?\s*(?P<reason>.*)")


def errors_by_input(message: str, input_ids: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Splits a StartExecution INVALID_ARGUMENT message onto the form's fields.

    The server lists each bad input as ``Invalid input for `id` (TYPE), reason, but received
    `value``` (Kestra's wording), one per line.

    Args:
        message: The error message.
        input_ids: Ids of the form's fields.

    Returns:
        ``(per_field, other)``: input id -> its messages joined, and the lines that name no field
        (shown above the form). Header lines such as ``flow x.y: invalid inputs:`` are dropped
        when at least one line was placed on a field.
    """
    ids = set(input_ids)
    per_field: dict[str, list[str]] = {}
    other: list[str] = []
    for raw in message.splitlines():
        line = raw.strip().lstrip("-").strip()
        if not line:
            continue
        match = _INVALID_INPUT.search(line)
        if match and match.group("id") in ids:
            per_field.setdefault(match.group("id"), []).append(match.group("reason") or line)
            continue
        named = [i for i in ids if f"`{i}`" in line or f"'{i}'" in line]
        if len(named) == 1:
            per_field.setdefault(named[0], []).append(line)
        else:
            other.append(line)
    if per_field:
        other = [line for line in other if not line.endswith("invalid inputs:")]
    return {k: "; ".join(v) for k, v in per_field.items()}, other
