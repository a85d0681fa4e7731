"""Kestra flow YAML -> ``controlplane.model.Flow``, with every problem reported at once.

Reference: conformance/kestra/FEATURES.md §1 (flow document), §2 (common task properties), §3
(task catalogue), §8 (inputs), and Kestra's ``FlowValidator`` (duplicate task/trigger/input/
output ids, recursive subflow calls, system labels) plus the per-task validators it runs on save
(Switch, WorkingDirectory, Dag, ``@NotEmpty`` child lists, unknown properties).

Representation choices (documented for the engine):
    - ``Task.type`` is canonical (legacy aliases resolved), ``Task.written_type`` as written.
    - Child task lists of a flowable go to ``Task.subtasks`` under their YAML key (``tasks``,
      ``errors``, ``finally``, ``then``, ``else``, ``defaults``) and Switch cases under
      ``cases.<key>`` (YAML int keys use their string form). A key is present when it was written
      and not null.
    - Dag: ``subtasks["tasks"]`` holds the inner ``task`` of each item, in YAML order; each child
      carries its item's ``dependsOn`` in ``properties["dependsOn"]`` (a list of task ids, empty
      when none was written).
    - ``timeout`` becomes seconds in ``Task.timeout``; an expression (``"{{ inputs.t }}"``) is
      kept as written in ``properties["timeout"]`` with ``Task.timeout`` None, to be rendered
      at run time.
    - ``workerGroup.key`` goes to ``Task.worker_group`` (Kestra OSS refuses worker groups, an
      Enterprise feature; Kestrel accepts the key for its own routing later).
    - ``logToFile`` and any other key stay in ``properties`` as plain Python.
    - Flow ``listeners`` (deprecated in Kestra, removed in later versions) are refused with a
      clear message rather than ignored; ``revision`` and ``deleted`` are server-managed and
      ignored; ``pluginDefaults`` then ``taskDefaults`` (deprecated alias) are kept, concatenated,
      in ``Flow.plugin_defaults``; ``sla`` in ``Flow.sla``.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from controlplane.engine import retry as retry_rules
from controlplane.engine import sla as sla_rules
from controlplane.errors import FlowValidationError, Issue
from controlplane.flows import _yaml, for_each_item
from controlplane.flows.catalogue import (
    COMMON_TASK_PROPERTIES,
    TaskKind,
    TaskTypeInfo,
    canonical_type,
    is_flowable,
    task_type_info,
)
from controlplane.flows.durations import check_seconds, parse_duration
from controlplane.flows.inputs import (
    COMMON_INPUT_PROPERTIES,
    INPUT_TYPE_PROPERTIES,
    INPUT_TYPES,
    UNSUPPORTED_INPUT_TYPES,
    InputValueError,
    check_declaration,
    coerce_value,
)
from controlplane.model.flow import Flow, Input, Output, Task

FLOW_ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]*")
#: Dotted parts, each starting with a letter or digit (so a part can never be `_files`, the
#: namespace-files folder of internal storage).
NAMESPACE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9][a-z0-9_-]*)*")
TASK_ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
TASK_ID_MAX = 100
#: Most tasks one flow may hold, and most problems one validation reports.
MAX_TASKS = 5000
MAX_ISSUES = 500
#: Largest flow source accepted (UTF-8 bytes). Parsing costs up to ~8 s per MiB for the worst
#: shapes (tens of thousands of keys or list items), so the size is bounded before parsing.
MAX_SOURCE_BYTES = 512 * 1024
INPUT_ID_PATTERN = re.compile(r"[a-zA-Z0-9][.a-zA-Z0-9_-]*")
FLOW_ID_MAX = 100
NAMESPACE_MAX = 150

#: Top-level keys of a flow document (Kestra's ``Flow``; ``finally`` from later versions).
FLOW_PROPERTIES: tuple[str, ...] = (
    "id",
    "namespace",
    "revision",
    "description",
    "labels",
    "inputs",
    "outputs",
    "variables",
    "tasks",
    "errors",
    "finally",
    "triggers",
    "pluginDefaults",
    "taskDefaults",
    "concurrency",
    "retry",
    "sla",
    "disabled",
    "deleted",
)

#: Keys Kestra knows that Kestrel refuses, with the reason shown to the user.
UNSUPPORTED_FLOW_PROPERTIES: dict[str, str] = {
    "listeners": (
        "'listeners' (deprecated in Kestra) is not supported by Kestrel; use the flow's 'errors' "
        "tasks or a Flow trigger in another flow"
    ),
}

LOG_LEVELS: tuple[str, ...] = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
RETRY_TYPES: tuple[str, ...] = ("constant", "exponential", "random")
CONCURRENCY_BEHAVIORS: tuple[str, ...] = ("QUEUE", "CANCEL", "FAIL")
#: System labels a flow may set itself (Kestra's FlowValidator allows only this one).
ALLOWED_SYSTEM_LABELS: frozenset[str] = frozenset({"system.readOnly"})


def parse_flow(source: str) -> Flow:
    """Parse and validate a Kestra flow written in YAML.

    Args:
        source: The flow's YAML text.

    Returns:
        The flow, ``revision`` 0 (revisions are assigned by the registry), ``source`` set to
        ``source``. See the module docstring for how tasks are represented.

    Raises:
        FlowValidationError: The source is larger than ``MAX_SOURCE_BYTES``, is not valid YAML
            or breaks any rule; ``issues`` lists
            every problem found (not just the first), each with a dotted path, a message naming
            the task and field, and the 1-based YAML line. ``flow_ref`` is ``namespace.id`` when
            both could be read.
        TypeError: ``source`` is not a string.
    """
    if not isinstance(source, str):
        raise TypeError(f"parse_flow expects YAML text, not {type(source).__name__}")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise FlowValidationError(
            [Issue("", f"the flow source is {size} bytes, more than the limit of {MAX_SOURCE_BYTES} bytes; "
                   "move large scripts or data to namespace files or subflows")]
        )
    try:
        root = _yaml.load(source)
    except _yaml.YamlSyntaxError as exc:
        raise FlowValidationError([Issue("", f"invalid YAML: {exc.message}", exc.line, exc.column)]) from None
    return _FlowParser(source).parse(root)


def default_matches(default_type: str, written: str | None, canonical: str | None) -> bool:
    """Whether a plugin default of ``default_type`` applies to a task of this type (exact type,
    legacy alias, or dotted prefix such as ``io.kestra.plugin.core.log``)."""
    names = {n for n in (written, canonical) if n}
    if not names:
        return False
    if default_type in names or canonical_type(default_type) == canonical:
        return True
    return any(name.startswith(default_type + ".") for name in names)


def _merge_default(node: CommentedMap, values: CommentedMap, forced: bool, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Merge ``values`` into ``node`` in place: missing keys are added; where both hold a map the
    maps are merged; otherwise the node's value stays, unless ``forced``. ``id``, ``type`` and
    the keys in ``skip`` are never taken from a default."""
    for key, value in values.items():
        if key in ("id", "type") or key in skip:
            continue
        current = node.get(key)
        if isinstance(current, CommentedMap) and isinstance(value, CommentedMap):
            _merge_default(current, value, forced)
        elif key not in node or current is None or forced:
            node[key] = copy.deepcopy(value)


