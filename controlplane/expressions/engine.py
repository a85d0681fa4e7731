"""The rendering engine: an immutable sandboxed Jinja2 environment with Pebble semantics.

Rules:
- A string that is exactly one ``{{ expression }}`` keeps the expression's type (int, list, map,
  null), as Kestra's typed rendering does; any other string renders to a string.
- An undefined variable or attribute is an error naming the expression (Kestra fails the task
  run), except where a test or filter asks about definedness (``is defined``, ``default``).
- Lists and maps are rendered recursively; keys of maps are rendered too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from controlplane.errors import ExpressionError

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


def _to_json(value: Any) -> str:
    """Pebble's ``json``/``toJson`` filter: compact JSON text."""
    return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


def _from_json(value: Any) -> Any:
    """Kestra's ``fromJson``/``json()`` function: parse JSON text."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _finalize(value: Any) -> Any:
    """How a value prints inside text, as Pebble/Kestra print it: booleans lower case, null as
    an empty string, maps and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return _to_json(value)
    return value


class _PebbleEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed Jinja2 where ``map.key`` is a key lookup, as in Pebble.

    Jinja tries Python attributes first, so ``outputs.t.values`` would find ``dict.values``;
    Pebble looks the key up. Maps expose only their keys, never methods.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def _build_environment() -> ImmutableSandboxedEnvironment:
    env = _PebbleEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
        finalize=_finalize,
    )
    env.filters["json"] = _to_json
    env.filters["toJson"] = _to_json
    env.globals["fromJson"] = _from_json
    env.globals["json"] = _from_json
    return env


_ENV = _build_environment()


def render_string(template: str, context: Mapping[str, Any], *, where: str = "") -> Any:
    """Render one template string.

    Args:
        template: Text that may contain ``{{ }}`` and ``{% %}``.
        context: Variables (``inputs``, ``outputs``, ``vars``, ``flow``, ``execution``…).
        where: Human description of where the template is (``task 'x' property 'format'``),
            used in error messages.

    Returns:
        The rendered value: the expression's own type when ``template`` is one expression,
        else a string. Text without ``{{``/``{%`` is returned unchanged.

    Raises:
        ExpressionError: syntax error, undefined variable, or a sandbox violation.
    """
    if "{{" not in template and "{%" not in template:
        return template
    try:
        single = _SINGLE_EXPRESSION.match(template)
        if single:
            value = _ENV.compile_expression(single.group("expr"), undefined_to_none=False)(**context)
            if isinstance(value, Undefined):
                str(value)  # raises UndefinedError with the variable's name
            return value
        return _ENV.from_string(template).render(**context)
    except TemplateError as exc:
        place = f" in {where}" if where else ""
        raise ExpressionError(f"cannot render {template!r}{place}: {exc}") from exc
    except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
        place = f" in {where}" if where else ""
        raise ExpressionError(f"cannot render {template!r}{place}: {type(exc).__name__}: {exc}") from exc


def render(value: Any, context: Mapping[str, Any], *, where: str = "") -> Any:
    """Render ``value`` recursively: strings are templates; lists and maps are walked.

    Raises:
        ExpressionError: as :func:`render_string`, with the path of the failing element.
    """
    if isinstance(value, str):
        return render_string(value, context, where=where)
    if isinstance(value, list | tuple):
        return [render(item, context, where=f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {
            str(render(k, context, where=where)): render(v, context, where=f"{where}.{k}" if where else str(k))
            for k, v in value.items()
        }
    return value
