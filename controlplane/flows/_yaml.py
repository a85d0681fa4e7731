"""YAML loading for flow sources: ruamel round-trip nodes (for line numbers) and plain Python.

Kestra reads flows with Jackson's YAML module, which follows YAML 1.2 scalars for the cases that
matter here (``yes``/``on`` stay strings) and never turns an unquoted ``2023-01-01`` into a date:
every property is typed by the field that receives it. ruamel's round-trip loader is YAML 1.2 too;
we only switch its timestamp resolution off so dates stay the text the user wrote.

Known difference: ruamel compares mapping keys as Python values, so one mapping holding both
``1:`` and ``true:`` (equal in Python) is reported as a duplicate key; Jackson would keep both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

# Upper bound on the number of nodes one conversion to plain Python may produce. Aliases are
# shared objects in the loaded tree, so a "billion laughs" document is small on disk but explodes
# when expanded; this stops that before memory does.
MAX_PLAIN_NODES = 1_000_000


class _FlowConstructor(RoundTripConstructor):
    """Round-trip constructor that keeps YAML timestamps as their source text."""


def _timestamp_as_text(constructor: RoundTripConstructor, node: Any) -> str:
    return str(constructor.construct_scalar(node))


_FlowConstructor.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


class YamlSyntaxError(Exception):
    """The source is not valid YAML (or holds several documents).

    Attributes:
        message: What the YAML parser reported, without the source excerpt.
        line: 1-based line of the problem, 0 when unknown.
        column: 1-based column of the problem, 0 when unknown.
    """

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class DocumentTooLargeError(Exception):
    """Expanding the document (aliases included) would exceed ``MAX_PLAIN_NODES`` nodes."""


def load(source: str) -> Any:
    """Load one YAML document into ruamel round-trip nodes.

    Args:
        source: YAML text.

    Returns:
        ``CommentedMap`` / ``CommentedSeq`` / scalars (None for an empty document).

    Raises:
        YamlSyntaxError: Invalid YAML, a duplicate mapping key, or several documents.
    """
    _check_flow_nesting(source)
    yaml = YAML(typ="rt")
    yaml.Constructor = _FlowConstructor
    try:
        return yaml.load(source)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and "duplicate key" not in exc.problem:
            problem = f"{problem} ({exc.context})"
        line = mark.line + 1 if mark is not None else 0
        column = mark.column + 1 if mark is not None else 0
        raise YamlSyntaxError(_clean(problem), line, column) from exc
    except YAMLError as exc:  # pragma: no cover - unmarked errors are rare (e.g. reader errors)
        raise YamlSyntaxError(_clean(str(exc))) from exc
    except RecursionError:
        raise YamlSyntaxError("the document is nested too deeply") from None


#: Most ``[``/``{`` open at once in a document. ruamel's scanner is quadratic in the depth of
#: flow collections (3,000 levels: 20+ s of CPU before its recursion fails), so deeper text is
#: refused before parsing. Counted on the raw text, brackets inside quoted strings included: an
#: upper bound that no real flow comes near.
MAX_FLOW_NESTING = 200


def _check_flow_nesting(source: str) -> None:
    """Raises YamlSyntaxError (with the line) when ``[``/``{`` nest deeper than MAX_FLOW_NESTING."""
    depth = 0
    for index, char in enumerate(source):
        if char in "[{":
            depth += 1
            if depth > MAX_FLOW_NESTING:
                line = source.count("\n", 0, index) + 1
                raise YamlSyntaxError(f"the document is nested too deeply (more than {MAX_FLOW_NESTING} "
                                      "levels of '[' or '{')", line, 0)
        elif char in "]}" and depth:
            depth -= 1


def _clean(text: str) -> str:
    return " ".join(text.split())


def key_line(node: Any, key: Any) -> int:
    """1-based line of ``key`` in a round-trip mapping, or of the mapping itself when unknown."""
    if isinstance(node, CommentedMap):
        try:
            return int(node.lc.key(key)[0]) + 1
        except (KeyError, TypeError, AttributeError):
            return node_line(node)
    return 0


def value_line(node: Any, key: Any) -> int:
    """1-based line of the value of ``key`` in a round-trip mapping (the key's line for null)."""
    if isinstance(node, CommentedMap):
        if node.get(key) is None:
            # A null value has no token of its own: ruamel points at whatever follows.
            return key_line(node, key)
        try:
            return int(node.lc.value(key)[0]) + 1
        except (KeyError, TypeError, AttributeError):
            return key_line(node, key)
    return 0


def item_line(node: Any, index: int) -> int:
    """1-based line of item ``index`` of a round-trip sequence."""
    if isinstance(node, CommentedSeq):
        try:
            return int(node.lc.item(index)[0]) + 1
        except (KeyError, IndexError, TypeError, AttributeError):
            return node_line(node)
    return 0


def node_line(node: Any) -> int:
    """1-based line where a round-trip mapping or sequence starts, 0 for scalars."""
    lc = getattr(node, "lc", None)
    line = getattr(lc, "line", None)
    return int(line) + 1 if isinstance(line, int) else 0


def to_plain(value: Any, budget: list[int] | None = None) -> Any:
    """Convert ruamel round-trip data to plain ``dict`` / ``list`` / ``str`` / ``int`` / ...

    Mapping keys become strings the way Jackson reads them into a ``Map<String, Object>``
    (``1`` -> ``"1"``, ``true`` -> ``"true"``, ``null`` -> ``"null"``). Tagged scalars lose
    their tag and keep their text.

    Args:
        value: A node returned by ``load`` (or any part of it).
        budget: Internal node counter shared by a whole conversion.

    Returns:
        The same data built only from builtin types.

    Raises:
        DocumentTooLargeError: The expanded data exceeds ``MAX_PLAIN_NODES`` nodes, or an alias
            refers to itself.
    """
    if budget is None:
        budget = [MAX_PLAIN_NODES]
    return _plain(value, budget, set())


def _plain(value: Any, budget: list[int], active: set[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise DocumentTooLargeError(
            f"the document expands to more than {MAX_PLAIN_NODES} values (check YAML aliases)"
        )
    if isinstance(value, Mapping):
        marker = id(value)
        if marker in active:
            raise DocumentTooLargeError("a YAML alias refers to the mapping that contains it")
        active.add(marker)
        try:
            return {plain_key(k): _plain(v, budget, active) for k, v in value.items()}
        finally:
            active.discard(marker)
    if isinstance(value, list | tuple):
        marker = id(value)
        if marker in active:
            raise DocumentTooLargeError("a YAML alias refers to the sequence that contains it")
        active.add(marker)
        try:
            return [_plain(v, budget, active) for v in value]
        finally:
            active.discard(marker)
    return plain_scalar(value)


def plain_scalar(value: Any) -> Any:
    """A ruamel scalar as the builtin it stands for (``ScalarInt`` -> ``int``, ...)."""
    if value is None:
        return None
    if isinstance(value, TaggedScalar):
        return str(value.value) if value.value is not None else None
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def plain_key(key: Any) -> str:
    """A mapping key as the string Jackson would use."""
    key = plain_scalar(key)
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, str):
        return key
    return str(key)
