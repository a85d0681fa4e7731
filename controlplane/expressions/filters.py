"""Pebble core filters and Kestra's filters, with their Java meaning.

Each filter takes the input first (positional-only, so a Pebble argument may be named ``value``),
then Pebble's argument names, which templates may pass by name (``date(format='yyyy')``). A null
input gives null unless noted. Sources: Pebble's ``extension/core`` filters and Kestra's
``runners/pebble/filters`` (the behaviour is reproduced, not the code).

Not provided: ``toIon`` (no Ion library here; raises a clear error), ``escape``/``raw`` (Kestra
disables auto-escaping; not registered).
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import regex

from controlplane.expressions import dates, jq, limits
from controlplane.expressions.errors import EvaluationError
from controlplane.expressions.values import (
    JAVA_INT_MAX,
    JAVA_INT_MIN,
    JAVA_LONG_MAX,
    JAVA_LONG_MIN,
    Entry,
    JavaBigDecimal,
    JavaBigInteger,
    JavaFloat,
    JavaLong,
    class_name,
    from_json,
    is_empty,
    is_number,
    java_string,
    to_json,
)


def _string(value: Any, filter_name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        raise EvaluationError(f"The '{filter_name}' filter expects a string, not {class_name(value)}")
    return java_string(value)


def _int_arg(value: Any, name: str, filter_name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise EvaluationError(f"The '{filter_name}' filter expects an integer as argument '{name}'.")
    return value


# --- strings -----------------------------------------------------------------------------------

def f_upper(value: Any, /) -> Any:
    """``upper``: upper case."""
    return None if value is None else _string(value, "upper").upper()


def f_lower(value: Any, /) -> Any:
    """``lower``: lower case."""
    return None if value is None else _string(value, "lower").lower()


def f_title(value: Any, /) -> Any:
    """``title``: title-case the first letter of each whitespace-separated word (others kept)."""
    if value is None:
        return None
    out, capitalize_next = [], True
    for char in _string(value, "title"):
        if char.isspace():
            capitalize_next = True
        elif capitalize_next:
            char = char.title()[0] if char.title() else char
            capitalize_next = False
        out.append(char)
    return "".join(out)


def f_capitalize(value: Any, /) -> Any:
    """``capitalize``: title-case the first non-blank character, keep the rest."""
    if value is None:
        return None
    text = _string(value, "capitalize")
    for index, char in enumerate(text):
        if not char.isspace():
            return text[:index] + char.title()[0] + text[index + 1 :]
    return text


_JAVA_TRIM = "".join(chr(i) for i in range(33))


def f_trim(value: Any, /) -> Any:
    """``trim``: remove leading and trailing whitespace/control characters (Java ``trim``)."""
    return None if value is None else _string(value, "trim").strip(_JAVA_TRIM)


def f_abbreviate(value: Any, /, length: Any) -> Any:
    """``abbreviate(length)``: cut to ``length`` characters, ending with ``...``."""
    if value is None:
        return None
    width = _int_arg(length, "length", "abbreviate")
    if width < 0:
        raise EvaluationError("Invalid argument to abbreviate filter; must be greater than zero")
    text = _string(value, "abbreviate")
    if len(text) < width or len(text) <= 3:
        return text
    if width <= 3:
        return text[:width]
    return text[: width - 3] + "..."


def f_replace(value: Any, /, replace_pairs: Any = None, regexp: Any = False) -> Any:
    """``replace({'from': 'to', …}, regexp=false)`` (Kestra's version): replaces in a string, or in
    every string of a list/map (non-strings become strings). With ``regexp=true`` keys are
    regular expressions and values may use ``$1`` group references."""
    if value is None:
        return None
    if not isinstance(replace_pairs, Mapping):
        raise EvaluationError("The argument 'replace_pairs' is required.")
    pairs = [(java_string(k), java_string(v)) for k, v in replace_pairs.items()]

    def one(text: str) -> str:
        for old, new in pairs:
            limits.check_deadline()
            if regexp:
                pattern = _java_regex(old)
                try:
                    count = len(pattern.findall(text, timeout=limits.regex_timeout()))
                    limits.check_string_length(len(text) + count * len(new), "replace result")
                    text = pattern.sub(_java_replacement(new), text, timeout=limits.regex_timeout())
                except TimeoutError as exc:
                    raise limits.regex_timed_out(old) from exc
            else:
                if old == "":
                    count = len(text) + 1
                else:
                    count = text.count(old)
                limits.check_string_length(len(text) + count * max(0, len(new) - len(old)), "replace result")
                text = text.replace(old, new)
        return text

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return one(item)
        if isinstance(item, Mapping):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return one(java_string(item))

    return walk(value)


def _java_regex(pattern: str) -> regex.Pattern[str]:
    """A Java regular expression in the ``regex`` module's dialect (the common subset is the
    same); matching calls pass ``timeout=limits.regex_timeout()``."""
    converted = pattern.replace("\\p{Alpha}", "[A-Za-z]").replace("\\p{Digit}", "[0-9]")
    converted = re.sub(r"\(\?<([A-Za-z])", r"(?P<\1", converted)
    try:
        return regex.compile(converted)
    except regex.error as exc:
        raise EvaluationError(f"Invalid regular expression '{pattern}': {exc}") from exc


def _java_replacement(replacement: str) -> Callable[[regex.Match[str]], str]:
    def expand(match: regex.Match[str]) -> str:
        out, i = [], 0
        while i < len(replacement):
            char = replacement[i]
            if char == "\\" and i + 1 < len(replacement):
                out.append(replacement[i + 1])
                i += 2
            elif char == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
                j = i + 1
                while j < len(replacement) and replacement[j].isdigit():
                    j += 1
                out.append(match.group(int(replacement[i + 1 : j])) or "")
                i = j
            else:
                out.append(char)
                i += 1
        return "".join(out)

    return expand


def _java_split(text: str, pattern: regex.Pattern[str], limit: int) -> list[str]:
    parts: list[str] = []
    start = 0
    for match in pattern.finditer(text, timeout=limits.regex_timeout()):
        if limit > 0 and len(parts) == limit - 1:
            break
        if match.end() == 0:  # a zero-width match at the start never yields an empty first part
            continue
        parts.append(text[start : match.start()])
        start = match.end()
    parts.append(text[start:])
    return parts


def f_split(value: Any, /, delimiter: Any = None, limit: Any = None) -> Any:
    """``split(delimiter, limit)``: Java ``String.split`` (the delimiter is a regular expression;
    trailing empty strings are dropped unless a limit is given)."""
    if value is None:
        return None
    if not isinstance(delimiter, str):
        raise EvaluationError("missing delimiter parameter in split filter")
    text = _string(value, "split")
    count = 0 if limit is None else _int_arg(limit, "limit", "split")
    if text == "":
        return [""]
    try:
        parts = _java_split(text, _java_regex(delimiter), count)
    except TimeoutError as exc:
        raise limits.regex_timed_out(delimiter) from exc
    if count == 0:
        while len(parts) > 1 and parts[-1] == "":
            parts.pop()
        if parts == [""]:
            return []
    return parts


def f_startsWith(value: Any, /, value_: Any = None, **kwargs: Any) -> Any:  # noqa: N802
    """``startsWith(value)``: the string form of the input starts with ``value``."""
    prefix = kwargs.pop("value", value_)
    if value is None or prefix is None:
        raise EvaluationError("The 'startsWith' filter needs an input and an argument 'value'")
    return java_string(value).startswith(java_string(prefix))


def f_endsWith(value: Any, /, value_: Any = None, **kwargs: Any) -> Any:  # noqa: N802
    """``endsWith(value)``: the string form of the input ends with ``value``."""
    suffix = kwargs.pop("value", value_)
    if value is None or suffix is None:
        raise EvaluationError("The 'endsWith' filter needs an input and an argument 'value'")
    return java_string(value).endswith(java_string(suffix))


def _separator(separator: Any, name: str) -> str:
    if not isinstance(separator, str):
        raise EvaluationError(f"The '{name}' filter expects an argument 'separator'.")
    return separator


def f_substringBefore(value: Any, /, separator: Any = None) -> Any:  # noqa: N802
    """``substringBefore(separator)``: the text before the first separator (all when absent)."""
    if value is None:
        return None
    text, sep = java_string(value), _separator(separator, "substringBefore")
    if text == "":
        return text
    if sep == "":
        return ""
    index = text.find(sep)
    return text if index < 0 else text[:index]


def f_substringAfter(value: Any, /, separator: Any = None) -> Any:  # noqa: N802
    """``substringAfter(separator)``: the text after the first separator (empty when absent)."""
    if value is None:
        return None
    text, sep = java_string(value), _separator(separator, "substringAfter")
    if text == "":
        return text
    index = text.find(sep)
    return "" if index < 0 else text[index + len(sep) :]


def f_substringBeforeLast(value: Any, /, separator: Any = None) -> Any:  # noqa: N802
    """``substringBeforeLast(separator)``: the text before the last separator (all when absent)."""
    if value is None:
        return None
    text, sep = java_string(value), _separator(separator, "substringBeforeLast")
    if text == "" or sep == "":
        return text
    index = text.rfind(sep)
    return text if index < 0 else text[:index]


def f_substringAfterLast(value: Any, /, separator: Any = None) -> Any:  # noqa: N802
    """``substringAfterLast(separator)``: the text after the last separator (empty when absent)."""
    if value is None:
        return None
    text, sep = java_string(value), _separator(separator, "substringAfterLast")
    if text == "":
        return text
    if sep == "":
        return ""
    index = text.rfind(sep)
    if index < 0 or index == len(text) - len(sep):
        return ""
    return text[index + len(sep) :]


def f_slugify(value: Any, /) -> Any:
    """``slugify``: Kestra's slug: whitespace to ``-``, accents and other non-word characters
    removed, ``_`` to ``-``, no repeated/leading/trailing ``-``, lower case."""
    if value is None:
        return None
    text = re.sub(r"[ \t\n\x0b\f\r]", "-", java_string(value))
    text = unicodedata.normalize("NFD", text)
    text = re.sub(r"[^A-Za-z0-9_-]", "", text)
    text = text.replace("_", "-")
    text = re.sub(r"-{2,}", "-", text)
    return text.strip("-").lower()


def f_escapeChar(value: Any, /, type: Any = None) -> Any:  # noqa: A002,N802 (Pebble's argument name)
    """``escapeChar('single'|'double'|'shell')``: escape quotes for embedding in a string."""
    if value is None:
        return None
    if not isinstance(type, str):
        raise EvaluationError("The 'escapeChar' filter expects an argument 'type'.")
    text = java_string(value)
    kind = type.lower()
    if kind == "single":
        return text.replace("'", "\\'")
    if kind == "double":
        return text.replace('"', '\\"')
    if kind == "shell":
        return text.replace("'", "'\\''")
    raise EvaluationError("The 'escapeChar' filter expects the value of 'type' to be either 'single', 'double', or 'shell'.")


def _indent(value: Any, amount: Any, prefix: Any, name: str) -> Any:
    if value is None:
        return None
    text = java_string(value)
    if text == "":
        return text
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise EvaluationError(f"The '{name}' filter expects an integer as argument 'amount'.")
    if amount < 0:
        raise EvaluationError(f"The '{name}' filter expects a positive integer >=0 as argument 'amount'.")
    pad = java_string(prefix)
    newline = next((sep for sep in ("\r\n", "\n\r", "\n", "\r") if sep in text), "\n")
    if name == "nindent":
        text = newline + text
    lines = text.count(newline)
    if lines == 0 or amount == 0 or not pad:
        return text
    limits.check_string_length(len(text) + lines * amount * len(pad), f"{name} result")
    return text.replace(newline, newline + pad * amount)


def f_indent(value: Any, /, amount: Any = None, prefix: Any = " ") -> Any:
    """``indent(amount, prefix=' ')``: indent every line but the first."""
    return _indent(value, amount, prefix, "indent")


def f_nindent(value: Any, /, amount: Any = None, prefix: Any = " ") -> Any:
    """``nindent(amount, prefix=' ')``: start with a newline and indent every line."""
    return _indent(value, amount, prefix, "nindent")


def f_urlencode(value: Any, /) -> Any:
    """``urlencode``: ``application/x-www-form-urlencoded`` UTF-8 (Java ``URLEncoder``)."""
    if value is None:
        return None
    return urllib.parse.quote_plus(java_string(value), safe="*").replace("~", "%7E")


def f_urldecode(value: Any, /) -> Any:
    """``urldecode``: the inverse of ``urlencode`` (``+`` is a space)."""
    if value is None:
        return None
    text = java_string(value)
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise EvaluationError(f"URLDecoder: Illegal hex characters in escape (%) pattern in '{text[:100]}'")
    return urllib.parse.unquote_plus(text, errors="strict")


def f_base64encode(value: Any, /) -> Any:
    """``base64encode``: Base64 of the UTF-8 bytes."""
    if value is None:
        return None
    return base64.b64encode(java_string(value).encode("utf-8")).decode("ascii")


def f_base64decode(value: Any, /) -> Any:
    """``base64decode``: decode Base64 to a UTF-8 string."""
    if value is None:
        return None
    try:
        return base64.b64decode(_string(value, "base64decode"), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"The 'base64decode' filter could not decode its input: {exc}") from exc


def _hash(algorithm: str) -> Callable[[Any], Any]:
    def digest(value: Any, /) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise EvaluationError("Need a string to hash")
        return hashlib.new(algorithm, value.encode("utf-8")).hexdigest()

    digest.__doc__ = f"``{algorithm}``: lower-case hex digest of the UTF-8 bytes."
    return digest


# --- numbers -----------------------------------------------------------------------------------

def f_abs(value: Any, /) -> Any:
    """``abs``: absolute value of a number."""
    if value is None:
        return None
    if not is_number(value):
        raise EvaluationError(f"The 'abs' filter expects a number, not {class_name(value)}")
    return abs(value)


def _decode_integer(text: str, bits: int | None) -> int:
    """Java ``Integer.decode``/``Long.decode``: sign, ``0x``/``#`` hex, leading-``0`` octal."""
    match = re.fullmatch(r"([+-]?)(0[xX][0-9A-Fa-f]+|#[0-9A-Fa-f]+|0[0-7]+|[0-9]+)", text)
    if not match:
        raise EvaluationError(f'For input string: "{text}" is not a valid number')
    sign, digits = match.groups()
    if digits[:2] in ("0x", "0X"):
        number = int(digits[2:], 16)
    elif digits.startswith("#"):
        number = int(digits[1:], 16)
    elif len(digits) > 1 and digits.startswith("0"):
        number = int(digits, 8)
    else:
        number = int(digits)
    number = -number if sign == "-" else number
    if bits == 32 and not JAVA_INT_MIN <= number <= JAVA_INT_MAX:
        raise EvaluationError(f'For input string: "{text}" is out of range for an INT')
    if bits == 64 and not JAVA_LONG_MIN <= number <= JAVA_LONG_MAX:
        raise EvaluationError(f'For input string: "{text}" is out of range for a LONG')
    return number


