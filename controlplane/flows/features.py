"""Warnings for flow properties this version parses but does not apply yet.

A flow that uses them is accepted (so Kestra flows deploy), and ``validate``/``deploy`` say
plainly what will be ignored, instead of ignoring it silently.
"""

from __future__ import annotations

from controlplane.errors import Issue
from controlplane.flows.walk import walk_with_paths
from controlplane.model import Flow

#: Flow-level properties -> what is not applied yet.
_FLOW_FEATURES = {
    "retry": "flow-level 'retry' is not applied yet: failed tasks are not retried",
    "sla": "'sla' is not enforced yet",
    "concurrency": "'concurrency' limits are not enforced yet",
    "triggers": "'triggers' do not fire yet (the scheduler is not built)",
    "plugin_defaults": "'pluginDefaults'/'taskDefaults' are not applied yet",
}


def not_applied_warnings(flow: Flow) -> list[Issue]:
    """One warning per property of ``flow`` that is parsed but not applied by this version.

    Returns:
        Issues with path, message naming the flow/task/field, and YAML line where known.
    """
    ref = f"flow {flow.namespace}.{flow.id}"
    warnings = [
        Issue(path=name if name != "plugin_defaults" else "pluginDefaults", message=f"{ref}: {text}")
        for name, text in _FLOW_FEATURES.items()
        if getattr(flow, name, None)
    ]
    for path, task in walk_with_paths(flow):
        if task.retry:
            warnings.append(Issue(
                path=f"{path}.retry",
                message=f"{ref}: task '{task.id}': 'retry' is not applied yet: a failed attempt is not retried",
                line=task.line,
            ))
        for prop in ("logToFile", "timeout"):
            if prop in task.properties:
                warnings.append(Issue(
                    path=f"{path}.{prop}",
                    message=f"{ref}: task '{task.id}': '{prop}' is not applied yet"
                    + (" (an expression timeout is not rendered)" if prop == "timeout" else ""),
                    line=task.line,
                ))
        if task.log_level:
            warnings.append(Issue(
                path=f"{path}.logLevel",
                message=f"{ref}: task '{task.id}': 'logLevel' is not applied yet: every line is kept",
                line=task.line,
            ))
    return warnings
