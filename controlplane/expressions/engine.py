"""The rendering engine: Pebble templates run on an immutable sandboxed Jinja2 environment.

Pipeline: the Pebble template is parsed and re-emitted as Jinja source (``preprocess.py``),
compiled once (cached by template text) with lazy operands (``compiler.py``), and run in
:class:`PebbleEnvironment`, whose hooks give Pebble's meaning to attribute and item access, calls
and arithmetic, and enforce the sandbox limits (``limits.py``).

Rules:
- A string that is exactly one ``{{ expression }}`` (surrounded by whitespace at most) keeps the
  expression's type (int, list, map, null), as Kestra's typed rendering does; any other string
  renders to a string (null prints as nothing, booleans as ``true``/``false``, maps and lists as
  JSON).
- An undefined variable, attribute or key is an error naming it ("Unable to find `x`"), except
  under ``??``, ``???``, ``is defined`` and ``| default``. Kestra fails the task run.
- ``map.key`` is a key lookup (never a Python attribute or method); lists take indexes; nothing
  else exposes anything. Only the registered filters, functions and tests exist.
- Values are never re-rendered: an input whose value contains ``{{ 7*7 }}`` renders as that
  text. Only the ``render()`` function renders a string on purpose.
- Lists and maps are rendered recursively by :func:`render`; keys of maps are rendered too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.parser import Parser
from jinja2.runtime import LoopContext, missing
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_context

from controlplane.errors import ExpressionError
from controlplane.expressions import compiler, functions, limits, operators, preprocess, state
from controlplane.expressions.calls import pebble_callable
from controlplane.expressions.errors import EvaluationError, LimitError
from controlplane.expressions.filters import FILTERS
from controlplane.expressions.lazy import LAZY
from controlplane.expressions.tests import TESTS
from controlplane.expressions.values import java_string, plain, print_value, to_bool

_MESSAGE_TEMPLATE_CHARS = 300


class PebbleUndefined(StrictUndefined):
    """An undefined value: any use fails with Pebble's "Unable to find `name`" message."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        if self._undefined_obj is missing or isinstance(self._undefined_obj, Mapping):
            return f"Unable to find `{name}`"
        if self._undefined_obj is None:
            return f"Unable to find `{name}` (the value it is read from is null)"
        return f"Unable to find `{name}` (a {type(self._undefined_obj).__name__} value has no attributes)"


_LOOP_ATTRIBUTES = {"index": "index0", "revindex": "revindex0", "first": "first", "last": "last", "length": "length"}


def _concat_all(*parts: Any) -> str:
    text = ""
    for part in parts:
        text = operators.concat(text, part)
    return text


def _set_variable(namespace: Namespace, name: str, fallback: Any) -> Any:
    """A ``{% set %}`` variable (see ``preprocess``), else what the name means without it."""
    values = object.__getattribute__(namespace, "_Namespace__attrs")
    return values[name] if name in values else fallback


@pass_context
def _variable(context: Any, name: str) -> Any:
    value = context.resolve_or_missing(name)
    return PebbleUndefined(name=name) if value is missing else value