def _decode_float(text: str) -> float:
    body = text[:-1] if text[-1:] in "fFdD" and not text.lower().endswith("inf") else text
    if not re.fullmatch(r"[+-]?(NaN|Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)", body):
        raise EvaluationError(f'"{text}" is not a valid number')
    return float(body)


def f_number(value: Any, /, type: Any = None) -> Any:  # noqa: A002 (Pebble's argument name)
    """``number(type)``: parse a string as a number (Apache ``NumberUtils``); ``type`` one of
    ``INT``, ``LONG``, ``FLOAT``, ``DOUBLE``, ``BIGDECIMAL``, ``BIGINTEGER``, else guessed as
    ``createNumber`` does (Integer, Long or BigInteger; Float up to 7 decimals, Double up to 16,
    else BigDecimal). ``className`` reports the Java type."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EvaluationError(f"'number' filter can only be applied to String. Actual type was: {class_name(value)}")
    text = value
    if text.strip() == "":
        raise EvaluationError("A blank string is not a valid number")
    kind = type.upper() if isinstance(type, str) else ""
    if kind == "INT":
        return _decode_integer(text, 32)
    if kind == "LONG":
        return JavaLong(_decode_integer(text, 64))
    if kind == "BIGINTEGER":
        return JavaBigInteger(_decode_integer(text, None))
    if kind == "FLOAT":
        return JavaFloat(_decode_float(text))
    if kind == "DOUBLE":
        return _decode_float(text)
    if kind == "BIGDECIMAL":
        _decode_float(text)
        return JavaBigDecimal(text.rstrip("dDfF"))
    if re.fullmatch(r"[+-]?\d+[lL]", text):
        return JavaLong(_decode_integer(text[:-1], 64))
    if re.fullmatch(r"[+-]?(0[xX][0-9A-Fa-f]+|#[0-9A-Fa-f]+|\d+)", text):
        return _sized_integer(_decode_integer(text, None))
    number = _decode_float(text)
    if text[-1:] in "fF":
        return JavaFloat(number)
    if text[-1:] in "dD":
        return number
    mantissa = re.split(r"[eE]", text.lstrip("+-"))[0]
    decimals = len(mantissa.partition(".")[2])
    if decimals <= 7 and number not in (float("inf"), float("-inf")):
        return JavaFloat(number)
    if decimals <= 16:
        return number
    return JavaBigDecimal(text)


def _sized_integer(number: int) -> int:
    if JAVA_INT_MIN <= number <= JAVA_INT_MAX:
        return number
    if JAVA_LONG_MIN <= number <= JAVA_LONG_MAX:
        return JavaLong(number)
    return JavaBigInteger(number)


def f_numberformat(value: Any, /, format: Any = None) -> Any:  # noqa: A002 (Pebble's argument name)
    """``numberformat(pattern)``: Java ``DecimalFormat`` (en_US symbols, HALF_EVEN rounding);
    default ``#,##0.###``. Supports ``0 # , . %`` and literal prefixes/suffixes."""
    if value is None:
        return None
    if not is_number(value):
        raise EvaluationError("The input for the 'NumberFormat' filter has to be a number.")
    return decimal_format(value, "#,##0.###" if format is None else java_string(format))


