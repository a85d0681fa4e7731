"""Warnings for flow properties this version parses but does not apply yet.

A flow that uses them is accepted (so Kestra flows deploy), and ``validate``/``deploy`` say
plainly what will be ignored, instead of ignoring it silently.
"""

from __future__ import annotations

from controlplane.engine import retry as retry_rules
from controlplane.errors import Issue
from controlplane.flows.catalogue import canonical_type, task_type_info
from controlplane.flows.walk import walk_with_paths
from controlplane.model import Flow

#: Flow-level properties -> what is not applied yet.
_FLOW_FEATURES: dict[str, str] = {}


def _unused_plugin_defaults(flow: Flow, ref: str) -> list[Issue]:
    """A plugin default whose type matches no task (a typo, or a trigger/condition type, to
    which this version does not apply defaults yet) is worth a warning."""
    from controlplane.flows.parser import default_matches

    warnings = []
    for index, default in enumerate(flow.plugin_defaults):
        default_type = default.get("type")
        if isinstance(default_type, str) and not any(
            default_matches(default_type, task.written_type, task.type) for task in flow.walk()
        ):
            warnings.append(Issue(
                path=f"pluginDefaults[{index}].type",
                message=f"{ref}: plugin default for '{default_type}' matches no task of this flow "
                "(defaults apply to tasks only in this version)",
            ))
    return warnings


def not_applied_warnings(flow: Flow) -> list[Issue]:
    """One warning per property of ``flow`` that is parsed but not applied by this version.

    Returns:
        Issues with path, message naming the flow/task/field, and YAML line where known.
    """
    ref = f"flow {flow.namespace}.{flow.id}"
    warnings = [Issue(path=name, message=f"{ref}: {text}") for name, text in _FLOW_FEATURES.items() if getattr(flow, name, None)]
    warnings += _unused_plugin_defaults(flow, ref)
    warnings += _retry_warnings(flow.retry, "retry", f"{ref}: flow retry", 0)
    warnings += _trigger_warnings(flow, ref)
    for path, task in walk_with_paths(flow):
        warnings += _retry_warnings(task.retry, f"{path}.retry", f"{ref}: task '{task.id}': retry", task.line)
        warnings += _script_runner_warnings(task, path, ref)
        info = task_type_info(task.type)
        if info is not None and info.executable and task.type != "io.kestra.plugin.core.flow.Subflow" \
                and retry_rules.resolve_retry(flow, task.id) is not None:
            warnings.append(Issue(
                path=f"{path}.retry",
                message=f"{ref}: task '{task.id}': 'retry' is not applied yet to {task.type} tasks: "
                "a failed subflow execution is not retried",
                line=task.line,
            ))
        if task.type == "io.kestra.plugin.core.flow.ForEachItem":
            for prop in ("scheduleDate", "scheduleOnDate", "restartBehavior"):
                if prop in task.properties:
                    warnings.append(Issue(path=f"{path}.{prop}", message=f"{ref}: task '{task.id}': '{prop}' is "
                                          "not applied yet to ForEachItem", line=task.line))
        if task.type == "io.kestra.plugin.core.flow.WorkingDirectory" and "cache" in task.properties:
            warnings.append(Issue(
                path=f"{path}.cache",
                message=f"{ref}: task '{task.id}': 'cache' is not applied yet (every run starts with an "
                "empty working directory)",
                line=task.line,
            ))
    return warnings


def _script_runner_warnings(task: object, path: str, ref: str) -> list[Issue]:
    """Script tasks run as local processes on the worker: a container image, a Docker options
    block or a non-Process ``taskRunner`` is ignored (the worker also logs it at run time)."""
    if not str(getattr(task, "type", "")).startswith("io.kestra.plugin.scripts."):
        return []
    props = getattr(task, "properties", {}) or {}
    found = [name for name in ("containerImage", "docker") if props.get(name) is not None]
    runner = props.get("taskRunner")
    if isinstance(runner, dict) and not str(runner.get("type", "")).endswith("runner.Process"):
        found.append("taskRunner")
    return [
        Issue(path=f"{path}.{name}", line=getattr(task, "line", 0),
              message=f"{ref}: task '{getattr(task, 'id', '')}': '{name}' is not applied: Kestrel runs scripts as "
                      "local processes on the worker (the worker's interpreters and PATH), not in a container")
        for name in found
    ]


def _retry_warnings(raw: object, path: str, what: str, line: int) -> list[Issue]:
    """Valid but suspicious retry settings (a retry that never retries or never stops)."""
    if not raw:
        return []
    policy, _ = retry_rules.check_retry(raw)
    if policy is None:
        return []  # invalid blocks are errors, reported by the parser
    return [
        Issue(path=f"{path}.{w.field}" if w.field else path, message=f"{what}: {w.message}", line=line)
        for w in retry_rules.retry_warnings(policy)
    ]


def _trigger_warnings(flow: Flow, ref: str) -> list[Issue]:
    """Triggers the scheduler does not run (polling/realtime plugin triggers) and trigger
    properties it does not apply yet."""
    from controlplane.scheduler.triggers import KINDS  # lazy: the scheduler imports flows

    warnings = []
    for index, raw in enumerate(flow.triggers):
        what = f"{ref}: trigger '{raw.get('id')}'"
        canonical = canonical_type(str(raw.get("type", "")))
        if canonical not in KINDS:
            warnings.append(Issue(path=f"triggers[{index}].type",
                                  message=f"{what}: type {raw.get('type')}: polling and plugin triggers "
                                          "do not fire yet"))
            continue
        for prop in ("labels", "allowConcurrent", "interval", "scheduleConditions", "workerGroup"):
            if prop in raw:
                warnings.append(Issue(path=f"triggers[{index}].{prop}", message=f"{what}: '{prop}' is not applied yet"))
    return warnings
