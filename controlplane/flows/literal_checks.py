"""Registration-time checks of literal values that Kestra only meets when the flow runs (or never).

A flow is refused at ``flow validate``/``deploy`` when:

- two items of its ``sla`` list have the same ``id`` (a violation is logged and reported by id,
  so two SLAs of one id cannot be told apart);
- a Subflow's ``scheduleDate`` is written as a literal (no ``{{ }}``/``{% %}``) that is not an
  ISO-8601 date-time with an offset (it would fail the task run when it starts). A rendered
  value stays a run-time check (:func:`controlplane.engine.flowables.subflow.schedule_date`).

Kestra accepts both (its own ``sla-execution-condition.yaml`` test flow repeats an SLA id), so,
like the expression checks (:mod:`controlplane.flows.static_checks`), these issues are errors by
default and become warnings with ``lenient_expressions``. They run at registration only, never
when a stored revision is loaded.
"""

from __future__ import annotations

import re
from typing import Any

from controlplane.engine.flowables import subflow as subflow_rules
from controlplane.engine.plan import FlowableError
from controlplane.errors import Issue
from controlplane.flows import _yaml
from controlplane.flows.walk import walk_with_paths
from controlplane.model.flow import Flow

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def check_literals(flow: Flow) -> list[Issue]:
    """Every literal problem of ``flow`` (see the module docstring).

    Args:
        flow: A flow returned by ``parse_flow`` (its ``source`` is re-read for lines).

    Returns:
        Issues with the YAML path (``sla[1].id``, ``tasks[0].scheduleDate``), a message naming the
        SLA or task and the field, and the 1-based line; ``[]`` when there is none.
    """
    try:
        root = _yaml.load(flow.source)
    except _yaml.YamlSyntaxError:  # parse_flow accepted it, so this does not happen
        return []
    return _duplicate_sla_ids(flow, root) + _literal_schedule_dates(flow, root)


def _duplicate_sla_ids(flow: Flow, root: Any) -> list[Issue]:
    seq = root.get("sla") if hasattr(root, "get") else None
    issues: list[Issue] = []
    first: dict[str, int] = {}
    for index, item in enumerate(flow.sla):
        ident = item.get("id")
        if not isinstance(ident, str) or not ident:
            continue  # the parser already refused it
        node = seq[index] if isinstance(seq, list) and index < len(seq) else None
        line = _yaml.value_line(node, "id") or _yaml.item_line(seq, index)
        if ident in first:
            issues.append(Issue(f"sla[{index}].id", f"sla '{ident}': duplicate sla id '{ident}' (first at line "
                                                    f"{first[ident]}); each SLA of a flow needs its own id", line))
        else:
            first[ident] = line
    return issues


def _literal_schedule_dates(flow: Flow, root: Any) -> list[Issue]:
    issues: list[Issue] = []
    for path, task in walk_with_paths(flow):
        if task.type != subflow_rules.TYPE or task.properties.get("scheduleDate") is None:
            continue
        value = task.properties["scheduleDate"]
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            continue  # rendered when the task run starts
        try:
            subflow_rules.schedule_date(task.id, value)
        except FlowableError as exc:
            node = _node_at(root, path)
            line = _yaml.value_line(node, "scheduleDate") if node is not None and "scheduleDate" in node else 0
            issues.append(Issue(f"{path}.scheduleDate", str(exc), line or task.line))
    return issues


def _node_at(root: Any, path: str) -> Any:
    """The YAML node at a :func:`walk_with_paths` path (``tasks[1].then[0]``), None if not found."""
    node = root
    for key, index in _SEGMENT.findall(path):
        try:
            node = node[int(index)] if index else node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node