def decimal_format(number: int | float, pattern: str) -> str:
    """A subset of ``java.text.DecimalFormat`` formatting."""
    positive = pattern.split(";")[0]
    match = re.fullmatch(r"([^#0,.]*)([#0,.]+)([^#0,.]*)", positive)
    if not match or "E" in positive:
        raise EvaluationError(f"Unsupported number format pattern '{pattern}'")
    prefix, body, suffix = (part.replace("'", "") for part in match.groups())
    integer_part, _, fraction_part = body.partition(".")
    grouping = len(integer_part) - integer_part.rfind(",") - 1 if "," in integer_part else 0
    min_integer = integer_part.replace(",", "").count("0")
    min_fraction = fraction_part.count("0")
    max_fraction = len(fraction_part)
    if isinstance(number, float) and (number != number or number in (float("inf"), float("-inf"))):
        return "NaN" if number != number else ("-" if number < 0 else "") + "∞"
    amount = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    if "%" in prefix + suffix:
        amount *= 100
    elif "‰" in prefix + suffix:
        amount *= 1000
    negative = amount < 0
    try:
        amount = abs(amount).quantize(Decimal(1).scaleb(-max_fraction), rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:
        raise EvaluationError(f"Number too large to format: {number}") from exc
    whole, _, fraction = f"{amount:f}".partition(".")
    fraction = fraction.rstrip("0")
    fraction = fraction.ljust(min_fraction, "0")
    whole = whole.lstrip("0")
    whole = whole.rjust(min_integer, "0")
    if grouping and whole:
        groups = []
        while len(whole) > grouping:
            groups.insert(0, whole[-grouping:])
            whole = whole[:-grouping]
        groups.insert(0, whole)
        whole = ",".join(groups)
    if not whole and not fraction:
        whole = "0"
    text = whole + ("." + fraction if fraction else "")
    negative = negative and any(c not in "0.," for c in text)
    return ("-" if negative else "") + prefix + text + suffix


# --- collections -------------------------------------------------------------------------------

def f_length(value: Any, /) -> int:
    """``length``: characters of a string, items of a list or map; null is 0."""
    if value is None:
        return 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value)
    return 0


