"""The task-type catalogue: Kestra's core task types, their kind, their child task lists, the
legacy alias table, and which types this version of Kestrel can run.

Source: conformance/kestra/FEATURES.md §3 (and §4-5 for trigger and condition aliases), checked
against the ``@Plugin(aliases = ...)`` declarations of Kestra's core plugins.

Kinds:
    RUNNABLE: runs on a worker (Log, Return, Sleep, scripts, storage/kv/http tasks...).
    FLOWABLE: resolved by the executor, never sent to a worker: the control-flow tasks
        (Sequential, Parallel, ForEach, If, Switch, Dag...), and the executor-side ones that
        create executions or wait (Subflow, ForEachItem, Pause, Template). WorkingDirectory is
        flowable too: the executor owns it, even though its children later run together on one
        worker.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from controlplane.errors import Issue
from controlplane.flows.for_each_item import ITEMS_TYPE as FOR_EACH_ITEM_ITEMS
from controlplane.flows.for_each_item import MERGE_TYPE as FOR_EACH_ITEM_MERGE
from controlplane.flows.for_each_item import PROPERTIES as FOR_EACH_ITEM_PROPERTIES
from controlplane.flows.for_each_item import SPLIT_TYPE as FOR_EACH_ITEM_SPLIT
from controlplane.model.flow import Flow, Task


class TaskKind(enum.StrEnum):
    """Where a task type runs."""

    RUNNABLE = "RUNNABLE"
    FLOWABLE = "FLOWABLE"


#: Properties every task accepts (Kestra ``Task``; FEATURES.md §2).
COMMON_TASK_PROPERTIES: frozenset[str] = frozenset(
    {
        "id",
        "type",
        "description",
        "retry",
        "timeout",
        "disabled",
        "workerGroup",
        "logLevel",
        "logToFile",
        "allowFailure",
        "allowWarning",
        "runIf",
    }
)


@dataclass(frozen=True)
class TaskTypeInfo:
    """What the catalogue knows about one canonical task type.

    Attributes:
        name: Canonical type name (``io.kestra.plugin.core.flow.Sequential``).
        kind: RUNNABLE or FLOWABLE.
        child_lists: Keys whose value is a list of tasks (``tasks``, ``errors``, ``finally``,
            ``then``, ``else``, ``defaults``).
        child_maps: Keys whose value maps a name to a list of tasks (Switch ``cases``).
        required_children: Child-list keys that must hold at least one task.
        dag_tasks: ``tasks`` holds ``{task: {...}, dependsOn: [...]}`` items (Dag).
        runnable_children_only: Every direct child must be a runnable type (WorkingDirectory).
        executable: Starts another flow's execution (Subflow, ForEachItem): the parser refuses
            a literal call to the flow itself.
        properties: Type-specific property names (besides ``COMMON_TASK_PROPERTIES`` and the
            child keys) when the catalogue checks them, None when it does not. Kestra refuses
            unknown properties; we check them for the types we run.
        required_properties: Properties that must be present and non-null (checked when a
            flow is registered, by :func:`check_task_types`).
    """

    name: str
    kind: TaskKind
    child_lists: tuple[str, ...] = ()
    child_maps: tuple[str, ...] = ()
    required_children: tuple[str, ...] = ()
    dag_tasks: bool = False
    runnable_children_only: bool = False
    executable: bool = False
    properties: frozenset[str] | None = None
    required_properties: tuple[str, ...] = ()

    @property
    def child_keys(self) -> tuple[str, ...]:
        """Every key that holds child tasks (lists and maps)."""
        return self.child_lists + self.child_maps

    def known_properties(self) -> frozenset[str] | None:
        """All property names a task of this type may have, or None when not checked."""
        if self.properties is None:
            return None
        return COMMON_TASK_PROPERTIES | self.properties | frozenset(self.child_keys)


_CORE = "io.kestra.plugin.core."
_SEQ_LIKE = ("tasks", "errors", "finally")


def _runnable(name: str, properties: Iterable[str] | None = None, required: tuple[str, ...] = ()) -> TaskTypeInfo:
    return TaskTypeInfo(
        name=_CORE + name,
        kind=TaskKind.RUNNABLE,
        properties=frozenset(properties) if properties is not None else None,
        required_properties=required,
    )


def _flowable(
    name: str,
    child_lists: tuple[str, ...] = _SEQ_LIKE,
    required: tuple[str, ...] = ("tasks",),
    properties: Iterable[str] | None = None,
    **kwargs: object,
) -> TaskTypeInfo:
    return TaskTypeInfo(
        name=_CORE + name,
        kind=TaskKind.FLOWABLE,
        child_lists=child_lists,
        required_children=required,
        properties=frozenset(properties) if properties is not None else None,
        **kwargs,  # type: ignore[arg-type]
    )


_TYPES: tuple[TaskTypeInfo, ...] = (
    # flow: executor-side
    _flowable("flow.Sequential", properties=()),
    _flowable("flow.Parallel"),
    _flowable("flow.ForEach"),
    _flowable("flow.EachSequential"),
    _flowable("flow.EachParallel"),
    _flowable("flow.If", child_lists=("then", "else", "errors", "finally"), required=("then",)),
    _flowable(
        "flow.Switch",
        child_lists=("defaults", "errors", "finally"),
        child_maps=("cases",),
        required=(),
    ),
    _flowable("flow.Dag", dag_tasks=True),
    _flowable("flow.AllowFailure"),
    # Pause: the deprecated child ``tasks`` run after the resume (Kestra still accepts them).
    _flowable("flow.Pause", required=(), properties=("delay", "pauseDuration", "behavior", "onResume")),
    _flowable("flow.WaitFor", properties=("condition", "checkFrequency", "failOnMaxReached")),
    _flowable("flow.WorkingDirectory", runnable_children_only=True,
              properties=("inputFiles", "outputFiles", "namespaceFiles", "cache")),
    _flowable(
        "flow.Subflow", child_lists=(), required=(), executable=True,
        properties=("namespace", "flowId", "revision", "inputs", "labels", "wait", "transmitFailed",
                    "inheritLabels", "outputs", "scheduleDate", "restartBehavior"),
    ),
    _flowable("flow.ForEachItem", child_lists=("errors", "finally"), required=(), executable=True,
              properties=FOR_EACH_ITEM_PROPERTIES, required_properties=("items", "namespace", "flowId")),
    # ForEachItem's hidden children (controlplane.flows.for_each_item.expand makes them; a flow
    # cannot name these types itself).
    TaskTypeInfo(name=FOR_EACH_ITEM_SPLIT, kind=TaskKind.RUNNABLE, properties=frozenset({"items", "batch"})),
    TaskTypeInfo(name=FOR_EACH_ITEM_ITEMS, kind=TaskKind.FLOWABLE, properties=frozenset()),
    TaskTypeInfo(name=FOR_EACH_ITEM_MERGE, kind=TaskKind.FLOWABLE, properties=frozenset()),
    _flowable("flow.Template", child_lists=("errors", "finally"), required=()),
    # flow: worker-side
    _runnable("flow.Sleep"),
    # log / debug / output / execution
    _runnable("log.Log", ("message", "level")),
    _runnable("log.Fetch", ("namespace", "flowId", "executionId", "tasksId", "level")),
    _runnable("log.PurgeLogs"),
    _runnable("debug.Return", ("format",)),
    _runnable("debug.Echo", ("format", "level")),
    _runnable("output.OutputValues", ("values",)),
    _runnable("execution.Fail", ("condition", "errorMessage")),
    # Labels updates the execution itself: Kestra applies it in the executor, and so do we.
    _flowable("execution.Labels", child_lists=(), required=(), properties=("labels",)),
    # Resume runs in the control plane here (Kestra runs it on a worker that calls the executor).
    _flowable("execution.Resume", child_lists=(), required=(), properties=("executionId", "inputs")),
    _runnable("execution.Count"),
    _runnable("execution.PurgeExecutions"),
    # kv / state / storage
    _runnable("kv.Set", ("key", "value", "namespace", "overwrite", "ttl", "kvType"), ("key", "value")),
    _runnable("kv.Get", ("key", "namespace", "errorOnMissing"), ("key",)),
    _runnable("kv.GetKeys", ("prefix", "namespace")),
    _runnable("kv.Delete", ("key", "namespace", "errorOnMissing"), ("key",)),
    _runnable("state.Get", ("name", "namespace", "taskrunValue", "errorOnMissing")),
    _runnable("state.Set", ("name", "namespace", "taskrunValue", "data"), ("data",)),
    _runnable("state.Delete", ("name", "namespace", "taskrunValue", "errorOnMissing")),
    _runnable("storage.LocalFiles", ("inputs", "outputs")),
    _runnable("storage.Concat", ("files", "separator", "extension"), ("files",)),
    _runnable("storage.Split", ("from", "bytes", "lines", "rows", "partitions", "separator"), ("from",)),
    _runnable("storage.Reverse", ("from", "separator", "charset"), ("from",)),
    _runnable("storage.Size", ("from",), ("from",)),
    _runnable("storage.Delete", ("uri", "errorOnMissing"), ("uri",)),
    _runnable("storage.FilterItems", ("from", "filterCondition", "filterType", "errorOrNullBehavior"),
              ("from", "filterCondition")),
    _runnable("storage.DeduplicateItems", ("from", "expr"), ("from", "expr")),
    _runnable("storage.PurgeCurrentExecutionFiles", ()),
    # http / namespace / templating / trigger
    _runnable("http.Request", ("uri", "method", "body", "formData", "contentType", "headers", "options", "sslOptions", "allowFailed", "encryptBody"), ("uri",)),
    _runnable("http.Download", ("uri", "method", "body", "formData", "contentType", "headers", "options", "sslOptions", "allowFailed", "encryptBody", "failOnEmptyResponse"), ("uri",)),
    _runnable("namespace.UploadFiles", ("namespace", "files", "destination", "conflict"), ("namespace", "files")),
    _runnable("namespace.DownloadFiles", ("namespace", "files", "destination"), ("namespace", "files")),
    _runnable("namespace.DeleteFiles", ("namespace", "files", "deleteParentFolder"), ("namespace", "files")),
    _runnable("templating.TemplatedTask"),
    # Toggle runs in the control plane here (it changes the scheduler's trigger state).
    _flowable("trigger.Toggle", child_lists=(), required=("trigger",),
              properties=("namespace", "flowId", "trigger", "enabled")),
)

#: Task type -> properties the executor does not render at dispatch: Kestra's non-dynamic
#: per-item expressions, rendered once per item through ``WorkerService.RenderItems``
#: (``controlplane.service.item_render``).
UNRENDERED_PROPERTIES: dict[str, frozenset[str]] = {
    _CORE + "storage.FilterItems": frozenset({"filterCondition"}),
    _CORE + "storage.DeduplicateItems": frozenset({"expr"}),
}

#: Canonical core task type name -> what the catalogue knows about it.
CORE_TASK_TYPES: dict[str, TaskTypeInfo] = {info.name: info for info in _TYPES}

#: Shell commands run as a local process by the Python worker (plugin-scripts type name).
SHELL_COMMANDS = "io.kestra.plugin.scripts.shell.Commands"

_SCRIPTS = "io.kestra.plugin.scripts."
#: Script tasks the Python worker runs as local processes (worker_sdk.tasks.scripts).
SCRIPT_TASK_TYPES: tuple[str, ...] = tuple(
    f"{_SCRIPTS}{language}.{kind}" for language in ("shell", "python", "node") for kind in ("Commands", "Script")
)

#: Non-core types the catalogue knows (their property names are not checked; required ones are).
PLUGIN_TASK_TYPES: dict[str, TaskTypeInfo] = {
    name: TaskTypeInfo(name=name, kind=TaskKind.RUNNABLE,
                       required_properties=("commands",) if name.endswith("Commands") else ("script",))
    for name in SCRIPT_TASK_TYPES
}

#: The task types this version of Kestrel runs (built-in worker tasks and executor flowables).
SUPPORTED_TASK_TYPES: frozenset[str] = frozenset(
    {
        _CORE + "log.Log",
        _CORE + "debug.Return",
        _CORE + "debug.Echo",
        _CORE + "output.OutputValues",
        _CORE + "execution.Fail",
        _CORE + "flow.Sleep",
        *SCRIPT_TASK_TYPES,
        _CORE + "log.Fetch",
        _CORE + "kv.Set",
        _CORE + "kv.Get",
        _CORE + "kv.GetKeys",
        _CORE + "kv.Delete",
        _CORE + "state.Get",
        _CORE + "state.Set",
        _CORE + "state.Delete",
        _CORE + "storage.LocalFiles",
        _CORE + "storage.Concat",
        _CORE + "storage.Split",
        _CORE + "storage.Reverse",
        _CORE + "storage.FilterItems",
        _CORE + "storage.DeduplicateItems",
        _CORE + "storage.Size",
        _CORE + "storage.Delete",
        _CORE + "storage.PurgeCurrentExecutionFiles",
        _CORE + "namespace.UploadFiles",
        _CORE + "namespace.DownloadFiles",
        _CORE + "namespace.DeleteFiles",
        _CORE + "http.Request",
        _CORE + "http.Download",
        _CORE + "flow.Sequential",
        _CORE + "flow.Parallel",
        _CORE + "flow.If",
        _CORE + "flow.Switch",
        _CORE + "flow.ForEach",
        _CORE + "flow.EachSequential",
        _CORE + "flow.EachParallel",
        _CORE + "flow.Dag",
        _CORE + "flow.AllowFailure",
        _CORE + "flow.Pause",
        _CORE + "flow.Subflow",
        _CORE + "flow.ForEachItem",
        FOR_EACH_ITEM_SPLIT,
        FOR_EACH_ITEM_ITEMS,
        FOR_EACH_ITEM_MERGE,
        _CORE + "execution.Resume",
        _CORE + "execution.Labels",
        _CORE + "flow.WaitFor",
        _CORE + "flow.WorkingDirectory",
        _CORE + "trigger.Toggle",
    }
)

_OLD = "io.kestra.core.tasks."

#: Legacy task type name -> canonical name (Kestra still accepts the old names).
TASK_ALIASES: dict[str, str] = {
    _OLD + "log.Log": _CORE + "log.Log",
    _OLD + "log.Fetch": _CORE + "log.Fetch",
    _OLD + "debugs.Return": _CORE + "debug.Return",
    _OLD + "debugs.Echo": _CORE + "debug.Echo",
    # Pre-0.17 package of OutputValues; Kestra's snapshot no longer declares it, accepting it is
    # harmless and helps flows written for older versions.
    _OLD + "outputs.OutputValues": _CORE + "output.OutputValues",
    _OLD + "executions.Fail": _CORE + "execution.Fail",
    _OLD + "executions.Labels": _CORE + "execution.Labels",
    _OLD + "executions.Counts": _CORE + "execution.Count",
    _OLD + "flows.Sequential": _CORE + "flow.Sequential",
    _OLD + "flows.Parallel": _CORE + "flow.Parallel",
    _OLD + "flows.If": _CORE + "flow.If",
    _OLD + "flows.Switch": _CORE + "flow.Switch",
    _OLD + "flows.EachSequential": _CORE + "flow.EachSequential",
    _OLD + "flows.EachParallel": _CORE + "flow.EachParallel",
    _OLD + "flows.Dag": _CORE + "flow.Dag",
    _OLD + "flows.AllowFailure": _CORE + "flow.AllowFailure",
    _OLD + "flows.Pause": _CORE + "flow.Pause",
    _OLD + "flows.Subflow": _CORE + "flow.Subflow",
    _OLD + "flows.Flow": _CORE + "flow.Subflow",
    _OLD + "flows.ForEachItem": _CORE + "flow.ForEachItem",
    _OLD + "flows.WorkingDirectory": _CORE + "flow.WorkingDirectory",
    _OLD + "flows.Worker": _CORE + "flow.WorkingDirectory",
    _OLD + "flows.Template": _CORE + "flow.Template",
    _OLD + "states.Get": _CORE + "state.Get",
    _OLD + "states.Set": _CORE + "state.Set",
    _OLD + "states.Delete": _CORE + "state.Delete",
    _OLD + "storages.LocalFiles": _CORE + "storage.LocalFiles",
    _OLD + "storages.Concat": _CORE + "storage.Concat",
    _OLD + "storages.Split": _CORE + "storage.Split",
    _OLD + "storages.Reverse": _CORE + "storage.Reverse",
    _OLD + "storages.Size": _CORE + "storage.Size",
    _OLD + "storages.Delete": _CORE + "storage.Delete",
    _OLD + "storages.FilterItems": _CORE + "storage.FilterItems",
    _OLD + "storages.DeduplicateItems": _CORE + "storage.DeduplicateItems",
    _OLD + "storages.Purge": _CORE + "execution.PurgeExecutions",
    _OLD + "storages.PurgeExecution": _CORE + "storage.PurgeCurrentExecutionFiles",
    _CORE + "storage.Purge": _CORE + "execution.PurgeExecutions",
    _CORE + "storage.PurgeExecution": _CORE + "storage.PurgeCurrentExecutionFiles",
    _OLD + "templating.TemplatedTask": _CORE + "templating.TemplatedTask",
    _OLD + "trigger.Toggle": _CORE + "trigger.Toggle",
    "io.kestra.plugin.fs.http.Request": _CORE + "http.Request",
    "io.kestra.plugin.fs.http.Download": _CORE + "http.Download",
}

#: Legacy trigger type name -> canonical name (FEATURES.md §5).
TRIGGER_ALIASES: dict[str, str] = {
    "io.kestra.core.models.triggers.types.Schedule": _CORE + "trigger.Schedule",
    "io.kestra.core.models.triggers.types.Flow": _CORE + "trigger.Flow",
    "io.kestra.core.models.triggers.types.Webhook": _CORE + "trigger.Webhook",
    "io.kestra.plugin.fs.http.Trigger": _CORE + "http.Trigger",
}

_CONDITIONS = (
    "ExecutionFlow",
    "ExecutionStatus",
    "ExecutionNamespace",
    "ExecutionLabels",
    "ExecutionOutputs",
    "Not",
    "Or",
    "DateTimeBetween",
    "TimeBetween",
    "DayWeek",
    "DayWeekInMonth",
    "Weekend",
    "PublicHoliday",
    "HasRetryAttempt",
)

#: Legacy condition type name -> canonical name (FEATURES.md §4).
CONDITION_ALIASES: dict[str, str] = {
    **{f"io.kestra.core.models.conditions.types.{n}Condition": f"{_CORE}condition.{n}" for n in _CONDITIONS},
    **{f"{_CORE}condition.{n}Condition": f"{_CORE}condition.{n}" for n in _CONDITIONS},
    "io.kestra.core.models.conditions.types.VariableCondition": _CORE + "condition.Expression",
    "io.kestra.core.models.conditions.types.ExpressionCondition": _CORE + "condition.Expression",
    _CORE + "condition.ExpressionCondition": _CORE + "condition.Expression",
    "io.kestra.core.models.conditions.types.MultipleCondition": _CORE + "condition.MultipleCondition",
    "io.kestra.core.models.conditions.types.FlowCondition": _CORE + "condition.FlowCondition",
    "io.kestra.core.models.conditions.types.FlowNamespaceCondition": _CORE
    + "condition.FlowNamespaceCondition",
}

#: Every legacy name (tasks, triggers, conditions) -> canonical name.
LEGACY_ALIASES: dict[str, str] = {**TASK_ALIASES, **TRIGGER_ALIASES, **CONDITION_ALIASES}


def canonical_type(name: str) -> str:
    """The canonical type name for ``name`` (legacy aliases resolved; other names unchanged).

    Args:
        name: A task, trigger or condition type as written in YAML.

    Returns:
        e.g. ``io.kestra.plugin.core.log.Log`` for ``io.kestra.core.tasks.log.Log``.
    """
    return LEGACY_ALIASES.get(name, name)


def task_type_info(name: str) -> TaskTypeInfo | None:
    """What the catalogue knows about a task type (alias accepted), or None for other types."""
    canonical = canonical_type(name)
    return CORE_TASK_TYPES.get(canonical) or PLUGIN_TASK_TYPES.get(canonical)


def is_flowable(name: str) -> bool:
    """True when ``name`` (alias accepted) is a Kestra flowable type, run by the executor."""
    info = task_type_info(name)
    return info is not None and info.kind is TaskKind.FLOWABLE


def is_core_type(name: str) -> bool:
    """True when ``name`` (alias accepted) is one of Kestra's ``io.kestra.plugin.core`` tasks."""
    return canonical_type(name) in CORE_TASK_TYPES


