"""Flow topology: a pure function from a flow's YAML source to a graph, and a Graphviz renderer.

:func:`flow_topology` reads the registered source (the API returns it with ``GetFlow``) and
builds nodes and edges the way Kestra's topology view draws a flow:

- tasks of a list run one after the other (an edge from each task to the next);
- a flowable task is a box (cluster) holding its own node and its children; its node points at
  the first task of each branch (``tasks``, ``then``/``else``, each ``cases`` entry and
  ``defaults``), and the last task of every branch points at what follows the flowable;
- ``Parallel`` and ``EachParallel`` children are branches of their own (all start together);
- ``Dag`` items are linked by their ``dependsOn``;
- ``errors`` and ``finally`` (of the flow or of a flowable) hang off dashed edges.

:func:`topology_dot` turns it into a :class:`graphviz.Digraph`, optionally colouring every task by
the state of its task runs in one execution (see :func:`dashboard.model.summarise_task_states`);
``st.graphviz_chart`` renders it in the browser, so no ``dot`` binary is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import graphviz

from dashboard.model import STATE_COLORS, TaskStateSummary, parse_flow_source
from worker_sdk.types import State

__all__ = ["TopoEdge", "TopoNode", "Topology", "flow_topology", "topology_dot"]

START = "__start__"
END = "__end__"

_BRANCH_LISTS = ("tasks", "then", "else", "defaults")
_SIDE_LISTS = ("errors", "finally", "_finally")
_PARALLEL = ("Parallel", "EachParallel")


@dataclass(frozen=True)
class TopoNode:
    """A node of the topology.

    Attributes:
        id: Node id: the task id (unique in a Kestra flow), or ``__start__`` / ``__end__``.
        label: Text shown (the task id).
        type: Short task type (``Log``, ``ForEach``); empty for start/end.
        kind: ``"runnable"``, ``"flowable"``, ``"start"`` or ``"end"``.
        cluster: Id of the enclosing box: a flowable task id, ``"errors"`` / ``"finally"`` for
            the flow's own lists, ``None`` at the top level.
    """

    id: str
    label: str
    type: str
    kind: str
    cluster: str | None = None


@dataclass(frozen=True)
class TopoEdge:
    """A directed edge. ``style`` is ``"solid"`` or ``"dashed"`` (errors/finally paths)."""

    src: str
    dst: str
    style: str = "solid"
    label: str = ""


@dataclass
class Topology:
    """Nodes, edges and the nesting of boxes (cluster id -> parent cluster id, ``None`` at top)."""

    nodes: dict[str, TopoNode] = field(default_factory=dict)
    edges: list[TopoEdge] = field(default_factory=list)
    clusters: dict[str, str | None] = field(default_factory=dict)
    cluster_labels: dict[str, str] = field(default_factory=dict)

    def successors(self, node_id: str) -> list[str]:
        """Ids the node has an edge to, in insertion order."""
        return [e.dst for e in self.edges if e.src == node_id]


def _short(task_type: Any) -> str:
    return str(task_type or "").rsplit(".", 1)[-1]


def _task_items(value: Any) -> list[dict[str, Any]]:
    return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []


class _Builder:
    def __init__(self) -> None:
        self.topo = Topology()
        self._edge_keys: set[tuple[str, str, str]] = set()

    def edge(self, src: str, dst: str, style: str = "solid", label: str = "") -> None:
        if (src, dst, style) not in self._edge_keys:
            self._edge_keys.add((src, dst, style))
            self.topo.edges.append(TopoEdge(src, dst, style, label))

    def sequence(self, tasks: list[dict[str, Any]], cluster: str | None) -> tuple[list[str], list[str]]:
        """Adds tasks run one after another; returns (entries of the first, exits of the last)."""
        entries: list[str] = []
        exits: list[str] = []
        for task in tasks:
            t_entry, t_exits = self.task(task, cluster)
            if not t_entry:
                continue
            if not entries:
                entries = [t_entry]
            for src in exits:
                self.edge(src, t_entry)
            exits = t_exits
        return entries, exits

    def task(self, task: dict[str, Any], cluster: str | None) -> tuple[str, list[str]]:
        """Adds one task (and its children); returns (its entry node, its exit nodes)."""
        task_id = str(task.get("id") or "")
        if not task_id or task_id in self.topo.nodes:
            return "", []
        kind_short = _short(task.get("type"))
        lists = {k: _task_items(task.get(k)) for k in (*_BRANCH_LISTS, *_SIDE_LISTS)}
        cases = task.get("cases") if isinstance(task.get("cases"), dict) else {}
        is_dag = kind_short == "Dag"
        flowable = is_dag or bool(cases) or any(lists.values())
        self.topo.nodes[task_id] = TopoNode(
            task_id, task_id, kind_short, "flowable" if flowable else "runnable", cluster
        )
        if not flowable:
            return task_id, [task_id]
        self.topo.clusters[task_id] = cluster
        self.topo.cluster_labels[task_id] = f"{task_id} ({kind_short})"
        exits: list[str] = []
        if is_dag:
            exits = self._dag(task_id, _task_items(task.get("tasks")))
        else:
            branches: list[list[dict[str, Any]]] = []
            if kind_short in _PARALLEL:
                branches.extend([t] for t in lists["tasks"])
            else:
                branches.append(lists["tasks"])
            branches.append(lists["then"])
            branches.append(lists["else"])
            branches.extend(_task_items(v) for _, v in sorted(cases.items(), key=lambda kv: str(kv[0])))
            branches.append(lists["defaults"])
            for branch in branches:
                if not branch:
                    continue
                b_entries, b_exits = self.sequence(branch, task_id)
                for dst in b_entries:
                    self.edge(task_id, dst)
                exits.extend(b_exits)
            if kind_short == "If" and not lists["else"]:
                exits.append(task_id)  # a false condition goes straight on
        if not exits:
            exits = [task_id]
        for key, label in (("errors", "errors"), ("finally", "finally"), ("_finally", "finally")):
            side = lists[key]
            if side:
                s_entries, s_exits = self.sequence(side, task_id)
                for dst in s_entries:
                    self.edge(task_id, dst, "dashed", label)
                if label == "finally":
                    exits = list(dict.fromkeys([*exits, *s_exits]))
        return task_id, exits

    def _dag(self, dag_id: str, items: list[dict[str, Any]]) -> list[str]:
        entry_of: dict[str, str] = {}
        exits_of: dict[str, list[str]] = {}
        depends: dict[str, list[str]] = {}
        for item in items:
            inner = item.get("task") if isinstance(item.get("task"), dict) else None
            if inner is None:
                continue
            t_entry, t_exits = self.task(inner, dag_id)
            if not t_entry:
                continue
            entry_of[t_entry] = t_entry
            exits_of[t_entry] = t_exits
            deps = item.get("dependsOn")
            depends[t_entry] = [str(d) for d in deps] if isinstance(deps, list) else []
        needed: set[str] = set()
        for task_id, deps in depends.items():
            known = [d for d in deps if d in entry_of]
            if not known:
                self.edge(dag_id, task_id)
            for dep in known:
                needed.add(dep)
                for src in exits_of[dep]:
                    self.edge(src, task_id)
        return [x for t in depends if t not in needed for x in exits_of[t]]


def flow_topology(source: str) -> Topology:
    """The topology of a flow from its YAML source (see the module docstring for the rules).

    A start and an end node frame the main ``tasks``; the flow's ``errors`` hang off the start
    node (dashed, "on failure") and its ``finally`` off the last tasks (dashed). Task ids repeated
    in the source keep their first occurrence. A source that is not a YAML mapping gives a
    topology with only start and end.

    Args:
        source: The flow YAML as registered.
    """
    doc = parse_flow_source(source)
    b = _Builder()
    b.topo.nodes[START] = TopoNode(START, "start", "", "start")
    entries, exits = b.sequence(_task_items(doc.get("tasks")), None)
    for dst in entries:
        b.edge(START, dst)
    last = exits or [START]
    for group, style_label in (("errors", "on failure"), ("finally", "finally"), ("afterExecution", "after")):
        tasks = _task_items(doc.get(group))
        if not tasks:
            continue
        b.topo.clusters[group] = None
        b.topo.cluster_labels[group] = group
        g_entries, g_exits = b.sequence(tasks, group)
        sources = [START] if group == "errors" else last
        for src in sources:
            for dst in g_entries:
                b.edge(src, dst, "dashed", style_label)
        if group == "finally":
            last = g_exits or last
    b.topo.nodes[END] = TopoNode(END, "end", "", "end")
    for src in exits or [START]:
        b.edge(src, END)
    return b.topo


# Graphviz escapes: "\\n" is a centred line break inside a label.
def _node_attrs(node: TopoNode, summary: TaskStateSummary | None, colour: bool) -> dict[str, str]:
    if node.kind in ("start", "end"):
        return {"shape": "circle", "label": node.label, "fontsize": "9", "width": "0.45", "fixedsize": "true"}
    label = f"{node.label}\\n{node.type}" if node.type else node.label
    attrs = {
        "shape": "box",
        "style": "rounded,filled",
        "fontsize": "10",
        "fillcolor": "#ffffff",
        "color": "#6c757d",
    }
    if node.kind == "flowable":
        attrs["shape"] = "box"
        attrs["style"] = "filled"
    if colour:
        if summary is None:
            attrs["fillcolor"] = "#f4f5f7"
            attrs["fontcolor"] = "#8a9099"
            label += "\\nnot run"
        else:
            attrs["fillcolor"] = STATE_COLORS.get(summary.state, STATE_COLORS[State.UNSPECIFIED])
            attrs["fontcolor"] = "#ffffff"
            attrs["color"] = attrs["fillcolor"]
            label += f"\\n{summary.caption}"
    attrs["label"] = label
    return attrs


def topology_dot(
    topology: Topology, states: Mapping[str, TaskStateSummary] | None = None, *, rankdir: str = "LR"
) -> graphviz.Digraph:
    """Renders a topology as a Graphviz digraph (flowables and the flow's errors/finally as boxes).

    Args:
        topology: From :func:`flow_topology`.
        states: Task id -> state summary of one execution; when given, every task node is
            filled with its state's colour and captioned with it (``not run`` when absent).
        rankdir: Graphviz direction, ``"LR"`` (left to right) or ``"TB"``.
    """
    colour = states is not None
    dot = graphviz.Digraph("flow")
    dot.attr(rankdir=rankdir, fontname="Helvetica", fontsize="10", nodesep="0.25", ranksep="0.35")
    dot.attr("node", fontname="Helvetica")
    dot.attr("edge", color="#8a9099", arrowsize="0.6")

    children: dict[str | None, list[str]] = {}
    for cluster_id, parent in topology.clusters.items():
        children.setdefault(parent, []).append(cluster_id)
    members: dict[str | None, list[TopoNode]] = {}
    for node in topology.nodes.values():
        members.setdefault(node.cluster, []).append(node)

    def fill(graph: graphviz.Digraph, cluster: str | None) -> None:
        for node in members.get(cluster, []):
            if node.id in topology.clusters and node.cluster == cluster:
                continue  # a flowable's node is drawn inside its own box
            graph.node(node.id, **_node_attrs(node, (states or {}).get(node.id), colour))
        for sub in children.get(cluster, []):
            with graph.subgraph(name=f"cluster_{sub}") as box:
                box.attr(
                    label=topology.cluster_labels.get(sub, sub),
                    style="rounded,dashed",
                    color="#adb5bd",
                    fontsize="9",
                    fontcolor="#6c757d",
                )
                if sub in topology.nodes:
                    node = topology.nodes[sub]
                    box.node(node.id, **_node_attrs(node, (states or {}).get(node.id), colour))
                fill(box, sub)

    fill(dot, None)
    for edge in topology.edges:
        attrs = {"style": edge.style}
        if edge.label:
            attrs["label"] = edge.label
            attrs["fontsize"] = "8"
        dot.edge(edge.src, edge.dst, **attrs)
    return dot