def f_first(value: Any, /) -> Any:
    """``first``: first item of a list, first character of a string."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise EvaluationError("The 'first' filter was applied to an empty string")
        return value[0]
    if isinstance(value, list | tuple):
        return value[0] if value else None
    raise EvaluationError(f"The 'first' filter expects a list or a string, not {class_name(value)}")


def f_last(value: Any, /) -> Any:
    """``last``: last item of a list, last character of a string."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise EvaluationError("The 'last' filter was applied to an empty string")
        return value[-1]
    if isinstance(value, list | tuple):
        return value[-1] if value else None
    raise EvaluationError(f"The 'last' filter expects a list or a string, not {class_name(value)}")


def f_join(value: Any, /, separator: Any = None) -> Any:
    """``join(separator)``: the items' strings glued with ``separator``."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise EvaluationError("The 'join' filter expects that the input is either a collection or an array.")
    glue = "" if separator is None else java_string(separator)
    total, parts = 0, []
    for index, item in enumerate(value):
        text = java_string(item)
        total += len(text) + (len(glue) if index else 0)
        limits.check_string_length(total, "join result")
        if index % 1000 == 0:
            limits.check_deadline()
        parts.append(text)
    return glue.join(parts)


def f_keys(value: Any, /) -> Any:
    """``keys``: a map's keys, or a list's indexes."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return list(value.keys())
    if isinstance(value, list | tuple):
        return list(range(len(value)))
    raise EvaluationError(f"'keys' filter can only be applied to List, Map, Array. Actual type was: {class_name(value)}")