def check_task_types(flow: Flow, extra_types: Collection[str] = ()) -> list[Issue]:
    """Check that this control plane can run every task of ``flow``.

    A task type is accepted when it is in ``SUPPORTED_TASK_TYPES`` or in ``extra_types`` (custom
    types that connected workers registered). A flowable type is never taken from
    ``extra_types``: flowables run in the executor, a worker cannot provide one.

    Args:
        flow: A parsed flow (its ``Task.type`` values are canonical).
        extra_types: Task types registered by workers (aliases are resolved).

    Returns:
        One issue per task whose type cannot run, with path, message and YAML line; empty when
        every type is runnable. Messages:
        ``task type '<t>' is a Kestra core type this version of Kestrel does not run yet`` and
        ``unknown task type '<t>' (did you mean '<close>'?); custom task types become known once
        a worker that registers them has connected``.
    """
    from controlplane.flows.walk import walk_with_paths

    registered = {canonical_type(t) for t in extra_types}
    issues: list[Issue] = []
    for path, task in walk_with_paths(flow):
        name = task.type
        if name in SUPPORTED_TASK_TYPES:
            issues += check_task_properties(path, task)
            issues += _missing_required(path, task)
            continue
        if is_flowable(name):
            issues.append(_not_yet(path, task.id, name, task.line))
            continue
        if name in registered:
            continue
        if is_core_type(name):
            issues.append(_not_yet(path, task.id, name, task.line))
            continue
        written = task.written_type or name
        hint = suggest_type(written, registered)
        did_you_mean = f" (did you mean '{hint}'?)" if hint else ""
        issues.append(
            Issue(
                path=f"{path}.type",
                message=(
                    f"task '{task.id}': unknown task type '{written}'{did_you_mean}; custom task "
                    "types become known once a worker that registers them has connected"
                ),
                line=task.line,
            )
        )
    return issues