class PebbleEnvironment(ImmutableSandboxedEnvironment):
    """Immutable sandboxed Jinja2 with Pebble's lookups, operators and limits."""

    code_generator_class = compiler.PebbleCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "%", "//", "**"})
    intercepted_unops = frozenset({"-", "+"})

    def __init__(self) -> None:
        super().__init__(
            undefined=PebbleUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=False,
            lstrip_blocks=False,
            finalize=print_value,
            cache_size=0,
        )
        self.filters = {name: pebble_callable("filter", name, f) for name, f in FILTERS.items()}
        self.tests = {name: pebble_callable("test", name, t) for name, t in TESTS.items()}
        self.globals = {
            "__k_bool": to_bool,
            "__k_eq": operators.equals,
            "__k_cmp": operators.compare,
            "__k_concat": _concat_all,
            "__k_contains": operators.contains,
            "__k_in": operators.is_in,
            "__k_iter": operators.iterate,
            "__k_range": operators.pebble_range,
            "__k_var": _variable,
            "__k_namespace": Namespace,
            "__k_setvar": _set_variable,
        }
        for name, func in functions.FUNCTIONS.items():
            self.globals[f"__f_{name}"] = pebble_callable("function", name, func)
        for name in LAZY:
            self.globals[f"{compiler.LAZY_PREFIX}{name}"] = LAZY[name]
        self.pebble_lazy = dict(LAZY)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute``: a map key, a loop property; nothing else."""
        limits.check_deadline()
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()
        if isinstance(obj, Mapping):
            try:
                if attribute in obj:
                    return obj[attribute]
            except TypeError:
                pass
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, LoopContext) and attribute in _LOOP_ATTRIBUTES:
            return getattr(obj, _LOOP_ATTRIBUTES[attribute])
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``obj[key]``: a map key, a list index (``outputs['t-1']``, ``list[0]``)."""
        limits.check_deadline()
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()
        if isinstance(argument, Undefined):
            argument._fail_with_undefined_error()
        if isinstance(obj, Mapping):
            try:
                if argument in obj:
                    return obj[argument]
            except TypeError:
                pass
            return self.undefined(obj=obj, name=java_string(argument))
        if isinstance(obj, list | tuple) and isinstance(argument, int) and not isinstance(argument, bool):
            if 0 <= argument < len(obj):
                return obj[argument]
            return self.undefined(obj=obj, name=str(argument), hint=f"Index {argument} is out of bounds for a list of {len(obj)} items")
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        return self.undefined(obj=obj, name=java_string(argument))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        """A call from a template: functions, macros; checks the deadline."""
        limits.check_deadline()
        if isinstance(__obj, Undefined):
            __obj._fail_with_undefined_error()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """``+ - * / %`` with Pebble's meaning (see ``operators.py``)."""
        return operators.binary(operator, left, right)

    def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
        """Unary ``-``/``+`` with Pebble's meaning."""
        return operators.unary(operator, arg)


ENV = PebbleEnvironment()


@dataclass(frozen=True)
class _Compiled:
    single: bool
    template: Any


def _names() -> preprocess.Names:
    return preprocess.Names(
        functions=frozenset(functions.FUNCTIONS),
        filters=frozenset(ENV.filters),
        tests=frozenset(ENV.tests),
    )


def _compile_expression(source: str) -> Any:
    parser = Parser(ENV, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise EvaluationError(f"internal error: chunk after expression in {source!r}")
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    return ENV.from_string(nodes.Template(body, lineno=1))


@lru_cache(maxsize=4096)
def _compile(template: str) -> _Compiled:
    parts = preprocess.parse(template)
    names = preprocess.with_macros(_names(), parts)
    expr = preprocess.single_expression(parts)
    if expr is not None:
        return _Compiled(True, _compile_expression(preprocess.emit_expression(expr, names)))
    return _Compiled(False, ENV.from_string(preprocess.emit_template(parts, names)))


def _has_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _evaluate(template: str, context: Mapping[str, Any]) -> Any:
    """Render inside the current render state; raises internal errors (not ExpressionError)."""
    if not _has_template(template):
        return template
    compiled = _compile(template)
    jinja_context = compiled.template.new_context(dict(context))
    if compiled.single:
        for _ in compiled.template.root_render_func(jinja_context):
            pass
        return plain(jinja_context.vars["result"])
    pieces: list[str] = []
    total = 0
    for piece in compiled.template.root_render_func(jinja_context):
        total += len(piece)
        limits.check_string_length(total, "rendered text")
        pieces.append(piece)
    return "".join(pieces)


def _render_nested(template: str, context: Mapping[str, Any]) -> Any:
    """``render()``'s way in: a nested render sharing the outer deadline."""
    with state.rendering(context, limits.RENDER_TIMEOUT_SECONDS):
        try:
            return _evaluate(template, context)
        except TemplateError as exc:
            raise EvaluationError(f"in render() of {_shorten(template)}: {exc.message or exc}") from exc


functions.set_render_hook(_render_nested)


def _shorten(template: str) -> str:
    text = repr(template)
    return text if len(text) <= _MESSAGE_TEMPLATE_CHARS else text[:_MESSAGE_TEMPLATE_CHARS] + "…'"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EvaluationError | TemplateError):
        return str(exc.message if isinstance(exc, TemplateError) and exc.message else exc)
    if isinstance(exc, RecursionError):
        return "expression too deeply nested or recursive (recursion limit)"
    if isinstance(exc, MemoryError):
        return "out of memory while rendering"
    return f"{type(exc).__name__}: {exc}"