def f_values(value: Any, /) -> Any:
    """``values``: a map's values."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return list(value.values())
    raise EvaluationError(f"'values' filter can only be applied to Map. Actual type was: {class_name(value)}")


def _sortable(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise EvaluationError(f"The '{name}' filter expects a list, not {class_name(value)}")
    try:
        return sorted(value)
    except TypeError as exc:
        raise EvaluationError(f"The '{name}' filter cannot compare the items of this list: {exc}") from exc


def f_sort(value: Any, /) -> Any:
    """``sort``: ascending natural order."""
    return None if value is None else _sortable(value, "sort")


def f_rsort(value: Any, /) -> Any:
    """``rsort``: descending natural order."""
    return None if value is None else _sortable(value, "rsort")[::-1]


def f_reverse(value: Any, /) -> Any:
    """``reverse``: a list reversed (a string too)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value[::-1]
    if isinstance(value, list | tuple):
        return list(value)[::-1]
    raise EvaluationError(f"The 'reverse' filter expects a list, not {class_name(value)}")


def f_slice(value: Any, /, fromIndex: Any = 0, toIndex: Any = None) -> Any:  # noqa: N803 (Pebble names)
    """``slice(fromIndex, toIndex)``: part of a list or string (``toIndex`` exclusive)."""
    if value is None:
        return None
    start = 0 if fromIndex is None else fromIndex
    if not is_number(start):
        raise EvaluationError(f"Argument fromIndex must be a number. Actual type: {class_name(start)}")
    start = int(start)
    if start < 0:
        raise EvaluationError("fromIndex must be greater than 0")
    if not isinstance(value, list | tuple | str):
        raise EvaluationError(
            f"Slice filter can only be applied to String, List and array inputs. Actual type was: {class_name(value)}"
        )
    end = len(value)
    if toIndex is not None:
        if not is_number(toIndex):
            raise EvaluationError(f"Argument toIndex must be a number. Actual type: {class_name(toIndex)}")
        end = int(toIndex)
        if end > len(value):
            raise EvaluationError(f"toIndex must be smaller than input size: {len(value)}")
        if start >= end:
            raise EvaluationError("toIndex must be greater than fromIndex")
    result = value[start:end]
    return list(result) if isinstance(result, tuple) else result


