"""Flow inputs: the declared types, checks on a declaration, and coercion of execution inputs.

Reference: conformance/kestra/FEATURES.md §8 and Kestra's ``FlowInputOutput.typedInputs``.

Kestra semantics kept:
    - Only declared inputs are read; a value for an undeclared name is ignored (Kestra never
      looks at it), so ``coerce_inputs`` drops it silently.
    - A missing (or null) value takes the input's ``defaults``; then a required input without a
      value is an error; an optional one is present with ``None``.
    - An empty string is a value, not a missing one (a required STRING accepts ``""``).
    - Dotted ids nest: ``nested.more.int`` is returned as ``{"nested": {"more": {"int": 1}}}``.

Where Kestra is lax we are stricter, on purpose (DESIGN.md §6, "the safer behaviour"):
    - BOOLEAN: Kestra turns any string other than "true" into false; we accept only
      "true"/"false" (any case) and real booleans.
    - INT refuses floats and booleans; FLOAT accepts integers (JSON ``1``) but refuses booleans,
      NaN and infinities.
    - STRING accepts numbers and booleans from typed JSON and stringifies them the Java way
      (``true``, ``42``); lists and maps are refused.
    - DATETIME requires an offset (``Z`` or ``+02:00``), as ``Instant.parse`` does.

Values are returned JSON-ready: DATETIME as ``2019-10-06T18:27:49Z`` (UTC, like
``Instant.toString``), DATE ``YYYY-MM-DD``, TIME ``HH:MM:SS``, DURATION in Java's
``PT1M30S`` form. FILE takes the ``kestra:///`` URI of a file uploaded for this flow
(``kestrel execution run … --input f=@path`` uploads it first; the URI must lie under
``kestra:///<namespace>/``, so an execution cannot be handed another namespace's file). SECRET
is a STRING (``validator`` applies) stored encrypted (:mod:`controlplane.crypto`), decrypted only
when task properties are rendered, masked in logs, never echoed in errors; without an encryption
key on the control plane it is refused. ``dependsOn`` conditions and SELECT
``expression`` (rendered options) are not evaluated yet: every input is active and such a SELECT
accepts any string.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import regex

from controlplane.errors import InputValidationError
from controlplane.flows.durations import format_duration, parse_duration
from controlplane.model.flow import Flow, Input

#: Kestra's input (and flow output) types.
INPUT_TYPES: tuple[str, ...] = (
    "STRING",
    "INT",
    "FLOAT",
    "BOOLEAN",
    "DATETIME",
    "DATE",
    "TIME",
    "DURATION",
    "JSON",
    "URI",
    "FILE",
    "SELECT",
    "ENUM",
    "MULTISELECT",
    "ARRAY",
    "EMAIL",
    "SECRET",
    "YAML",
)

#: Properties every input declaration accepts.
COMMON_INPUT_PROPERTIES: frozenset[str] = frozenset(
    {"id", "name", "type", "description", "displayName", "required", "defaults", "dependsOn"}
)

#: Type-specific properties of an input declaration (anything else is refused, as Kestra does).
INPUT_TYPE_PROPERTIES: dict[str, frozenset[str]] = {
    "STRING": frozenset({"validator"}),
    "SECRET": frozenset({"validator"}),
    "ENUM": frozenset({"values"}),
    "SELECT": frozenset({"values", "expression", "allowCustomValue", "isRadio", "autoSelectFirst"}),
    "MULTISELECT": frozenset(
        {"values", "options", "expression", "itemType", "allowCustomValue", "autoSelectFirst"}
    ),
    "INT": frozenset({"min", "max"}),
    "FLOAT": frozenset({"min", "max"}),
    "DATETIME": frozenset({"after", "before"}),
    "DATE": frozenset({"after", "before"}),
    "TIME": frozenset({"after", "before"}),
    "DURATION": frozenset({"min", "max"}),
    "FILE": frozenset({"extension"}),
    "JSON": frozenset(),
    "YAML": frozenset(),
    "URI": frozenset(),
    "ARRAY": frozenset({"itemType"}),
    "EMAIL": frozenset(),
    "BOOLEAN": frozenset(),
}

#: Input types ``coerce_inputs`` cannot take a value for yet.
UNSUPPORTED_INPUT_TYPES: frozenset[str] = frozenset()

# Kestra's FlowInputOutput.URI_PATTERN.
#: Longest time one ``validator`` match may take, in seconds.
VALIDATOR_TIMEOUT_SECONDS = 0.5

_URI = re.compile(
    r"[a-z]+://(?:www\.)?[-a-zA-Z0-9@:%._+~#=]{1,256}\.[a-zA-Z0-9()]{1,6}\b"
    r"(?:[-a-zA-Z0-9()@:%_+.~#?&/=]*)"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})",
    re.IGNORECASE,
)


class InputValueError(ValueError):
    """One value failed its input's type or rule; ``reason`` reads like Kestra's."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def coerce_inputs(flow: Flow, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Type and validate the inputs of a new execution of ``flow`` (Kestra semantics).

    Args:
        flow: The flow whose ``inputs`` declarations apply.
        raw: Input name -> value; strings from a CLI or form (``"42"``, ``"true"``) or typed JSON
            values (``42``, ``true``, lists, maps). Undeclared names are ignored, as in Kestra.

    Returns:
        Input id -> typed value, every declared input present (``None`` for an optional input
        without value), dotted ids nested into maps. Values are JSON-ready (see module doc).

    Raises:
        InputValidationError: At least one input is missing, of the wrong type, breaks its rule
            (``validator``, ``min``/``max``, ``values``, ``after``/``before``) or has a type not
            supported yet. The message names the flow (``namespace.id``) and lists every bad
            input with its type and the offending value.
    """
    raw = raw or {}
    problems: list[str] = []
    typed: dict[str, Any] = {}
    for declared in flow.inputs:
        value = raw.get(declared.id)
        from_default = False
        if value is None and declared.defaults is not None:
            value = declared.defaults
            from_default = True
        if value is None:
            if declared.required:
                problems.append(
                    f"Invalid input for `{declared.id}` ({declared.type}), missing required input, "
                    "but received `null`"
                )
            else:
                typed[declared.id] = None
            continue
        try:
            typed[declared.id] = coerce_value(declared, value)
            if declared.type == "FILE":
                _check_file_owner(flow, typed[declared.id])
            if declared.type == "SECRET":
                typed[declared.id] = _encrypt(typed[declared.id])
        except InputValueError as exc:
            origin = " (its default)" if from_default else ""
            shown = "******" if declared.type == "SECRET" else _shown(value)  # never echo a secret
            problems.append(
                f"Invalid input for `{declared.id}` ({declared.type}), {exc.reason}, but received "
                f"`{shown}`{origin}"
            )
    if problems:
        ref = f"{flow.namespace}.{flow.id}"
        raise InputValidationError(f"flow {ref}: invalid inputs:\n" + "\n".join(f"  - {p}" for p in problems))
    return nest_inputs(typed)


def _encrypt(text: str) -> str:
    """A SECRET input's stored form (:mod:`controlplane.crypto`; decrypted only for rendering)."""
    from controlplane import crypto

    try:
        return crypto.encryptor().encrypt(text)
    except crypto.EncryptionUnavailableError as exc:
        raise InputValueError(str(exc)) from None
    except UnicodeEncodeError:
        raise InputValueError("it must be valid Unicode text (it holds a lone surrogate)") from None