_log = logging.getLogger(__name__)


def render_string(template: str, context: Mapping[str, Any], *, where: str = "") -> Any:
    """Render one template string.

    Args:
        template: Text that may contain ``{{ }}``, ``{% %}`` and ``{# #}`` (Pebble syntax).
        context: Variables (``inputs``, ``outputs``, ``vars``, ``flow``, ``execution``…).
        where: Human description of where the template is (``task 'x' property 'format'``),
            used in error messages.

    Returns:
        The rendered value: the expression's own type when ``template`` is one expression,
        else a string. Text without ``{{``/``{%``/``{#`` is returned unchanged.

    Raises:
        ExpressionError: syntax error, undefined variable, bad argument, unavailable function,
            or a sandbox limit (the message names the template and ``where``).
    """
    if not isinstance(template, str) or not _has_template(template):
        return template
    try:
        with state.rendering(context, limits.RENDER_TIMEOUT_SECONDS):
            return _evaluate(template, context)
    except ExpressionError:
        raise
    except (TemplateError, EvaluationError, LimitError, ArithmeticError, TypeError, ValueError, LookupError,
            RecursionError, MemoryError, AttributeError) as exc:
        place = f" in {where}" if where else ""
        raise ExpressionError(f"cannot render {_shorten(template)}{place}: {_describe(exc)}") from exc
    except Exception as exc:
        # A template the engine itself mishandles fails its task run with a message; it must
        # never escape into the executor (where it would stall the whole execution).
        _log.exception("expression engine error on %r", template[:200])
        place = f" in {where}" if where else ""
        raise ExpressionError(
            f"cannot render {_shorten(template)}{place}: unsupported expression ({type(exc).__name__}: {exc})"
        ) from exc


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
            _key(render(k, context, where=where)): render(v, context, where=f"{where}.{k}" if where else str(k))
            for k, v in value.items()
        }
    return value


def _key(value: Any) -> str:
    """A rendered map key as text (``true``, ``1``, JSON for a map), as Kestra prints it."""
    return value if isinstance(value, str) else print_value(value)


def register_function(name: str, func: Callable[..., Any], *, needs_context: bool = False) -> None:
    """Add or replace a template function (e.g. ``secret`` once the secrets service exists).

    Args:
        name: The Pebble name (``secret``).
        func: The implementation. Raise :class:`controlplane.expressions.errors.EvaluationError`
            for errors a user can cause; the engine adds the template and place.
        needs_context: Pass the render variables (a read-only mapping: ``flow``, ``execution``,
            ``taskrun``…) as the first argument.
    """
    if not name.isidentifier() or name.startswith("__"):
        raise ValueError(f"invalid function name {name!r}")
    implementation = func
    if needs_context:

        def implementation(*args: Any, **kwargs: Any) -> Any:
            return func(current_context(), *args, **kwargs)

    functions.FUNCTIONS[name] = implementation
    ENV.globals[f"__f_{name}"] = pebble_callable("function", name, func if not needs_context else implementation)
    _compile.cache_clear()


def current_context() -> Mapping[str, Any]:
    """The variables of the render in progress (empty outside a render)."""
    current = state.current()
    return current.context if current is not None else {}