def f_merge(value: Any, /, items: Any = None) -> Any:
    """``merge(items)``: maps merged (right wins), lists concatenated (a map adds its entries)."""
    if value is None:
        if items is None:
            raise EvaluationError("The two arguments to be merged are null")
        return items
    if items is None:
        return value
    if isinstance(value, Mapping):
        if isinstance(items, Mapping):
            merged = {**value, **items}
        elif isinstance(items, list | tuple):
            merged = dict(value)
            for item in items:
                merged[item] = item
        else:
            raise EvaluationError(f"Currently, only Maps and Lists can be merged with a Map. Arg2: {class_name(items)}")
        limits.check_collection_size(len(merged), "merged map")
        return merged
    if isinstance(value, list | tuple):
        if isinstance(items, Mapping):
            extra: list[Any] = [Entry(key=k, value=v) for k, v in items.items()]
        elif isinstance(items, list | tuple):
            extra = list(items)
        else:
            raise EvaluationError(f"Currently, only Maps and Lists can be merged with a List. Arg2: {class_name(items)}")
        limits.check_collection_size(len(value) + len(extra), "merged list")
        return [*value, *extra]
    raise EvaluationError("The object being filtered is not a Map/List/Array")


def f_chunk(value: Any, /, size: Any = None) -> Any:
    """``chunk(size)``: a list cut into lists of ``size`` items (the last may be shorter)."""
    if value is None:
        return None
    if size is None:
        raise EvaluationError("'chunk' filter expects an argument 'size'.")
    if not isinstance(value, list | tuple):
        raise EvaluationError(f"'chunk' filter can only be applied to List. Actual type was: {class_name(value)}")
    step = _int_arg(size, "size", "chunk")
    if step <= 0:
        raise EvaluationError(f"'chunk' filter expects a size greater than 0, not {step}")
    return [list(value[i : i + step]) for i in range(0, len(value), step)]


