"""Pebble core functions and Kestra's functions.

Functions are called by name (``{{ now() }}``, ``{{ fromJson(inputs.body).id }}``); the
preprocessor emits them as ``__f_<name>`` globals so a variable can never shadow a function.
Functions that need the render context (``render``, ``printContext``, ``currentEachOutput`` and
the service functions such as ``secret``) read it from :mod:`state`.

Functions that need services other issues provide (``secret``, ``kv``, ``read``, ``fileURI``,
``fileSize``, ``errorLogs``, ``encrypt``/``decrypt``, ``fromIon``) are registered as stubs that
raise a clear "not available yet" error; :func:`controlplane.expressions.register_function`
replaces them when the service exists.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from controlplane.expressions import dates, limits, state
from controlplane.expressions.errors import EvaluationError, LimitError
from controlplane.expressions.operators import pebble_range
from controlplane.expressions.values import from_json, is_number, plain, print_value

# Set by the engine: renders a template string with a context (used by ``render()``).
RenderHook = Callable[[str, Mapping[str, Any]], Any]
_render_hook: RenderHook | None = None


def set_render_hook(hook: RenderHook) -> None:
    """Called once by the engine so ``render()`` can render text without a circular import."""
    global _render_hook
    _render_hook = hook


def _context() -> Mapping[str, Any]:
    current = state.current()
    return current.context if current is not None else {}


def fn_range(start: Any, end: Any, increment: Any = 1) -> list[Any]:
    """``range(start, end, increment=1)``: inclusive range of numbers or characters."""
    return pebble_range(start, end, increment)


def _extreme(values: tuple[Any, ...], pick_greater: bool, name: str) -> Any:
    best = None
    for candidate in values:
        if candidate is None:
            continue
        if not is_number(candidate):
            raise EvaluationError(f"invalid operands for mathematical comparison in '{name}': {candidate!r}")
        if best is None or (candidate > best if pick_greater else candidate < best):
            best = candidate
    return best


def fn_max(*values: Any) -> Any:
    """``max(a, b, …)``: the greatest number."""
    return _extreme(values, True, "max")


def fn_min(*values: Any) -> Any:
    """``min(a, b, …)``: the smallest number."""
    return _extreme(values, False, "min")


def fn_now(format: Any = None, timeZone: Any = None, existingFormat: Any = None, locale: Any = None) -> str:  # noqa: A002,N803
    """``now(format, timeZone)``: the current date-time, formatted as the ``date`` filter does."""
    del existingFormat
    dates.check_locale(locale)
    zone = dates.zone_of(timeZone)
    return dates.format_moment(dates.now(zone), format, zone)


def fn_fromJson(json: Any = None) -> Any:  # noqa: N802
    """``fromJson(text)`` (and the deprecated ``json(text)``): parse JSON text; null gives null."""
    return from_json(json)


def fn_json(json: Any = None) -> Any:
    """``json(text)``: deprecated alias of ``fromJson``."""
    return from_json(json, "json")


def _yaml_size(value: Any, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise LimitError(f"the YAML document expands to more than {limits.MAX_COLLECTION_SIZE} values")
    if isinstance(value, Mapping):
        for item in value.values():
            _yaml_size(item, budget)
    elif isinstance(value, list):
        for item in value:
            _yaml_size(item, budget)


@lru_cache(maxsize=1)
def _deadline_composer() -> type:
    """ruamel's composer, checking the render deadline at every node, so that a large document
    (or one of many aliases) stops at the render limit instead of blocking the control plane."""
    from ruamel.yaml.composer import Composer

    class DeadlineComposer(Composer):  # type: ignore[misc]
        def compose_node(self, parent: Any, index: Any) -> Any:
            limits.check_deadline()
            return super().compose_node(parent, index)

    return DeadlineComposer


def fn_yaml(yaml: Any = None) -> Any:
    """``yaml(text)``: parse YAML text (aliases are expanded, within the collection limit)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not isinstance(yaml, str):
        raise EvaluationError("The 'yaml' function expects an argument 'yaml' with type string.")
    limits.check_string_length(len(yaml), "yaml text")
    loader = YAML(typ="safe", pure=True)
    loader.Composer = _deadline_composer()
    try:
        value = loader.load(yaml)
    except (YAMLError, ValueError) as exc:
        raise EvaluationError(f"Invalid yaml: {exc}") from exc
    _yaml_size(value, [limits.MAX_COLLECTION_SIZE])
    return plain(_yaml_json(value))