def secret_input_values(flow: Flow, inputs: Mapping[str, Any]) -> dict[str, str]:
    """The decrypted SECRET inputs of an execution: dotted input id -> text. Values that cannot be
    decrypted (another key) are left out.

    Args:
        flow: The flow revision of the execution (its SECRET declarations).
        inputs: The execution's stored inputs (nested as :func:`nest_inputs` made them).
    """
    from controlplane import crypto

    found: dict[str, str] = {}
    for declared in flow.inputs:
        if declared.type != "SECRET":
            continue
        value: Any = inputs
        for part in declared.id.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if crypto.is_encrypted(value):
            try:
                found[declared.id] = crypto.encryptor().decrypt(value)
            except (ValueError, crypto.EncryptionUnavailableError):
                continue
    return found


def with_secrets_decrypted(flow: Flow, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` with each SECRET input decrypted, as expressions see them (Kestra decrypts
    SECRET inputs when rendering); the stored inputs keep the encrypted form. Encrypted values
    of other inputs are decrypted too: a parent's secret passed to a subflow's STRING input is
    stored encrypted in the child (:func:`seal_secret_values`)."""
    from controlplane import crypto

    secrets = secret_input_values(flow, inputs)
    sealed_elsewhere = any(crypto.is_encrypted(v) for v in _strings(inputs))
    if not secrets and not sealed_elsewhere:
        return dict(inputs)
    result = json.loads(json.dumps(inputs))  # a deep copy of JSON data
    for dotted, text in secrets.items():
        *parents, last = dotted.split(".")
        target = result
        for part in parents:
            target = target[part]
        target[last] = text
    if sealed_elsewhere:
        result = _map_strings(result, _decrypt_or_keep)
    return result


def sealed_values(inputs: Mapping[str, Any]) -> list[str]:
    """The decrypted text of every encrypted value in an execution's stored inputs (its SECRET
    inputs, and secrets a caller passed to it); values another key sealed are left out."""
    from controlplane import crypto

    return [d for d in (_decrypt_or_keep(s) for s in _strings(inputs) if crypto.is_encrypted(s))
            if not crypto.is_encrypted(d)]


def seal_secret_values(inputs: Mapping[str, Any], secret_values: list[str]) -> dict[str, Any]:
    """``inputs`` of a new (child) execution with every text that contains one of
    ``secret_values`` (the caller's decrypted SECRET inputs) stored encrypted, whatever the
    child's input type: the secret stays encrypted at rest and masked in the child too.

    Raises:
        InputValueError: no encryption key is configured.
    """
    values = [v for v in secret_values if len(v) >= 4]  # as masking: shorter values are not secrets
    if not values:
        return dict(inputs)

    def seal(text: str) -> str:
        return _encrypt(text) if any(v in text for v in values) else text

    return _map_strings(dict(inputs), seal)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value (maps, lists), depth first."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of a JSON-like value with ``change`` applied to every string (not map keys)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, Mapping):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return value


def _decrypt_or_keep(text: str) -> str:
    from controlplane import crypto

    if not crypto.is_encrypted(text):
        return text
    try:
        return crypto.encryptor().decrypt(text)
    except (ValueError, crypto.EncryptionUnavailableError):
        return text


def _check_file_owner(flow: Flow, uri: str) -> None:
    """A FILE input must be a file of the flow's namespace (``kestra:///<ns as path>/…``): one
    uploaded for it, or a file a parent execution of the same namespace passes to a subflow.
    Storage refuses a worker any other namespace's file when it reads it."""
    prefix = "kestra:///" + flow.namespace.replace(".", "/") + "/"
    if not uri.startswith(prefix):
        raise InputValueError(
            f"the file must be one of namespace {flow.namespace} ({prefix}…), e.g. uploaded for flow "
            f"{flow.namespace}.{flow.id}"
        )


def nest_inputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted ids into nested maps (``{"a.b": 1}`` -> ``{"a": {"b": 1}}``), as Kestra does.

    Raises:
        InputValidationError: Two ids collide (``a`` and ``a.b``).
    """
    result: dict[str, Any] = {}
    for key, value in values.items():
        parts = key.split(".")
        target = result
        for part in parts[:-1]:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise InputValidationError(f"input ids collide: '{key}' nests under a value")
            target = nxt
        if parts[-1] in target and isinstance(target[parts[-1]], dict):
            raise InputValidationError(f"input ids collide: '{key}' is also a prefix of another input")
        target[parts[-1]] = value
    return result


def coerce_value(declared: Input, value: Any) -> Any:
    """Type and validate one non-null value for ``declared``.

    Args:
        declared: The input declaration (type and rules in ``extra``).
        value: A string or a typed JSON value.

    Returns:
        The typed, JSON-ready value.

    Raises:
        InputValueError: Wrong type, rule broken, or type not supported yet; ``reason`` says which.
    """
    kind = declared.type
    if kind in UNSUPPORTED_INPUT_TYPES:
        raise InputValueError(f"input type {kind} is not supported yet")
    coercer = _COERCERS.get(kind)
    if coercer is None:
        raise InputValueError(f"input type {kind} is not supported yet")
    return coercer(declared, value)


# --- coercers -------------------------------------------------------------------------------


def _string(declared: Input, value: Any) -> str:
    text = _as_text(value)
    validator = declared.extra.get("validator")
    if isinstance(validator, str):
        try:
            # A time limit: a pattern like (a+)+b backtracks exponentially on some values, and
            # inputs are checked on the control plane's event loop.
            matched = regex.fullmatch(validator, text, timeout=VALIDATOR_TIMEOUT_SECONDS)
        except TimeoutError:
            raise InputValueError(
                f"checking it against the pattern `{validator}` took over {VALIDATOR_TIMEOUT_SECONDS:g} s "
                "(a pattern that backtracks badly)"
            ) from None
        if matched is None:
            raise InputValueError(f"it must match the pattern `{validator}`")
    return text


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _shown(value)
    raise InputValueError("it must be a string")


def _choice(declared: Input, value: Any) -> str:
    text = _as_text(value)
    values = declared.extra.get("values")
    if isinstance(values, list) and not declared.extra.get("allowCustomValue", False):
        allowed = [_shown(v) for v in values]
        if text not in allowed:
            raise InputValueError(f"it must match the values `[{', '.join(allowed)}]`")
    return text


def _multiselect(declared: Input, value: Any) -> list[str]:
    items = _as_list(value)
    values = declared.extra.get("values", declared.extra.get("options"))
    texts = [_as_text(item) for item in items]
    if isinstance(values, list) and not declared.extra.get("allowCustomValue", False):
        allowed = [_shown(v) for v in values]
        for text in texts:
            if text not in allowed:
                raise InputValueError(f"it must match the values `[{', '.join(allowed)}]`")
    return texts


def _int(declared: Input, value: Any) -> int:
    if isinstance(value, bool):
        raise InputValueError("it must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT.fullmatch(value):
        number = int(value)
    else:
        raise InputValueError("it must be an integer")
    _check_bounds(declared, number, int)
    return number


def _float(declared: Input, value: Any) -> float:
    if isinstance(value, bool):
        raise InputValueError("it must be a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and _FLOAT.fullmatch(value):
        number = float(value)
    else:
        raise InputValueError("it must be a number")
    if not math.isfinite(number):
        raise InputValueError("it must be a finite number")
    _check_bounds(declared, number, float)
    return number


def _check_bounds(declared: Input, number: float, cast: Callable[[Any], float]) -> None:
    low = declared.extra.get("min")
    high = declared.extra.get("max")
    if low is not None and number < cast(low):
        raise InputValueError(f"it must be more than `{_shown(low)}`")
    if high is not None and number > cast(high):
        raise InputValueError(f"it must be less than `{_shown(high)}`")


def _boolean(declared: Input, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InputValueError("it must be `true` or `false`")


def parse_datetime(value: Any) -> datetime:
    """An ISO-8601 instant with offset (``2019-10-06T18:27:49Z``) as an aware UTC datetime.

    Raises:
        InputValueError: Not such a text (or a naive ``datetime``).
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputValueError(
                "it must be an ISO-8601 date-time with an offset, like `2019-10-06T18:27:49Z`"
            )
        return value.astimezone(UTC)
    if isinstance(value, str) and _DATETIME.fullmatch(value.strip()):
        text = value.strip()
        fraction = re.search(r"\.([0-9]+)", text)
        if fraction and len(fraction.group(1)) > 6:
            text = text.replace(fraction.group(0), "." + fraction.group(1)[:6], 1)
        try:
            return datetime.fromisoformat(text.upper()).astimezone(UTC)
        except ValueError:
            pass
    raise InputValueError("it must be an ISO-8601 date-time with an offset, like `2019-10-06T18:27:49Z`")


def format_datetime(value: datetime) -> str:
    """Format an aware datetime like Java's ``Instant.toString`` (UTC, ``Z``, ms/us if any)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        micros = f"{value.microsecond:06d}"
        text += "." + (micros[:3] if micros.endswith("000") else micros)
    return text + "Z"


def parse_date(value: Any) -> date:
    """A ``YYYY-MM-DD`` date. Raises InputValueError otherwise."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InputValueError("it must be an ISO-8601 date like `2023-12-31`")


def parse_time(value: Any) -> time:
    """A ``HH:MM[:SS[.f]]`` time. Raises InputValueError otherwise."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and _TIME.fullmatch(value.strip()):
        text = value.strip()
        if "." in text and len(text.split(".", 1)[1]) > 6:
            text = text[: text.index(".") + 7]
        try:
            return time.fromisoformat(text)
        except ValueError:
            pass
    raise InputValueError("it must be an ISO-8601 time like `13:45:00`")


def _format_time(value: time) -> str:
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")


def _temporal(parse: Callable[[Any], Any], fmt: Callable[[Any], str]) -> Callable[[Input, Any], str]:
    def coerce(declared: Input, value: Any) -> str:
        parsed = parse(value)
        after = declared.extra.get("after")
        before = declared.extra.get("before")
        if after is not None and parsed < parse(after):
            raise InputValueError(f"it must be after `{_shown(after)}`")
        if before is not None and parsed > parse(before):
            raise InputValueError(f"it must be before `{_shown(before)}`")
        return fmt(parsed)

    return coerce


def _duration(declared: Input, value: Any) -> str:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        seconds = _duration_seconds(value)
    low = declared.extra.get("min")
    high = declared.extra.get("max")
    if low is not None and seconds < _duration_seconds(low):
        raise InputValueError(f"It must be more than `{_shown(low)}`")
    if high is not None and seconds > _duration_seconds(high):
        raise InputValueError(f"It must be less than `{_shown(high)}`")
    return format_duration(seconds)


def _duration_seconds(value: Any) -> float:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            pass
    raise InputValueError("it must be an ISO-8601 duration like `PT5M6S`")


def _no_constant(name: str) -> Any:
    raise InputValueError(f"it must be valid JSON ({name} is not a JSON number)")


def _json(declared: Input, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise InputValueError(f"it must be valid JSON ({exc.msg} at char {exc.pos})") from exc
    return value


def _yaml(declared: Input, value: Any) -> Any:
    if isinstance(value, str):
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        from controlplane.flows._yaml import DocumentTooLargeError, to_plain

        try:
            return to_plain(YAML(typ="safe", pure=True).load(value))
        except (YAMLError, DocumentTooLargeError) as exc:
            raise InputValueError(f"it must be valid YAML ({' '.join(str(exc).split())})") from exc
    return value


def _uri(declared: Input, value: Any) -> str:
    if isinstance(value, str) and _URI.fullmatch(value):
        return value
    raise InputValueError("Expected `URI` (like `https://example.com/path`)")


def _file(declared: Input, value: Any) -> str:
    from controlplane.errors import InvalidArgumentError
    from controlplane.storage.uris import canonical_uri

    if isinstance(value, str) and value.startswith("kestra:///"):
        try:
            return canonical_uri(value)
        except InvalidArgumentError as exc:
            raise InputValueError(f"Expected a `kestra:///` URI of an uploaded file ({exc})") from None
    raise InputValueError("Expected a `kestra:///` URI of an uploaded file (upload it first, e.g. `--input f=@path`)")


def _email(declared: Input, value: Any) -> str:
    if isinstance(value, str) and _EMAIL.fullmatch(value):
        return value
    raise InputValueError("it must be an email address")


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    raise InputValueError("it must be a list or a JSON array")


def _array(declared: Input, value: Any) -> list[Any]:
    items = _as_list(value)
    item_type = declared.extra.get("itemType")
    if not isinstance(item_type, str):
        return items
    element = replace(declared, type=item_type, extra={})
    result = []
    for item in items:
        try:
            if item is None:
                raise InputValueError("null item")
            result.append(coerce_value(element, item))
        except InputValueError as exc:
            raise InputValueError(
                f"Unable to parse array element as `{item_type}` on `{_shown(item)}` ({exc.reason})"
            ) from exc
    return result


_COERCERS: dict[str, Callable[[Input, Any], Any]] = {
    "STRING": _string,
    "SECRET": _string,
    "ENUM": _choice,
    "SELECT": _choice,
    "MULTISELECT": _multiselect,
    "INT": _int,
    "FLOAT": _float,
    "BOOLEAN": _boolean,
    "DATETIME": _temporal(parse_datetime, format_datetime),
    "DATE": _temporal(parse_date, date.isoformat),
    "TIME": _temporal(parse_time, _format_time),
    "DURATION": _duration,
    "JSON": _json,
    "YAML": _yaml,
    "URI": _uri,
    "EMAIL": _email,
    "ARRAY": _array,
    "FILE": _file,
}


# --- declaration checks (used by the parser) -----------------------------------------------


def check_declaration(declared: Input) -> list[tuple[str, str]]:
    """Rules on an input declaration that Kestra enforces when a flow is saved.

    Args:
        declared: A parsed input (``type`` already known to be one of ``INPUT_TYPES``).

    Returns:
        ``(field, message)`` pairs, empty when the declaration is fine. Checked: ``validator``
        compiles; ``min``/``max``/``after``/``before`` parse as the input's type; ENUM has
        ``values``; SELECT has ``values`` or ``expression``; ARRAY has an ``itemType`` that is
        a type other than ARRAY; FILE has no ``defaults``.
    """
    problems: list[tuple[str, str]] = []
    extra = declared.extra
    kind = declared.type
    validator = extra.get("validator")
    if validator is not None:
        if not isinstance(validator, str):
            problems.append(("validator", "'validator' must be a regular expression string"))
        else:
            try:
                re.compile(validator)
            except re.error as exc:
                problems.append(("validator", f"'validator' is not a valid regular expression: {exc}"))
    bounds: dict[str, Callable[[Any], Any]] = {}
    if kind == "INT":
        bounds = {"min": lambda v: _int(_bare(declared), v), "max": lambda v: _int(_bare(declared), v)}
    elif kind == "FLOAT":
        bounds = {"min": lambda v: _float(_bare(declared), v), "max": lambda v: _float(_bare(declared), v)}
    elif kind == "DURATION":
        bounds = {"min": _duration_seconds, "max": _duration_seconds}
    elif kind == "DATETIME":
        bounds = {"after": parse_datetime, "before": parse_datetime}
    elif kind == "DATE":
        bounds = {"after": parse_date, "before": parse_date}
    elif kind == "TIME":
        bounds = {"after": parse_time, "before": parse_time}
    for key, parse in bounds.items():
        if extra.get(key) is not None:
            try:
                parse(extra[key])
            except InputValueError as exc:
                problems.append((key, f"'{key}' is not a valid {kind}: {exc.reason}"))
    if kind == "ENUM" and not isinstance(extra.get("values"), list):
        problems.append(("values", "'values' is required for an ENUM input (a list)"))
    if kind == "SELECT" and extra.get("values") is None and extra.get("expression") is None:
        problems.append(("values", "a SELECT input needs 'values' or 'expression'"))
    if kind in ("ARRAY", "MULTISELECT") and "itemType" in extra:
        item_type = extra.get("itemType")
        if item_type == "ARRAY":
            problems.append(("itemType", "`itemType` cannot be `ARRAY`"))
        elif item_type not in INPUT_TYPES:
            problems.append(
                ("itemType", f"invalid `itemType` '{_shown(item_type)}' (one of {', '.join(INPUT_TYPES)})")
            )
    elif kind == "ARRAY":
        problems.append(("itemType", "'itemType' is required for an ARRAY input"))
    if kind == "FILE" and declared.defaults is not None:
        problems.append(("defaults", "no `defaults` can be set for inputs of type 'FILE'"))
    return problems


def _bare(declared: Input) -> Input:
    return replace(declared, extra={})


def _shown(value: Any) -> str:
    """A value as Kestra's messages show it (Java-style scalars, JSON for containers)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, date | time | datetime):
        text = value.isoformat()
    else:
        try:
            text = json.dumps(value, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