def f_flatten(value: Any, /) -> Any:
    """``flatten``: items that are lists are replaced by their items (one level)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise EvaluationError("The 'flatten' filter can only be applied to lists.")
    out: list[Any] = []
    for item in value:
        if isinstance(item, list | tuple):
            out.extend(item)
        else:
            out.append(item)
        limits.check_collection_size(len(out), "flattened list")
    return out


def f_distinct(value: Any, /) -> Any:
    """``distinct``: the list without repeated items (first occurrence kept)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise EvaluationError(f"Input must be a list, but received : {class_name(value)}")
    out: list[Any] = []
    for item in value:
        if not any(type(seen) is type(item) and seen == item for seen in out):
            out.append(item)
        limits.check_deadline()
    return out


def f_default(value: Any, /, default: Any = None) -> Any:
    """``default(value)`` inside ``{% filter %}`` (in expressions it is lazy, see ``lazy.py``)."""
    return default if is_empty(value) else value


# --- JSON, YAML, types ---------------------------------------------------------------------------

def f_toJson(value: Any, /) -> str:  # noqa: N802
    """``toJson`` (and deprecated ``json``): compact JSON text; null gives ``null``."""
    return "null" if value is None else to_json(value)


def f_jq(value: Any, /, expression: Any = None) -> Any:
    """``jq(expression)``: the list of results of a jq program (see ``jq.py``)."""
    return jq.run(value, expression)


def f_className(value: Any, /) -> Any:  # noqa: N802
    """``className``: the Java class Kestra reports (``java.lang.String``, ``java.util.ArrayList``…)."""
    return class_name(value)


def to_yaml(value: Any) -> str:
    """YAML text as Kestra's ``yaml`` filter writes it: block style, lists indented under keys,
    no document marker, no line splitting, minimal quoting."""
    from ruamel.yaml import YAML

    if value is None:
        return "null"
    writer = YAML(typ="rt", pure=True)
    writer.default_flow_style = False
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.width = 1_000_000
    writer.allow_unicode = True
    writer.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    stream = io.StringIO()
    writer.dump(_yaml_ready(value), stream)
    text = stream.getvalue()
    if text.endswith("\n...\n"):
        text = text[: -len("...\n")]
    limits.check_string_length(len(text), "yaml result")
    return text


def _yaml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str | int | float | bool) else k: _yaml_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_ready(v) for v in value]
    return value


def f_yaml(value: Any, /) -> str:
    """``yaml``: the value as YAML text."""
    return to_yaml(value)


def f_toIon(value: Any, /) -> Any:  # noqa: N802
    """``toIon``: not available (no Amazon Ion library here)."""
    raise EvaluationError("The 'toIon' filter is not supported by Kestrel (no Amazon Ion support); use 'toJson'")


# --- dates -------------------------------------------------------------------------------------

def f_date(value: Any, /, format: Any = None, timeZone: Any = None, existingFormat: Any = None, locale: Any = None) -> Any:  # noqa: A002,N803
    """``date(format, timeZone, existingFormat, locale)``: a date formatted with a Java pattern
    (default ``yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX``) in ``timeZone`` (default UTC)."""
    if value is None:
        return None
    dates.check_locale(locale)
    zone = dates.zone_of(timeZone)
    moment = dates.convert(value, zone, existingFormat)
    return dates.format_moment(moment, format, zone)


