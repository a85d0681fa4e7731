"""Namespaces a flow reaches beyond its own: the executions it starts (Subflow, ForEachItem) and
the executions its Flow triggers listen to. With authentication on, a namespace-scoped API token
may only deploy a flow whose reach stays inside its scope (checked by ``FlowService.RegisterFlow``),
so a token for ``company.team`` cannot start or watch ``company.other`` executions through a flow
it deploys. Kestra OSS has no such rule (it has no namespace-scoped tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.flows.catalogue import canonical_type
from controlplane.flows.for_each_item import ITEMS_TYPE
from controlplane.model import Flow

SUBFLOW_TYPE = "io.kestra.plugin.core.flow.Subflow"
FLOW_TRIGGER_TYPE = "io.kestra.plugin.core.trigger.Flow"
_CONFINING_CONDITIONS = ("ExecutionFlow", "ExecutionNamespace")


@dataclass(frozen=True)
class Reach:
    """One place a flow reaches another namespace.

    Attributes:
        path: Where in the flow (``tasks[0].namespace``, ``triggers[1].conditions``).
        namespace: The namespace written; None when it is an expression or not stated.
        what: How it reaches it, for the error message.
    """

    path: str
    namespace: str | None
    what: str


def outside(flow: Flow, covers: Callable[[str], bool]) -> list[Reach]:
    """Every reach of ``flow`` that ``covers`` (the caller's scope test) does not allow: a
    Subflow/ForEachItem namespace outside the scope or computed by an expression, and a Flow
    trigger not confined by a top-level ExecutionFlow/ExecutionNamespace condition (or
    ``preconditions.flows``) inside the scope, or naming any namespace outside it."""
    found: list[Reach] = []
    for task in flow.walk():
        kind = canonical_type(task.type)
        if kind not in (SUBFLOW_TYPE, ITEMS_TYPE):
            continue
        written = task.properties.get("namespace")
        where = f"task '{task.id.removesuffix('_items')}' property 'namespace'"
        if not isinstance(written, str) or "{{" in written or "{%" in written:
            found.append(Reach(where, None, "starts executions in a namespace computed at run time"))
        elif not covers(written.strip()):
            found.append(Reach(where, written.strip(), "starts executions"))
    for index, trigger in enumerate(flow.triggers):
        if canonical_type(str(trigger.get("type", ""))) != FLOW_TRIGGER_TYPE:
            continue
        where = f"trigger '{trigger.get('id')}' (triggers[{index}])"
        named = list(_namespaces(trigger))
        for ns in named:
            if not isinstance(ns, str) or "{{" in ns or not covers(ns.strip()):
                found.append(Reach(where, ns if isinstance(ns, str) else None, "listens to executions"))
        if not _confined(trigger, covers):
            found.append(Reach(where, None, "listens to executions of every namespace (add an ExecutionFlow or "
                                            "ExecutionNamespace condition inside your namespace)"))
    return found


def _namespaces(value: Any) -> Iterator[Any]:
    """Every value of a ``namespace`` key anywhere in a trigger definition."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "namespace":
                yield item
            else:
                yield from _namespaces(item)
    elif isinstance(value, list):
        for item in value:
            yield from _namespaces(item)


def _confined(trigger: Mapping[str, Any], covers: Callable[[str], bool]) -> bool:
    """Conditions are AND-ed: one top-level ExecutionFlow/ExecutionNamespace inside the scope
    (or ``preconditions.flows`` all inside it) confines the upstream executions to the scope."""
    for cond in trigger.get("conditions") or []:
        if isinstance(cond, Mapping) and str(cond.get("type", "")).rsplit(".", 1)[-1] in _CONFINING_CONDITIONS:
            ns = cond.get("namespace")
            exact = str(cond.get("comparison") or "EQUALS").upper() == "EQUALS" and not cond.get("prefix")
            if isinstance(ns, str) and "{{" not in ns and covers(ns.strip()) and exact:
                return True  # a PREFIX 'company.team' would also match 'company.teamx
    flows = (trigger.get("preconditions") or {}).get("flows") if isinstance(trigger.get("preconditions"), Mapping) \
        else None
    return bool(flows) and all(isinstance(f, Mapping) and isinstance(f.get("namespace"), str)
                               and covers(f["namespace"].strip()) for f in flows)
