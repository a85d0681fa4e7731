"""Registration-time checks of a flow's expressions (Kestra does not make these; we do).

Every string of the flow source that holds ``{{ }}``, ``{% %}`` or ``{# #}`` is parsed with the
Pebble front end the renderer uses, so a flow is refused at ``flow validate``/``deploy`` — not
at run time — when an expression:

- has a syntax error (unclosed ``{{``, unknown operator, unbalanced brackets…);
- reads ``outputs.X`` / ``outputs['X']`` where no task of the flow has the id ``X``;
- reads ``inputs.X`` where no input ``X`` is declared (dotted input ids count by prefix, as
  Kestra nests them: input ``a.b`` makes ``inputs.a`` valid);
- reads ``vars.X`` where ``variables`` has no key ``X``.

Reading the outputs of a task that cannot have run yet (a later task in the YAML, outside
``errors``/``finally`` and ``Dag``) is a warning, not an error: loops and flowables make the order
only an approximation.

Not checked: ``description`` texts (Kestra does not render them), trigger properties other
than syntax (they render in the trigger's context, which has no outputs or inputs), templates
that rebind ``outputs``/``inputs``/``vars`` with ``set``/``for``/``macro``.

These checks run at registration only, never when a stored revision is loaded, so a flow that
was accepted before a check existed keeps running.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from controlplane.errors import Issue
from controlplane.expressions import preprocess
from controlplane.expressions.errors import LimitError, PebbleSyntaxError
from controlplane.flows import _yaml
from controlplane.flows.catalogue import task_type_info
from controlplane.flows.walk import walk_with_paths
from controlplane.model.flow import Flow

#: Keys whose values Kestra never renders.
_NOT_RENDERED = frozenset({"description"})
_ROOTS = ("outputs", "inputs", "vars")
_HANDLER_KEYS = frozenset({"errors", "finally"})
_NULL_SAFE_OPERATORS = frozenset({"??", "???"})
_GUARD_TESTS = frozenset({"defined", "null", "empty"})
#: Task ids a ForEachItem adds for itself (Kestra's ForEachItem: ``<id>_split``, ``_items``, ``_merge``).
_FOR_EACH_ITEM_SUFFIXES = ("_split", "_items", "_merge")
#: Properties rendered in another execution's context (Subflow ``outputs``: the child's).
_OTHER_CONTEXT = {"io.kestra.plugin.core.flow.Subflow": frozenset({"outputs"})}


@dataclasses.dataclass(frozen=True)
class _Template:
    path: str
    text: str
    line: int
    in_triggers: bool


def check_expressions(flow: Flow) -> tuple[list[Issue], list[Issue]]:
    """Check every expression of ``flow`` (see the module docstring).

    Args:
        flow: A flow returned by ``parse_flow`` (its ``source`` is re-read for paths and lines).

    Returns:
        ``(errors, warnings)``: issues with the YAML path (``tasks[1].message``), a message that
        names the task and property, and the 1-based line of the string.
    """
    try:
        root = _yaml.load(flow.source)
    except _yaml.YamlSyntaxError:  # parse_flow accepted it, so this does not happen
        return [], []
    task_paths = {path: task for path, task in walk_with_paths(flow)}
    order = {task.id: index for index, (_, task) in enumerate(walk_with_paths(flow))}
    task_ids = set(order)
    for task in flow.walk():
        if task.type == "io.kestra.plugin.core.flow.ForEachItem":
            task_ids.update(task.id + suffix for suffix in _FOR_EACH_ITEM_SUFFIXES)
    input_ids = {i.id for i in flow.inputs}
    input_roots = input_ids | {i.split(".", 1)[0] for i in input_ids}
    variables = set(flow.variables)

    errors: list[Issue] = []
    warnings: list[Issue] = []
    for template in _templates(root, "", in_triggers=False):
        owner_path, owner = _owner(template.path, task_paths)
        where = f"task '{owner.id}' property '{template.path[len(owner_path) + 1:]}'" if owner else f"'{template.path}'"
        try:
            parts = preprocess.parse(template.text)
        except PebbleSyntaxError as exc:
            errors.append(Issue(template.path, f"{where}: invalid expression: {exc}", template.line))
            continue
        except LimitError as exc:
            errors.append(Issue(template.path, f"{where}: {exc}", template.line))
            continue
        if template.in_triggers or _rebinds(parts):
            continue
        if owner is not None:
            prop = template.path[len(owner_path) + 1 :].split(".", 1)[0].split("[", 1)[0]
            if prop in _OTHER_CONTEXT.get(owner.type, ()):
                continue
        try:
            references = sorted(set(_references(parts)))
        except RecursionError:
            errors.append(Issue(template.path, f"{where}: expression nested or chained too deeply to check "
                                               "(split it into several steps)", template.line))
            continue
        for root_name, key in references:
            if root_name == "outputs" and key not in task_ids:
                errors.append(Issue(template.path, f"{where} reads outputs of '{key}', which is not a task of this flow{_hint(key, task_ids)}", template.line))
            elif root_name == "inputs" and key not in input_roots:
                errors.append(Issue(template.path, f"{where} reads input '{key}', which the flow does not declare{_hint(key, input_roots)}", template.line))
            elif root_name == "vars" and key not in variables:
                errors.append(Issue(template.path, f"{where} reads variable '{key}', which 'variables' does not define{_hint(key, variables)}", template.line))
            elif (
                root_name == "outputs"
                and owner is not None
                and key != owner.id
                and key in order
                and not any(child.id == key for child in owner.walk())
                and order[key] > order[owner.id]
                and not _in_handler_or_dag(template.path, task_paths)
            ):
                warnings.append(Issue(template.path, f"{where} reads outputs of task '{key}', which comes after it and may not have run yet", template.line))
    return errors, warnings


LENIENT_SUFFIX = " (an error without lenient_expressions)"


def lenient_warning(issue: Issue) -> Issue:
    """The warning an expression error becomes when registering with ``lenient_expressions``."""
    return Issue(issue.path, issue.message + LENIENT_SUFFIX, issue.line, issue.column)


def _templates(node: Any, path: str, *, in_triggers: bool) -> Iterator[_Template]:
    """Every string holding template syntax, with its YAML path and line."""
    if isinstance(node, CommentedMap):
        for key in node:
            name = _yaml.plain_key(key)
            if name in _NOT_RENDERED:
                continue
            child = f"{path}.{name}" if path else str(name)
            value = node[key]
            if isinstance(value, str):
                if _has_template(value):
                    yield _Template(child, value, _yaml.value_line(node, key), in_triggers or child.startswith("triggers"))
            else:
                yield from _templates(value, child, in_triggers=in_triggers or child.startswith("triggers"))
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            child = f"{path}[{index}]"
            if isinstance(value, str):
                if _has_template(value):
                    yield _Template(child, value, _item_line(node, index), in_triggers)
            else:
                yield from _templates(value, child, in_triggers=in_triggers)


def _item_line(seq: CommentedSeq, index: int) -> int:
    try:
        return int(seq.lc.item(index)[0]) + 1
    except (KeyError, TypeError, AttributeError):
        return _yaml.node_line(seq)


def _has_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _prefixes(path: str) -> Iterator[str]:
    """``path`` and each shorter prefix ending before a ``.`` or ``[``, longest first."""
    yield path
    for index in range(len(path) - 1, 0, -1):
        if path[index] in ".[":
            yield path[:index]


def _owner(path: str, task_paths: dict[str, Any]) -> tuple[str, Any]:
    """The innermost task whose path is a prefix of ``path`` (``("", None)`` when none); a dict
    lookup per prefix, so the cost is the path's length, not the number of tasks."""
    for prefix in _prefixes(path):
        task = task_paths.get(prefix)
        if task is not None:
            return prefix, task
    return "", None


def _in_handler_or_dag(path: str, task_paths: dict[str, Any]) -> bool:
    """Whether ``path`` lies in an ``errors``/``finally`` list or inside a ``Dag``."""
    segments = path.replace("[", ".[").split(".")
    if any(segment in _HANDLER_KEYS for segment in segments):
        return True
    for prefix in _prefixes(path):
        task = task_paths.get(prefix)
        info = task_type_info(task.type) if task is not None else None
        if info is not None and info.dag_tasks and prefix != path:
            return True
    return False


def _rebinds(parts: list[Any]) -> bool:
    """Whether a ``set``/``for``/``macro`` tag binds the name ``outputs``, ``inputs`` or ``vars``
    itself (``my_outputs`` does not count)."""
    return any(
        isinstance(part, preprocess.Tag) and part.target is not None
        and any(name in _ROOTS for name in re.findall(r"\w+", part.target))
        for part in parts
    )


def _references(node: Any, guarded: bool = False) -> Iterator[tuple[str, str]]:
    """``(root, key)`` for every ``outputs.X``, ``inputs['X']``, ``vars.X`` in an AST, except
    guarded reads (``x ?? y``, ``x is defined``/``null``/``empty``, ``x | default(y)``), which
    tolerate a missing value on purpose."""
    if isinstance(node, preprocess.GetAttr | preprocess.GetItem) and isinstance(node.obj, preprocess.Name):
        if node.obj.name in _ROOTS and not guarded:
            if isinstance(node, preprocess.GetAttr):
                yield node.obj.name, node.name
            elif isinstance(node.key, preprocess.Literal) and isinstance(node.key.value, str):
                yield node.obj.name, node.key.value
    if isinstance(node, preprocess.Binary) and node.op in _NULL_SAFE_OPERATORS:
        yield from _references(node.left, True)
        yield from _references(node.right, guarded)
    elif isinstance(node, preprocess.Test) and node.name in _GUARD_TESTS:
        yield from _references(node.operand, True)
        yield from _references(node.args, guarded)
    elif isinstance(node, preprocess.Filter) and node.name == "default":
        yield from _references(node.operand, True)
        yield from _references(node.args, guarded)
    elif isinstance(node, preprocess.GetAttr | preprocess.GetItem):
        # ``outputs.x.y``: a guard on the whole chain guards its root read too
        yield from _references(node.obj, guarded)
        if isinstance(node, preprocess.GetItem):
            yield from _references(node.key, False)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _references(item, guarded)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _references(getattr(node, f.name), False)


def _hint(name: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if not known:
        return ""
    listed = ", ".join(sorted(known)[:10]) + (", …" if len(known) > 10 else "")
    return f"; known: {listed}"