def f_dateAdd(  # noqa: N802
    value: Any, /, amount: Any = None, unit: Any = None, format: Any = None, timeZone: Any = None,  # noqa: A002,N803
    existingFormat: Any = None, locale: Any = None,  # noqa: N803
) -> Any:
    """``dateAdd(amount, unit, format, timeZone, existingFormat, locale)``: a date plus ``amount``
    ``unit``s (``SECONDS``, ``HOURS``, ``DAYS``, ``MONTHS``… as Java's ``ChronoUnit``), formatted."""
    if value is None:
        return None
    dates.check_locale(locale)
    zone = dates.zone_of(timeZone)
    moment = dates.plus(dates.convert(value, zone, existingFormat), amount, unit)
    return dates.format_moment(moment, format, zone)


def _moment(value: Any, timeZone: Any, existingFormat: Any) -> dates.Moment:  # noqa: N803
    return dates.convert(value, dates.zone_of(timeZone), existingFormat)


def f_timestamp(value: Any, /, timeZone: Any = None, existingFormat: Any = None) -> Any:  # noqa: N803
    """``timestamp``: Unix time in seconds (an integer)."""
    return None if value is None else _moment(value, timeZone, existingFormat).epoch_second()


def f_timestampMilli(value: Any, /, timeZone: Any = None, existingFormat: Any = None) -> Any:  # noqa: N802,N803
    """``timestampMilli``: Unix time in milliseconds (an integer)."""
    if value is None:
        return None
    moment = _moment(value, timeZone, existingFormat)
    return moment.epoch_second() * 1000 + moment.nano // 1_000_000


def f_timestampMicro(value: Any, /, timeZone: Any = None, existingFormat: Any = None) -> Any:  # noqa: N802,N803
    """``timestampMicro``: Unix time in microseconds, as a string (as Kestra returns it)."""
    if value is None:
        return None
    moment = _moment(value, timeZone, existingFormat)
    return str(moment.epoch_second() * 1_000_000 + moment.nano // 1000)


def f_timestampNano(value: Any, /, timeZone: Any = None, existingFormat: Any = None) -> Any:  # noqa: N802,N803
    """``timestampNano``: Unix time in nanoseconds, as a string (as Kestra returns it)."""
    if value is None:
        return None
    moment = _moment(value, timeZone, existingFormat)
    return str(moment.epoch_second() * 1_000_000_000 + moment.nano)


FILTERS: dict[str, Callable[..., Any]] = {
    # Pebble core
    "abbreviate": f_abbreviate,
    "abs": f_abs,
    "base64decode": f_base64decode,
    "base64encode": f_base64encode,
    "capitalize": f_capitalize,
    "date": f_date,
    "default": f_default,
    "first": f_first,
    "join": f_join,
    "last": f_last,
    "length": f_length,
    "lower": f_lower,
    "merge": f_merge,
    "numberformat": f_numberformat,
    "numberFormat": f_numberformat,
    "replace": f_replace,
    "reverse": f_reverse,
    "rsort": f_rsort,
    "sha256": _hash("sha256"),
    "slice": f_slice,
    "sort": f_sort,
    "split": f_split,
    "title": f_title,
    "trim": f_trim,
    "upper": f_upper,
    "urlencode": f_urlencode,
    # Kestra
    "chunk": f_chunk,
    "className": f_className,
    "dateAdd": f_dateAdd,
    "distinct": f_distinct,
    "endsWith": f_endsWith,
    "escapeChar": f_escapeChar,
    "flatten": f_flatten,
    "indent": f_indent,
    "jq": f_jq,
    "json": f_toJson,
    "keys": f_keys,
    "md5": _hash("md5"),
    "nindent": f_nindent,
    "number": f_number,
    "sha1": _hash("sha1"),
    "sha512": _hash("sha512"),
    "slugify": f_slugify,
    "startsWith": f_startsWith,
    "substringAfter": f_substringAfter,
    "substringAfterLast": f_substringAfterLast,
    "substringBefore": f_substringBefore,
    "substringBeforeLast": f_substringBeforeLast,
    "timestamp": f_timestamp,
    "timestampMicro": f_timestampMicro,
    "timestampMilli": f_timestampMilli,
    "timestampNano": f_timestampNano,
    "toIon": f_toIon,
    "toJson": f_toJson,
    "urldecode": f_urldecode,
    "values": f_values,
    "yaml": f_yaml,
}

__all__ = ["FILTERS", "decimal_format", "from_json", "to_yaml"]