class _FlowParser:
    """One parse: collects issues while building the model."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[Issue] = []
        self.task_ids: dict[str, int] = {}
        self.flow_id: str | None = None
        self.namespace: str | None = None
        self.budget = [_yaml.MAX_PLAIN_NODES]
        self.tasks_seen = 0
        #: ``(type, values node, forced)`` of each plugin default, in declaration order.
        self.defaults: list[tuple[str, CommentedMap, bool]] = []

    # --- helpers ----------------------------------------------------------------------------

    def issue(self, path: str, message: str, line: int = 0) -> None:
        self.issues.append(Issue(path=path, message=message, line=line))
        if len(self.issues) >= MAX_ISSUES:
            raise _yaml.DocumentTooLargeError(
                f"more than {MAX_ISSUES} problems: fix these first (the rest was not checked)"
            )

    def plain(self, value: Any) -> Any:
        return _yaml.to_plain(value, self.budget)

    def string(
        self, node: CommentedMap, key: str, path: str, what: str, required: bool = False
    ) -> str | None:
        """A string field; ints are accepted and stringified (Jackson coerces scalars)."""
        if key not in node or node[key] is None:
            if required:
                self.issue(path, f"{what}'{key}' is required", _yaml.node_line(node))
            return None
        value = _yaml.plain_scalar(node[key])
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        self.issue(path, f"{what}'{key}' must be a string, not {_kind(value)}", _yaml.value_line(node, key))
        return None

    def boolean(self, node: CommentedMap, key: str, path: str, what: str, default: bool = False) -> bool:
        if key not in node or node[key] is None:
            return default
        value = _yaml.plain_scalar(node[key])
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.issue(
            path, f"{what}'{key}' must be true or false, not {_shown(value)}", _yaml.value_line(node, key)
        )
        return default

    def sequence(self, node: CommentedMap, key: str, path: str, what: str) -> CommentedSeq | None:
        """A list field (None when absent or null; an issue when not a list)."""
        if key not in node or node[key] is None:
            return None
        value = node[key]
        if not isinstance(value, CommentedSeq):
            self.issue(path, f"{what}'{key}' must be a list, not {_kind(value)}", _yaml.value_line(node, key))
            return None
        return value

    def mapping(self, node: CommentedMap, key: str, path: str, what: str) -> CommentedMap | None:
        if key not in node or node[key] is None:
            return None
        value = node[key]
        if not isinstance(value, CommentedMap):
            self.issue(
                path, f"{what}'{key}' must be a mapping, not {_kind(value)}", _yaml.value_line(node, key)
            )
            return None
        return value

    # --- flow -------------------------------------------------------------------------------

    def parse(self, root: Any) -> Flow:
        if root is None:
            raise FlowValidationError(
                [Issue("", "the flow source is empty: a flow needs 'id', 'namespace' and 'tasks'", 1)]
            )
        if not isinstance(root, CommentedMap):
            raise FlowValidationError(
                [Issue("", f"a flow must be a YAML mapping (id, namespace, tasks...), not {_kind(root)}", 1)]
            )
        try:
            flow = self._flow(root)
        except _yaml.DocumentTooLargeError as exc:
            self.issues.append(Issue(path="", message=str(exc), line=0))  # not self.issue: no limit here
            flow = None
        ref = f"{self.namespace}.{self.flow_id}" if self.namespace and self.flow_id else ""
        if self.issues or flow is None:
            ordered = sorted(self.issues, key=lambda i: i.line)
            raise FlowValidationError(ordered, flow_ref=ref)
        return flow

    def _flow(self, root: CommentedMap) -> Flow | None:
        for key in root:
            name = _yaml.plain_key(key)
            if name in FLOW_PROPERTIES:
                continue
            line = _yaml.key_line(root, key)
            if name in UNSUPPORTED_FLOW_PROPERTIES:
                self.issue(name, UNSUPPORTED_FLOW_PROPERTIES[name], line)
                continue
            close = difflib.get_close_matches(name, FLOW_PROPERTIES, n=1, cutoff=0.75)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.issue(
                name, f"unknown property '{name}'{hint}; a flow accepts: {', '.join(FLOW_PROPERTIES)}", line
            )

        self.flow_id = self._identifier(
            root,
            "id",
            FLOW_ID_PATTERN,
            FLOW_ID_MAX,
            "flow id",
            "letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
        self.namespace = self._identifier(
            root,
            "namespace",
            NAMESPACE_PATTERN,
            NAMESPACE_MAX,
            "namespace",
            "dot-separated parts of lower-case letters, digits, '_' or '-', each starting with a letter or digit",
        )
        description = self.string(root, "description", "description", "")
        labels = self._labels(root)
        inputs = self._inputs(root)
        outputs = self._outputs(root)
        variables = self._variables(root)

        # Plugin defaults first: they are merged into the task nodes before the tasks are read.
        plugin_defaults = self._plugin_defaults(root, "pluginDefaults") + self._plugin_defaults(
            root, "taskDefaults"
        )
        tasks = self._task_list(root, "tasks", "tasks", required=True)
        errors = self._task_list(root, "errors", "errors")
        finally_ = self._task_list(root, "finally", "finally")

        triggers = self._triggers(root)
        concurrency = self._concurrency(root)
        retry = self._retry(root, "retry", "retry", "")
        sla = self._sla(root)
        disabled = self.boolean(root, "disabled", "disabled", "")

        if self.issues or self.flow_id is None or self.namespace is None:
            return None
        return Flow(
            id=self.flow_id,
            namespace=self.namespace,
            tasks=tasks,
            description=description,
            labels=labels,
            inputs=inputs,
            outputs=outputs,
            variables=variables,
            errors=errors,
            finally_=finally_,
            triggers=triggers,
            retry=retry,
            concurrency=concurrency,
            disabled=disabled,
            plugin_defaults=plugin_defaults,
            source=self.source,
            sla=sla,
        )

    def _identifier(
        self, root: CommentedMap, key: str, pattern: re.Pattern[str], max_len: int, what: str, rule: str
    ) -> str | None:
        value = self.string(root, key, key, "", required=True)
        if value is None:
            return None
        line = _yaml.value_line(root, key)
        if not pattern.fullmatch(value):
            self.issue(key, f"'{value}' is not a valid {what}: use {rule}", line)
            return None
        if len(value) > max_len:
            self.issue(
                key, f"the {what} is {len(value)} characters long; at most {max_len} are allowed", line
            )
            return None
        return value

    def _labels(self, root: CommentedMap) -> dict[str, str]:
        node = root.get("labels")
        if node is None:
            return {}
        pairs: list[tuple[str, Any, str, int]] = []
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                name = _yaml.plain_key(key)
                pairs.append((name, value, f"labels.{name}", _yaml.key_line(node, key)))
        elif isinstance(node, CommentedSeq):
            for index, item in enumerate(node):
                path = f"labels[{index}]"
                line = _yaml.item_line(node, index)
                if not isinstance(item, CommentedMap) or "key" not in item:
                    self.issue(path, "a label in list form must be a mapping {key, value}", line)
                    continue
                extra = [k for k in item if k not in ("key", "value")]
                if extra:
                    self.issue(
                        path, f"unknown property '{extra[0]}' in a label (only 'key' and 'value')", line
                    )
                pairs.append((_label_text(item.get("key")), item.get("value"), path, line))
        else:
            self.issue(
                "labels",
                f"'labels' must be a map or a list of {{key, value}}, not {_kind(node)}",
                _yaml.value_line(root, "labels"),
            )
            return {}
        labels: dict[str, str] = {}
        for name, value, path, line in pairs:
            if value is None:
                self.issue(path, f"label '{name}' has no value", line)
                continue
            if isinstance(value, CommentedMap | CommentedSeq):
                self.issue(path, f"label '{name}' must have a scalar value, not {_kind(value)}", line)
                continue
            text = _label_text(value)
            if name.startswith("system.") and name not in ALLOWED_SYSTEM_LABELS:
                self.issue(
                    path,
                    f"System labels can only be set by Kestra itself, offending label: {name}={text}",
                    line,
                )
                continue
            labels[name] = text
        return labels

    def _variables(self, root: CommentedMap) -> dict[str, Any]:
        node = self.mapping(root, "variables", "variables", "")
        return self.plain(node) if node is not None else {}

    # --- inputs / outputs -------------------------------------------------------------------

    def _inputs(self, root: CommentedMap) -> tuple[Input, ...]:
        seq = self.sequence(root, "inputs", "inputs", "")
        if seq is None:
            return ()
        result: list[Input] = []
        seen: dict[str, int] = {}
        depends: dict[str, tuple[list[str], str, int]] = {}
        for index, node in enumerate(seq):
            path = f"inputs[{index}]"
            line = _yaml.item_line(seq, index)
            if not isinstance(node, CommentedMap):
                self.issue(path, f"an input must be a mapping with 'id' and 'type', not {_kind(node)}", line)
                continue
            line = _yaml.node_line(node) or line
            parsed = self._input(node, path, line, seen)
            if parsed is None:
                continue
            result.append(parsed)
            deps = parsed.extra.get("dependsOn")
            if isinstance(deps, dict) and isinstance(deps.get("inputs"), list):
                depends[parsed.id] = ([str(d) for d in deps["inputs"]], f"{path}.dependsOn", line)
        self._check_input_nesting(result, seq)
        self._check_input_dependencies(depends, {i.id for i in result})
        return tuple(result)

    def _input(self, node: CommentedMap, path: str, line: int, seen: dict[str, int]) -> Input | None:
        ident = self.string(node, "id", f"{path}.id", "input: ")
        alias = self.string(node, "name", f"{path}.name", "input: ")
        if ident is None and alias is None and node.get("id") is None and node.get("name") is None:
            self.issue(f"{path}.id", "input: 'id' is required", line)
            return None
        if ident is not None and alias is not None and ident != alias:
            self.issue(
                f"{path}.name",
                f"input '{ident}': 'name' (deprecated alias of 'id') differs from 'id'",
                _yaml.value_line(node, "name"),
            )
        ident = ident if ident is not None else alias
        if ident is None:
            return None
        what = f"input '{ident}': "
        id_key = "id" if "id" in node else "name"
        ok = True
        if not INPUT_ID_PATTERN.fullmatch(ident):
            self.issue(
                f"{path}.{id_key}",
                f"{what}not a valid input id: use letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
                _yaml.value_line(node, id_key),
            )
            ok = False
        elif ident in seen:
            self.issue(
                f"{path}.{id_key}",
                f"duplicate input id '{ident}' (first at line {seen[ident]})",
                _yaml.value_line(node, id_key),
            )
            ok = False
        else:
            seen[ident] = line
        kind = self.string(node, "type", f"{path}.type", what, required=True)
        if kind is not None and kind not in INPUT_TYPES:
            upper = kind.upper()
            hint = f" (did you mean '{upper}'?)" if upper in INPUT_TYPES else ""
            self.issue(
                f"{path}.type",
                f"{what}invalid type '{kind}'{hint}; one of {', '.join(INPUT_TYPES)}",
                _yaml.value_line(node, "type"),
            )
            kind = None
        required = self.boolean(node, "required", f"{path}.required", what, default=True)
        description = self.string(node, "description", f"{path}.description", what)
        defaults = self.plain(node.get("defaults"))
        extra: dict[str, Any] = {}
        for key, value in node.items():
            name = _yaml.plain_key(key)
            if name in ("id", "name", "type", "required", "description", "defaults"):
                continue
            if kind is not None and name not in COMMON_INPUT_PROPERTIES | INPUT_TYPE_PROPERTIES[kind]:
                allowed = sorted(COMMON_INPUT_PROPERTIES | INPUT_TYPE_PROPERTIES[kind])
                self.issue(
                    f"{path}.{name}",
                    f"{what}unknown property '{name}' for a {kind} input (known: {', '.join(allowed)})",
                    _yaml.key_line(node, key),
                )
                ok = False
                continue
            extra[name] = self.plain(value)
        if kind is None or not ok:
            return None
        declared = Input(
            id=ident,
            type=kind,
            required=required,
            defaults=defaults,
            description=description,
            extra=extra,
            line=line,
        )
        problems = check_declaration(declared)
        for field_name, message in problems:
            field_line = _yaml.value_line(node, field_name) if field_name in node else line
            self.issue(f"{path}.{field_name}", what + message, field_line)
        if not problems:
            self._check_default(declared, node, path, what)
        return declared

    def _check_default(self, declared: Input, node: CommentedMap, path: str, what: str) -> None:
        """A default must be a valid value of its input (else every run without the input
        would fail); an expression default is checked when an execution renders it."""
        value = declared.defaults
        if value is None or declared.type in UNSUPPORTED_INPUT_TYPES:
            return
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            return
        try:
            coerce_value(declared, value)
        except InputValueError as exc:
            self.issue(f"{path}.defaults", f"{what}invalid default: {exc.reason}", _yaml.value_line(node, "defaults"))
        except (ValueError, OverflowError, TypeError, RecursionError) as exc:
            self.issue(f"{path}.defaults", f"{what}invalid default: {exc}", _yaml.value_line(node, "defaults"))

    def _check_input_nesting(self, inputs: list[Input], seq: CommentedSeq) -> None:
        ids = {i.id: i for i in inputs}
        for declared in inputs:
            parts = declared.id.split(".")
            for cut in range(1, len(parts)):
                prefix = ".".join(parts[:cut])
                if prefix in ids:
                    self.issue(
                        f"inputs.{declared.id}",
                        f"input '{declared.id}' nests under input '{prefix}' "
                        f"(line {ids[prefix].line}): dotted ids build nested maps, so both cannot exist",
                        declared.line,
                    )
                    break

    def _check_graph(
        self,
        edges: dict[str, tuple[list[str], str, int]],
        ids: set[str],
        missing: Callable[[str, str], str],
        cycle_message: Callable[[list[str]], str],
    ) -> None:
        """Dependencies (input ``dependsOn``, Dag ``dependsOn``): each must exist, no cycle.

        ``edges`` maps a node to (its dependencies, YAML path, line) for the messages.
        """
        graph: dict[str, list[str]] = {}
        for node, (deps, path, line) in edges.items():
            for dep in deps:
                if dep not in ids:
                    self.issue(path, missing(node, dep), line)
            graph[node] = [d for d in deps if d in ids]
        cycle = _find_cycle(graph)
        if cycle:
            _, path, line = edges[cycle[0]]
            self.issue(path, cycle_message(cycle), line)

    def _check_input_dependencies(
        self, depends: dict[str, tuple[list[str], str, int]], ids: set[str]
    ) -> None:
        self._check_graph(
            depends,
            ids,
            lambda ident, dep: f"Input with id '{ident}' depends on a non-existent input '{dep}'",
            lambda cycle: f"Cycle dependency detected for input with id '{cycle[0]}': [{', '.join(cycle)}]",
        )

    def _outputs(self, root: CommentedMap) -> tuple[Output, ...]:
        seq = self.sequence(root, "outputs", "outputs", "")
        if seq is None:
            return ()
        result: list[Output] = []
        seen: dict[str, int] = {}
        for index, node in enumerate(seq):
            path = f"outputs[{index}]"
            line = _yaml.item_line(seq, index)
            if not isinstance(node, CommentedMap):
                self.issue(
                    path,
                    f"an output must be a mapping with 'id', 'type' and 'value', not {_kind(node)}",
                    line,
                )
                continue
            line = _yaml.node_line(node) or line
            ident = self.string(node, "id", f"{path}.id", "output: ", required=True)
            what = f"output '{ident}': " if ident else "output: "
            ok = ident is not None
            if ident is not None:
                if not INPUT_ID_PATTERN.fullmatch(ident):
                    self.issue(
                        f"{path}.id",
                        f"{what}not a valid output id: use letters, digits, '.', '_' or '-'",
                        _yaml.value_line(node, "id"),
                    )
                    ok = False
                elif ident in seen:
                    self.issue(
                        f"{path}.id",
                        f"duplicate output id '{ident}' (first at line {seen[ident]})",
                        _yaml.value_line(node, "id"),
                    )
                    ok = False
                else:
                    seen[ident] = line
            kind = self.string(node, "type", f"{path}.type", what, required=True)
            if kind is not None and kind not in INPUT_TYPES:
                self.issue(
                    f"{path}.type",
                    f"{what}invalid type '{kind}'; one of {', '.join(INPUT_TYPES)}",
                    _yaml.value_line(node, "type"),
                )
                ok = False
            if node.get("value") is None:
                self.issue(f"{path}.value", f"{what}'value' is required", line)
                ok = False
            description = self.string(node, "description", f"{path}.description", what)
            for key in node:
                name = _yaml.plain_key(key)
                if name not in ("id", "type", "value", "description", "displayName", "required"):
                    self.issue(
                        f"{path}.{name}",
                        f"{what}unknown property '{name}' (known: id, type, value, "
                        "description, displayName, required)",
                        _yaml.key_line(node, key),
                    )
                    ok = False
            if ok and ident is not None and kind is not None:
                result.append(
                    Output(
                        id=ident,
                        type=kind,
                        value=self.plain(node["value"]),
                        description=description,
                        line=line,
                    )
                )
        return tuple(result)

    # --- tasks ------------------------------------------------------------------------------

    def _task_list(
        self, node: CommentedMap, key: str, path: str, what: str = "", required: bool = False
    ) -> tuple[Task, ...]:
        seq = self.sequence(node, key, path, what)
        if not seq:
            written_but_not_a_list = node.get(key) is not None and seq is None
            if required and not written_but_not_a_list:
                if node.get(key) is None:
                    line = _yaml.key_line(node, key) if key in node else _yaml.node_line(node) or 1
                    self.issue(path, f"{what}'{key}' is required: give at least one task", line)
                else:
                    self.issue(
                        path,
                        f"{what}'{key}' must not be empty: give at least one task",
                        _yaml.value_line(node, key),
                    )
            return ()
        tasks: list[Task] = []
        for index, item in enumerate(seq):
            task = self._task(item, f"{path}[{index}]", _yaml.item_line(seq, index))
            if task is not None:
                tasks.append(task)
        return tuple(tasks)

    def _task(
        self, node: Any, path: str, line: int, extra_properties: dict[str, Any] | None = None
    ) -> Task | None:
        self.tasks_seen += 1
        if self.tasks_seen > MAX_TASKS:
            # YAML aliases can make a small file describe millions of tasks.
            raise _yaml.DocumentTooLargeError(
                f"the flow has more than {MAX_TASKS} tasks (YAML aliases included); split it into subflows"
            )
        if not isinstance(node, CommentedMap):
            self.issue(path, f"a task must be a mapping with 'id' and 'type', not {_kind(node)}", line)
            return None
        line = _yaml.node_line(node) or line
        raw_type = _yaml.plain_scalar(node.get("type"))
        task_id = self._task_id(node, path, line, raw_type if isinstance(raw_type, str) else None)
        what = f"task '{task_id}': " if task_id else ""
        written = self.string(node, "type", f"{path}.type", what, required=True)
        canonical = canonical_type(written) if written else None
        info = task_type_info(canonical) if canonical else None
        if self.defaults:
            self._apply_plugin_defaults(node, written, canonical)

        description = self.string(node, "description", f"{path}.description", what)
        disabled = self.boolean(node, "disabled", f"{path}.disabled", what)
        allow_failure = self.boolean(node, "allowFailure", f"{path}.allowFailure", what)
        allow_warning = self.boolean(node, "allowWarning", f"{path}.allowWarning", what)
        self.boolean(node, "logToFile", f"{path}.logToFile", what)
        run_if = self._run_if(node, path, what)
        log_level = self._log_level(node, path, what)
        worker_group = self._worker_group(node, path, what)
        retry = self._retry(node, "retry", f"{path}.retry", what)
        timeout, timeout_expr = self._timeout(node, path, what)

        consumed = set(COMMON_TASK_PROPERTIES) - {"logToFile"}
        subtasks: dict[str, tuple[Task, ...]] = {}
        if info is not None and info.kind is TaskKind.FLOWABLE:
            consumed |= set(info.child_keys)
            subtasks = self._children(node, path, what, info, task_id)
        if info is not None and info.executable:
            self._check_recursion(node, path, what)

        properties: dict[str, Any] = {}
        known = info.known_properties() if info is not None else None
        for key, value in node.items():
            name = _yaml.plain_key(key)
            if name in consumed:
                continue
            if known is not None and name not in known:
                allowed = sorted(known - {"id", "type"})
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.75)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.issue(
                    f"{path}.{name}",
                    f"{what}unknown property '{name}' for type {canonical}{hint}; "
                    f"known: {', '.join(allowed)}",
                    _yaml.key_line(node, key),
                )
                continue
            properties[name] = self.plain(value)
        if timeout_expr is not None:
            properties["timeout"] = timeout_expr
        if extra_properties:
            properties.update(extra_properties)

        if task_id is None or written is None or canonical is None:
            return None
        task = Task(
            id=task_id,
            type=canonical,
            properties=properties,
            subtasks=subtasks,
            written_type=written,
            description=description,
            disabled=disabled,
            timeout=timeout,
            retry=retry,
            allow_failure=allow_failure,
            allow_warning=allow_warning,
            run_if=run_if,
            log_level=log_level,
            worker_group=worker_group,
            line=line,
        )
        if canonical == for_each_item.TYPE:
            for hidden in for_each_item.hidden_ids(task_id):  # Kestra's generated task ids
                if hidden in self.task_ids:
                    self.issue(f"{path}.id", f"task '{task_id}': a ForEachItem adds a task '{hidden}', which "
                               f"duplicates the task id at line {self.task_ids[hidden]}", line)
                else:
                    self.task_ids[hidden] = line
            task = for_each_item.expand(task)
        return task

    def _task_id(self, node: CommentedMap, path: str, line: int, written_type: str | None) -> str | None:
        if node.get("id") is None:
            of_type = f" (a task of type '{written_type}')" if written_type else ""
            self.issue(f"{path}.id", f"'id' is required{of_type}", line)
            return None
        task_id = self.string(node, "id", f"{path}.id", "task: ")
        if task_id is None:
            return None
        id_line = _yaml.value_line(node, "id")
        if not TASK_ID_PATTERN.fullmatch(task_id):
            self.issue(
                f"{path}.id",
                f"task '{task_id}': not a valid task id: use letters, digits, '_' or '-', "
                "starting with a letter or digit",
                id_line,
            )
            return task_id
        if len(task_id) > TASK_ID_MAX:
            self.issue(f"{path}.id", f"task '{task_id[:40]}…': a task id has at most {TASK_ID_MAX} characters",
                       id_line)
            return task_id
        if task_id in self.task_ids:
            self.issue(
                f"{path}.id",
                f"duplicate task id '{task_id}' (first at line {self.task_ids[task_id]})",
                id_line,
            )
        else:
            self.task_ids[task_id] = line
        return task_id

    def _run_if(self, node: CommentedMap, path: str, what: str) -> str | None:
        if node.get("runIf") is None:
            return None
        value = _yaml.plain_scalar(node["runIf"])
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        self.issue(
            f"{path}.runIf",
            f"{what}'runIf' must be an expression string, not {_kind(node['runIf'])}",
            _yaml.value_line(node, "runIf"),
        )
        return None

    def _log_level(self, node: CommentedMap, path: str, what: str) -> str | None:
        level = self.string(node, "logLevel", f"{path}.logLevel", what)
        if level is not None and level not in LOG_LEVELS:
            hint = f" (did you mean '{level.upper()}'?)" if level.upper() in LOG_LEVELS else ""
            self.issue(
                f"{path}.logLevel",
                f"{what}invalid 'logLevel' '{level}'{hint}; one of {', '.join(LOG_LEVELS)}",
                _yaml.value_line(node, "logLevel"),
            )
            return None
        return level

    def _worker_group(self, node: CommentedMap, path: str, what: str) -> str | None:
        group = self.mapping(node, "workerGroup", f"{path}.workerGroup", what)
        if group is None:
            return None
        key = self.string(group, "key", f"{path}.workerGroup.key", what)
        if key is not None and len(key) > TASK_ID_MAX:
            self.issue(f"{path}.workerGroup.key", f"{what}a worker group key has at most {TASK_ID_MAX} characters",
                       _yaml.value_line(group, "key"))
            return None
        return key

    def _timeout(self, node: CommentedMap, path: str, what: str) -> tuple[float | None, str | None]:
        if node.get("timeout") is None:
            return None, None
        value = _yaml.plain_scalar(node["timeout"])
        line = _yaml.value_line(node, "timeout")
        if isinstance(value, str) and "{{" in value:
            return None, value
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                seconds = check_seconds(float(value), value)  # Jackson reads a bare number as seconds
            except ValueError as exc:
                self.issue(f"{path}.timeout", f"{what}invalid 'timeout': {exc}", line)
                return None, None
        elif isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                self.issue(f"{path}.timeout", f"{what}invalid 'timeout': {exc}", line)
                return None, None
        else:
            self.issue(
                f"{path}.timeout",
                f"{what}'timeout' must be an ISO-8601 duration like PT5M, not {_kind(value)}",
                line,
            )
            return None, None
        if seconds <= 0:
            self.issue(f"{path}.timeout", f"{what}'timeout' must be positive, got {_shown(value)}", line)
            return None, None
        return seconds, None

    def _retry(self, node: CommentedMap, key: str, path: str, what: str) -> dict[str, Any] | None:
        block = self.mapping(node, key, path, what)
        if block is None:
            return None
        kind = self.string(block, "type", f"{path}.type", what + "retry: ", required=True)
        if kind is not None and kind not in RETRY_TYPES:
            self.issue(
                f"{path}.type",
                f"{what}invalid retry type '{kind}'; one of {', '.join(RETRY_TYPES)}",
                _yaml.value_line(block, "type"),
            )
        plain = self.plain(block)
        if kind in RETRY_TYPES:
            # Kestra's retry validation (engine.retry): required fields, durations, and orders
            # such as interval < maxDuration, without which the task could never be retried.
            for problem in retry_rules.check_retry(plain)[1]:
                field = problem.field
                self.issue(
                    f"{path}.{field}" if field else path,
                    f"{what}retry: {problem.message}",
                    _yaml.value_line(block, field) if field and field in block else _yaml.key_line(node, key),
                )
        return plain

    def _children(
        self, node: CommentedMap, path: str, what: str, info: TaskTypeInfo, task_id: str | None
    ) -> dict[str, tuple[Task, ...]]:
        subtasks: dict[str, tuple[Task, ...]] = {}
        for key in info.child_lists:
            if node.get(key) is None:
                continue
            if info.dag_tasks and key == "tasks":
                subtasks[key] = self._dag_items(node, path, what)
            else:
                subtasks[key] = self._task_list(node, key, f"{path}.{key}", what)
        for key in info.child_maps:
            cases = self.mapping(node, key, f"{path}.{key}", what)
            if cases is None:
                continue
            for case_key, value in cases.items():
                name = _yaml.plain_key(case_key)
                case_path = f"{path}.{key}.{name}"
                if value is None:
                    continue
                if not isinstance(value, CommentedSeq):
                    self.issue(
                        case_path,
                        f"{what}case '{name}' must be a list of tasks, not {_kind(value)}",
                        _yaml.value_line(cases, case_key),
                    )
                    continue
                tasks = []
                for index, item in enumerate(value):
                    child = self._task(item, f"{case_path}[{index}]", _yaml.item_line(value, index))
                    if child is not None:
                        tasks.append(child)
                subtasks[f"{key}.{name}"] = tuple(tasks)

        position = {_yaml.plain_key(k): i for i, k in enumerate(node)}
        subtasks = dict(sorted(subtasks.items(), key=lambda kv: position.get(kv[0].split(".", 1)[0], 0)))

        for key in info.required_children:
            if not subtasks.get(key) and not self._has_broken_children(node, key):
                line = _yaml.value_line(node, key) if key in node else _yaml.node_line(node)
                self.issue(f"{path}.{key}", f"{what}'{key}' must not be empty: give at least one task", line)
        if info.child_maps:
            branches = [v for k, v in subtasks.items() if k == "defaults" or "." in k]
            if not any(branches) and not self._has_broken_children(node, "defaults", *info.child_maps):
                self.issue(
                    path,
                    f"{what}No task defined, neither cases or default have any tasks",
                    _yaml.node_line(node),
                )
        if info.runnable_children_only:
            for index, child in enumerate(subtasks.get("tasks", ())):
                if is_flowable(child.type):
                    self.issue(
                        f"{path}.tasks[{index}]",
                        f"{what}Only runnable tasks are allowed as children of a "
                        f"WorkingDirectory task ('{child.id}' is a {child.type})",
                        child.line,
                    )
        return subtasks

    def _has_broken_children(self, node: CommentedMap, *keys: str) -> bool:
        """True when a child key holds something already reported (avoid a second message)."""
        for key in keys:
            value = node.get(key)
            if value is not None and not isinstance(value, CommentedSeq | CommentedMap):
                return True
            if isinstance(value, CommentedSeq) and len(value) > 0:
                return True
            if isinstance(value, CommentedMap) and any(
                v is not None and (not isinstance(v, CommentedSeq) or len(v) > 0) for v in value.values()
            ):
                return True
        return False

    def _dag_items(self, node: CommentedMap, path: str, what: str) -> tuple[Task, ...]:
        seq = self.sequence(node, "tasks", f"{path}.tasks", what)
        if seq is None:
            return ()
        children: list[Task] = []
        edges: dict[str, tuple[list[str], str, int]] = {}
        for index, item in enumerate(seq):
            item_path = f"{path}.tasks[{index}]"
            line = _yaml.item_line(seq, index)
            if not isinstance(item, CommentedMap) or "task" not in item:
                self.issue(
                    item_path, f"{what}a Dag item must be a mapping {{task: {{...}}, dependsOn: [...]}}", line
                )
                continue
            for key in item:
                if _yaml.plain_key(key) not in ("task", "dependsOn"):
                    self.issue(
                        f"{item_path}.{_yaml.plain_key(key)}",
                        f"{what}unknown property "
                        f"'{_yaml.plain_key(key)}' in a Dag item (only 'task' and 'dependsOn')",
                        _yaml.key_line(item, key),
                    )
            deps_node = self.sequence(item, "dependsOn", f"{item_path}.dependsOn", what)
            deps: list[str] = []
            for dep_index, dep in enumerate(deps_node or ()):
                value = _yaml.plain_scalar(dep)
                if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                    deps.append(str(value))
                else:
                    self.issue(
                        f"{item_path}.dependsOn[{dep_index}]",
                        f"{what}'dependsOn' holds task ids, not {_kind(dep)}",
                        _yaml.item_line(deps_node, dep_index),
                    )
            child = self._task(
                item["task"],
                f"{item_path}.task",
                _yaml.value_line(item, "task"),
                extra_properties={"dependsOn": deps},
            )
            if child is None:
                continue
            children.append(child)
            dep_line = _yaml.value_line(item, "dependsOn") if "dependsOn" in item else child.line
            edges[child.id] = (deps, f"{item_path}.dependsOn", dep_line)
        ids = {c.id for c in children}
        self._check_graph(
            edges,
            ids,
            lambda _child, dep: f"{what}dag: Not existing task id in dependency: {dep}",
            lambda cycle: f"{what}dag: Cyclic dependency detected: {', '.join(cycle)}",
        )
        return tuple(children)

    def _check_recursion(self, node: CommentedMap, path: str, what: str) -> None:
        namespace = _yaml.plain_scalar(node.get("namespace"))
        flow_id = _yaml.plain_scalar(node.get("flowId"))
        if namespace == self.namespace and flow_id == self.flow_id and self.flow_id is not None:
            self.issue(
                f"{path}.flowId",
                f"{what}Recursive call to flow [{namespace}.{flow_id}]",
                _yaml.value_line(node, "flowId"),
            )

    # --- triggers, defaults, concurrency ----------------------------------------------------

    def _triggers(self, root: CommentedMap) -> tuple[dict[str, Any], ...]:
        seq = self.sequence(root, "triggers", "triggers", "")
        if seq is None:
            return ()
        result: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for index, node in enumerate(seq):
            path = f"triggers[{index}]"
            line = _yaml.item_line(seq, index)
            if not isinstance(node, CommentedMap):
                self.issue(path, f"a trigger must be a mapping with 'id' and 'type', not {_kind(node)}", line)
                continue
            line = _yaml.node_line(node) or line
            ident = self.string(node, "id", f"{path}.id", "trigger: ", required=True)
            what = f"trigger '{ident}': " if ident else "trigger: "
            self.string(node, "type", f"{path}.type", what, required=True)
            if ident is not None:
                id_line = _yaml.value_line(node, "id")
                if not TASK_ID_PATTERN.fullmatch(ident):
                    self.issue(
                        f"{path}.id",
                        f"{what}not a valid trigger id: use letters, digits, '_' or '-'",
                        id_line,
                    )
                elif ident in seen:
                    self.issue(
                        f"{path}.id", f"duplicate trigger id '{ident}' (first at line {seen[ident]})", id_line
                    )
                else:
                    seen[ident] = line
            plain = self.plain(node)
            # Schedule/Flow/Webhook specifics (cron, timezone, conditions…): the scheduler's rules.
            from controlplane.scheduler.triggers import check_trigger  # lazy: the scheduler imports flows

            for problem in check_trigger(plain, index, f"{self.namespace}.{self.flow_id}") if ident else ():
                field = problem.path.split(".", 1)[1].split(".")[0].split("[")[0] if "." in problem.path else ""
                self.issue(problem.path, problem.message, _yaml.value_line(node, field) if field else line)
            result.append(plain)
        return tuple(result)

    def _plugin_defaults(self, root: CommentedMap, key: str) -> tuple[dict[str, Any], ...]:
        seq = self.sequence(root, key, key, "")
        if seq is None:
            return ()
        result: list[dict[str, Any]] = []
        for index, node in enumerate(seq):
            path = f"{key}[{index}]"
            if not isinstance(node, CommentedMap):
                self.issue(
                    path,
                    f"a plugin default must be a mapping {{type, values, forced}}, not {_kind(node)}",
                    _yaml.item_line(seq, index),
                )
                continue
            default_type = self.string(node, "type", f"{path}.type", "plugin default: ", required=True)
            values = self.mapping(node, "values", f"{path}.values", "plugin default: ")
            forced = self.boolean(node, "forced", f"{path}.forced", "plugin default: ")
            if default_type is not None and values is not None:
                self.defaults.append((default_type, values, bool(forced)))
            result.append(self.plain(node))
        return tuple(result)

    def _apply_plugin_defaults(self, node: CommentedMap, written: str | None, canonical: str | None) -> None:
        """Merge the matching ``pluginDefaults`` values into a task node, as Kestra's
        PluginDefaultService: a default applies when its ``type`` is the task's type (as written
        or canonical, legacy aliases resolved) or a dotted prefix of it; its values fill the
        properties the task does not set (maps merged key by key), or, with ``forced: true``,
        override them. ``id`` and ``type`` are never taken from a default."""
        info = task_type_info(canonical) if canonical else None
        child_keys = set(info.child_keys) if info is not None else set()
        for default_type, values, forced in self.defaults:
            if not default_matches(default_type, written, canonical):
                continue
            # Child task lists are never defaulted: a default Sequential holding a Sequential
            # would nest for ever.
            _merge_default(node, values, forced, skip=child_keys)

    def _concurrency(self, root: CommentedMap) -> dict[str, Any] | None:
        node = self.mapping(root, "concurrency", "concurrency", "")
        if node is None:
            return None
        limit = _yaml.plain_scalar(node.get("limit"))
        if limit is None:
            self.issue("concurrency.limit", "concurrency: 'limit' is required", _yaml.node_line(node))
        elif isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            self.issue(
                "concurrency.limit",
                f"concurrency: 'limit' must be an integer > 0, not {_shown(limit)}",
                _yaml.value_line(node, "limit"),
            )
        behavior = self.string(node, "behavior", "concurrency.behavior", "concurrency: ")
        if behavior is not None and behavior not in CONCURRENCY_BEHAVIORS:
            self.issue(
                "concurrency.behavior",
                f"concurrency: invalid 'behavior' '{behavior}'; one of {', '.join(CONCURRENCY_BEHAVIORS)}",
                _yaml.value_line(node, "behavior"),
            )
        return self.plain(node)

    def _sla(self, root: CommentedMap) -> tuple[dict[str, Any], ...]:
        """``sla`` items as written, each checked (type, behavior, duration/assert, labels)."""
        items = self._plain_list_of_maps(root, "sla")
        seq = root.get("sla")
        for index, item in enumerate(items):
            _, problems = sla_rules.check(item, f"sla[{index}]")
            for path, message in problems:
                self.issue(path, message, _yaml.item_line(seq, index))
        return items

    def _plain_list_of_maps(self, root: CommentedMap, key: str) -> tuple[dict[str, Any], ...]:
        seq = self.sequence(root, key, key, "")
        if seq is None:
            return ()
        result: list[dict[str, Any]] = []
        for index, node in enumerate(seq):
            if not isinstance(node, CommentedMap):
                self.issue(
                    f"{key}[{index}]",
                    f"'{key}' items must be mappings, not {_kind(node)}",
                    _yaml.item_line(seq, index),
                )
                continue
            result.append(self.plain(node))
        return tuple(result)


# --- module helpers -----------------------------------------------------------------------------


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """The first cycle found in ``graph`` (node -> dependencies), in path order, or None."""
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(graph.get(start, ())))]
        on_path = [start]
        on_path_set = {start}
        while stack:
            current, deps = stack[-1]
            advanced = False
            for dep in deps:
                if dep in on_path_set:
                    return on_path[on_path.index(dep) :]
                if dep not in done:
                    stack.append((dep, iter(graph.get(dep, ()))))
                    on_path.append(dep)
                    on_path_set.add(dep)
                    advanced = True
                    break
            if not advanced:
                stack.pop()
                on_path.pop()
                on_path_set.discard(current)
                done.add(current)
    return None


def _label_text(value: Any) -> str:
    value = _yaml.plain_scalar(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: Any) -> str:
    """A YAML-flavoured name for the kind of ``value`` (for messages)."""
    if isinstance(value, CommentedMap) or isinstance(value, dict):
        return "a mapping"
    if isinstance(value, CommentedSeq) or isinstance(value, list):
        return "a list"
    value = _yaml.plain_scalar(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string '{value}'"
    return type(value).__name__


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


__all__ = ["parse_flow", "FLOW_PROPERTIES", "UNSUPPORTED_FLOW_PROPERTIES"]