def _yaml_json(value: Any) -> Any:
    """Dates and other YAML scalars as JSON-like values (ISO strings)."""
    if isinstance(value, Mapping):
        return {(k if isinstance(k, str) else print_value(k)): _yaml_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return print_value(value)


def fn_currentEachOutput(outputs: Any = None) -> Any:  # noqa: N802
    """``currentEachOutput(outputs.t)``: the outputs of task ``t`` for the current iteration of the
    enclosing ``ForEach`` loops: ``outputs.t[parents[-1].taskrun.value]…[taskrun.value]``
    (Kestra walks ``parents`` from the outermost loop inwards)."""
    if not isinstance(outputs, Mapping):
        raise EvaluationError("The 'currentEachOutput' function expects an argument 'outputs' with type map.")
    context = _context()
    parents = context.get("parents") or []
    current: Any = outputs
    for parent in reversed(list(parents)):
        taskrun = parent.get("taskrun") if isinstance(parent, Mapping) else None
        if isinstance(taskrun, Mapping):
            if not isinstance(current, Mapping):
                raise EvaluationError("currentEachOutput(): the outputs are not nested by loop value")
            current = current.get(taskrun.get("value"))
    taskrun = context.get("taskrun")
    if not isinstance(taskrun, Mapping):
        raise EvaluationError("currentEachOutput() needs a task run (taskrun.value) in the context")
    if not isinstance(current, Mapping):
        raise EvaluationError("currentEachOutput(): the outputs are not nested by loop value")
    return current.get(taskrun.get("value"))


def _render_text(value: Any, context: Mapping[str, Any]) -> Any:
    if _render_hook is None:  # pragma: no cover - set by the engine at import
        raise EvaluationError("render() is not available")
    if isinstance(value, str):
        return print_value(_render_hook(value, context))
    if isinstance(value, Mapping):
        return {k: _render_text(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render_text(v, context) for v in value]
    return value


def fn_render(toRender: Any = None, recursive: Any = True) -> Any:  # noqa: N803 (Kestra's names)
    """``render(text, recursive=true)``: render a value that holds expressions (a variable whose
    text is a template, e.g. ``render(vars.x)``) with the current variables; recursively until
    the text stops changing. Strings in maps and lists are rendered too. The result is text."""
    if toRender is None:
        return None
    if not isinstance(recursive, bool):
        raise EvaluationError("The 'render' function expects an optional argument 'recursive' with type boolean.")
    current = state.current()
    if current is not None and current.depth >= limits.MAX_RENDER_DEPTH:
        raise LimitError(f"render() is nested more than {limits.MAX_RENDER_DEPTH} levels deep")
    context = _context()
    result = _render_text(toRender, context)
    rounds = 1
    while recursive and result != toRender:
        if rounds >= limits.MAX_RENDER_ROUNDS:
            raise LimitError(f"render() still changes its text after {limits.MAX_RENDER_ROUNDS} rounds")
        toRender, result = result, _render_text(result, context)
        rounds += 1
    return result


def fn_renderOnce(toRender: Any = None) -> Any:  # noqa: N802,N803
    """``renderOnce(text)``: ``render(text, recursive=false)``."""
    return fn_render(toRender, recursive=False)


def fn_printContext() -> dict[str, Any]:  # noqa: N802
    """``printContext()`` / ``fetchContext()``: all the variables of this render, as a map."""
    return plain(dict(_context()))


def fn_uuid() -> str:
    """``uuid()``: a random UUID (``8-4-4-4-12`` hex)."""
    return str(uuid.uuid4())


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def fn_id() -> str:
    """``id()``: a new unique id as Kestra makes them (a random UUID in base 62, 22 characters)."""
    number = uuid.uuid4().int
    out = []
    while number:
        number, digit = divmod(number, 62)
        out.append(_BASE62[digit])
    return "".join(reversed(out)).rjust(22, "0")


def fn_randomInt(lower: Any = None, upper: Any = None) -> int:  # noqa: N802
    """``randomInt(lower, upper)``: a random integer, ``lower`` included, ``upper`` excluded."""
    for name, value in (("lower", lower), ("upper", upper)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise EvaluationError(f"The 'randomInt()' function expects an argument {name} of type Long.")
    if upper < lower:
        raise EvaluationError("In 'randomInt()' upper is less than lower")
    return lower if upper == lower else random.randrange(lower, upper)


def fn_read(path: Any = None) -> str:
    """``read(uri)``: the text of a ``kestra:///`` internal-storage file of this execution or
    namespace, at most 10 MiB (see :mod:`controlplane.storage.render`)."""
    from controlplane.storage.render import read_file

    return read_file(_context(), path)


def fn_kv(key: Any = None, namespace: Any = None, errorOnMissing: Any = True) -> Any:  # noqa: N803
    """``kv(key, namespace, errorOnMissing=true)``: a value of the namespace KV store, inherited
    from the ancestor namespaces when no namespace is given (see :mod:`controlplane.storage.render`)."""
    from controlplane.storage.render import kv_value

    return kv_value(_context(), key, namespace, errorOnMissing)


def fn_secret(key: Any = None, namespace: Any = None, subkey: Any = None) -> str:
    """``secret(key)``: the secret ``key`` from the control plane's ``SECRET_<KEY>`` base64
    environment variables, as Kestra's open-source edition (``namespace`` is accepted and
    ignored there too). Values are masked in stored logs and errors (:mod:`controlplane.secrets`).

    Raises:
        EvaluationError: no key given, or no such secret.
    """
    from controlplane import secrets

    if not isinstance(key, str) or not key:
        raise EvaluationError("The 'secret' function expects an argument 'key' with type string.")
    try:
        value = secrets.store().get(key)
    except secrets.SecretNotFoundError as exc:
        raise EvaluationError(str(exc)) from None
    if subkey is not None:
        import json

        try:
            value = json.loads(value)[subkey]
        except (ValueError, TypeError, KeyError):
            raise EvaluationError(f"Cannot find secret sub-key '{subkey}' in secret '{key}'.") from None
    return value


def fn_errorLogs() -> list[dict[str, Any]]:  # noqa: N802
    """``errorLogs()``: the ERROR log lines of this execution (see :mod:`controlplane.error_logs`)."""
    from controlplane.error_logs import error_logs

    return error_logs(_context())


def unavailable(name: str, service: str) -> Callable[..., Any]:
    """A stub for a function whose service is not there yet: always a clear error."""

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise EvaluationError(f"The '{name}()' function is not available yet in Kestrel ({service})")

    stub.__doc__ = f"``{name}()``: needs {service}; not available yet."
    return stub


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "range": fn_range,
    "max": fn_max,
    "min": fn_min,
    "now": fn_now,
    "json": fn_json,
    "fromJson": fn_fromJson,
    "yaml": fn_yaml,
    "currentEachOutput": fn_currentEachOutput,
    "render": fn_render,
    "renderOnce": fn_renderOnce,
    "printContext": fn_printContext,
    "fetchContext": fn_printContext,
    "uuid": fn_uuid,
    "id": fn_id,
    "randomInt": fn_randomInt,
    "secret": fn_secret,
    "kv": fn_kv,
    "read": fn_read,
    "fileURI": unavailable("fileURI", "needs namespace files"),
    "fileSize": unavailable("fileSize", "needs internal storage"),
    "errorLogs": fn_errorLogs,
    "encrypt": unavailable("encrypt", "needs a configured encryption key"),
    "decrypt": unavailable("decrypt", "needs a configured encryption key"),
    "fromIon": unavailable("fromIon", "no Amazon Ion support"),
}