#: Kestra's ``Pause.Behavior``.
PAUSE_BEHAVIORS = ("RESUME", "WARN", "FAIL", "CANCEL")


def _is_expression(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_task_properties(path: str, task: Task) -> list[Issue]:
    """Registration-time checks of the executor-side task types' own properties (literal
    values only: a ``{{ … }}`` expression is checked when it is rendered).

    - Pause: ``delay``/``pauseDuration`` ISO-8601 durations >= 0, ``behavior`` one of
      RESUME/WARN/FAIL/CANCEL, ``onResume`` a list of inputs with an ``id`` and a known ``type``.
    - Subflow: ``namespace`` and ``flowId`` required, ``revision`` an integer >= 1, ``wait`` /
      ``transmitFailed`` booleans, ``inputs`` a map.

    Returns:
        Issues naming the task and property, with the task's YAML line.
    """
    from controlplane.flows.durations import parse_duration
    from controlplane.flows.inputs import INPUT_TYPES

    props = task.properties
    issues: list[Issue] = []

    def bad(prop: str, message: str) -> None:
        issues.append(Issue(path=f"{path}.{prop}", message=f"task '{task.id}': {message}", line=task.line))

    if task.type == _CORE + "flow.Pause":
        for prop in ("delay", "pauseDuration"):
            value = props.get(prop)
            if value is None or _is_expression(value):
                continue
            try:
                seconds = parse_duration(value) if isinstance(value, str) else None
            except ValueError as exc:
                bad(prop, f"property '{prop}': {exc}")
                continue
            if seconds is None or seconds < 0:
                bad(prop, f"property '{prop}' must be an ISO-8601 duration >= 0 like PT30S, got {value!r}")
        behavior = props.get("behavior")
        if behavior is not None and not _is_expression(behavior) and str(behavior).upper() not in PAUSE_BEHAVIORS:
            bad("behavior", f"property 'behavior' must be one of {', '.join(PAUSE_BEHAVIORS)}, got {behavior!r}")
        on_resume = props.get("onResume")
        if on_resume is not None and not isinstance(on_resume, list):
            bad("onResume", "property 'onResume' must be a list of inputs")
        for i, item in enumerate(on_resume if isinstance(on_resume, list) else ()):
            where = f"onResume[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("id", item.get("name")), str):
                bad(where, f"property '{where}' must be an input with an 'id' and a 'type'")
            elif str(item.get("type", "")).upper() not in INPUT_TYPES:
                bad(f"{where}.type", f"onResume input '{item.get('id', item.get('name'))}': invalid type "
                    f"{item.get('type')!r}; one of {', '.join(INPUT_TYPES)}")
    elif task.type == _CORE + "flow.Subflow":
        for prop in ("namespace", "flowId"):
            value = props.get(prop)
            if value is None or (isinstance(value, str) and not value.strip()):
                bad(prop, f"property '{prop}' is required")
            elif not isinstance(value, str):
                bad(prop, f"property '{prop}' must be text, got {value!r}")
        revision = props.get("revision")
        if revision is not None and not _is_expression(revision) and (
            isinstance(revision, bool) or not isinstance(revision, int) or revision < 1
        ):
            bad("revision", f"property 'revision' must be an integer >= 1, got {revision!r}")
        for prop in ("wait", "transmitFailed"):
            if props.get(prop) is not None and not isinstance(props[prop], bool):
                bad(prop, f"property '{prop}' must be true or false, got {props[prop]!r}")
        inputs = props.get("inputs")
        if inputs is not None and not isinstance(inputs, dict) and not _is_expression(inputs):
            bad("inputs", "property 'inputs' must be a map of input id to value")
    elif task.type == _CORE + "flow.ForEachItem":
        issues += _check_for_each_item(path, task)
    elif task.type == _CORE + "storage.FilterItems":
        for prop, allowed in (("filterType", ("INCLUDE", "EXCLUDE")), ("errorOrNullBehavior", ("FAIL", "INCLUDE", "EXCLUDE"))):
            value = props.get(prop)
            if value is not None and (not isinstance(value, str) or value.upper() not in allowed):
                bad(prop, f"property '{prop}' must be one of {', '.join(allowed)}, got {value!r}")
    return issues


def _check_for_each_item(path: str, task: Task) -> list[Issue]:
    """ForEachItem's literal properties: ``items`` a ``kestra:///`` URI, ``batch`` as
    :func:`~controlplane.engine.flowables.for_each_item.parse_batch` reads it, ``wait`` /
    ``transmitFailed`` / ``inheritLabels`` booleans, ``inputs`` a map."""
    from controlplane.engine.flowables.for_each_item import parse_batch
    from controlplane.engine.plan import FlowableError

    props = task.properties
    issues: list[Issue] = []

    def bad(prop: str, message: str) -> None:
        issues.append(Issue(path=f"{path}.{prop}", message=f"task '{task.id}': {message}", line=task.line))

    items = props.get("items")
    if isinstance(items, str) and not _is_expression(items) and not items.strip().startswith("kestra:///"):
        bad("items", f"property 'items' must be a kestra:/// URI (usually an expression such as "
                     f"{{{{ inputs.file }}}}), got {items[:200]!r}")
    elif items is not None and not isinstance(items, str):
        bad("items", f"property 'items' must be a kestra:/// URI, got {items!r}")
    batch = props.get("batch")
    if batch is not None and not _has_expression(batch):
        try:
            parse_batch(batch, task.id)
        except FlowableError as exc:
            prop = "batch." + next((k for k in ("rows", "bytes", "partitions", "separator") if f"'batch.{k}'" in str(exc)), "")
            issues.append(Issue(path=f"{path}.{prop.rstrip('.')}", message=str(exc), line=task.line))
    for prop in ("wait", "transmitFailed", "inheritLabels"):
        if props.get(prop) is not None and not isinstance(props[prop], bool) and not _is_expression(props[prop]):
            bad(prop, f"property '{prop}' must be true or false, got {props[prop]!r}")
    inputs = props.get("inputs")
    if inputs is not None and not isinstance(inputs, dict) and not _is_expression(inputs):
        bad("inputs", "property 'inputs' must be a map of input id to value")
    return issues


def _has_expression(value: object) -> bool:
    if isinstance(value, dict):
        return any(_has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_expression(v) for v in value)
    return _is_expression(value)


def _missing_required(path: str, task: Task) -> list[Issue]:
    """One issue per required property (``TaskTypeInfo.required_properties``) missing or null."""
    info = task_type_info(task.type)
    return [
        Issue(path=f"{path}.{prop}", message=f"task '{task.id}': property '{prop}' is required for type {task.type}",
              line=task.line)
        for prop in (info.required_properties if info is not None else ())
        if task.properties.get(prop) is None
    ]


#: Core types Kestrel refuses for good, with the reason and what to write instead.
UNSUPPORTED_FOR_GOOD: dict[str, str] = {
    _CORE + "flow.Template": (
        "templates are not supported: Kestra deprecated the Template task (and its template store) "
        "in favour of subflows; copy the template's tasks into the flow, or move them "
        "to a flow of their own and call it with io.kestra.plugin.core.flow.Subflow"
    ),
}


def _not_yet(path: str, task_id: str, name: str, line: int) -> Issue:
    reason = UNSUPPORTED_FOR_GOOD.get(name)
    if reason is not None:
        return Issue(path=f"{path}.type", message=f"task '{task_id}': task type '{name}': {reason}", line=line)
    return Issue(
        path=f"{path}.type",
        message=(
            f"task '{task_id}': task type '{name}' is a Kestra core type this version of Kestrel "
            "does not run yet"
        ),
        line=line,
    )


def suggest_type(name: str, extra_types: Iterable[str] = ()) -> str | None:
    """The known task type closest to ``name``, or None when nothing is close.

    A type whose simple class name matches ``name``'s (case-insensitively) wins; otherwise
    ``difflib`` picks the closest full name.

    Args:
        name: The unknown type as written.
        extra_types: Registered custom types, suggested too.

    Returns:
        A canonical (or registered) type name.
    """
    candidates = sorted(
        SUPPORTED_TASK_TYPES | set(CORE_TASK_TYPES) | set(PLUGIN_TASK_TYPES) | set(extra_types)
    )
    simple = name.rsplit(".", 1)[-1].lower()
    same_simple = [c for c in candidates if c.rsplit(".", 1)[-1].lower() == simple]
    if same_simple:
        supported = [c for c in same_simple if c in SUPPORTED_TASK_TYPES]
        return (supported or same_simple)[0]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.8)
    return close[0] if close else None
