"""Pure helpers turning API data (the client's dataclasses) into what the pages show.

Nothing here talks to the network or to Streamlit; every function takes plain values and returns
plain values (lists, dicts, dataclasses), so the tests in ``tests/unit/dashboard`` call them
directly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from worker_sdk.types import Execution, Flow, LogEntry, LogLevel, State, TaskRun

__all__ = [
    "LEVEL_ORDER",
    "STATE_COLORS",
    "NamespaceEntry",
    "TaskStateSummary",
    "declared_triggers",
    "execution_rows",
    "file_rows",
    "filter_logs",
    "fleet_rows",
    "json_ready",
    "labels_text_to_dict",
    "flow_rows",
    "format_duration",
    "log_rows",
    "namespace_entries",
    "parse_flow_source",
    "state_color",
    "summarise_task_states",
    "task_run_rows",
    "worker_rows_from_executions",
]

#: Colour of each state, used by every chart, graph and badge (Kestra's palette, roughly).
STATE_COLORS: dict[State, str] = {
    State.CREATED: "#9aa5b1",
    State.QUEUED: "#b0a3d4",
    State.RUNNING: "#1f77d0",
    State.PAUSED: "#17a2b8",
    State.RETRYING: "#a855f7",
    State.RESTARTED: "#6f42c1",
    State.KILLING: "#e8590c",
    State.KILLED: "#8b1e3f",
    State.SUCCESS: "#2e9e5b",
    State.WARNING: "#e0a400",
    State.FAILED: "#d62f2f",
    State.CANCELLED: "#6c757d",
    State.RETRIED: "#7a8793",
    State.SKIPPED: "#c8ced3",
    State.UNSPECIFIED: "#dddddd",
}

#: Log levels from most to least verbose (a "minimum level" filter keeps this index and above).
LEVEL_ORDER: tuple[LogLevel, ...] = (
    LogLevel.TRACE,
    LogLevel.DEBUG,
    LogLevel.INFO,
    LogLevel.WARN,
    LogLevel.ERROR,
)

# When several task runs share a task id (loops), the one state shown for the task: the first of
# this list any of them is in. Unfinished work first, then Kestra's final-state priority
# (KILLED > FAILED > WARNING > PAUSED > SUCCESS).
_STATE_PRIORITY: tuple[State, ...] = (
    State.RUNNING,
    State.KILLING,
    State.RETRYING,
    State.RESTARTED,
    State.QUEUED,
    State.CREATED,
    State.KILLED,
    State.FAILED,
    State.WARNING,
    State.PAUSED,
    State.CANCELLED,
    State.SUCCESS,
    State.RETRIED,
    State.SKIPPED,
    State.UNSPECIFIED,
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def state_color(state: State | str) -> str:
    """Hex colour of a state (``"#rrggbb"``); unknown names get the UNSPECIFIED grey."""
    try:
        return STATE_COLORS[State(str(state))]
    except ValueError:
        return STATE_COLORS[State.UNSPECIFIED]


def format_duration(value: timedelta | None) -> str:
    """A short human duration: ``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; ``""`` for None."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 0:
        return "0 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


# -- namespaces and flows -------------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceEntry:
    """One node of the namespace tree, in display order.

    Attributes:
        namespace: Full dotted name, e.g. ``company.team``.
        depth: 0 for a root (``company``), 1 for its children, ...
        flow_count: Flows stored directly in this namespace (not below it).
        total: Flows in this namespace and every namespace below it.
    """

    namespace: str
    depth: int
    flow_count: int
    total: int

    @property
    def label(self) -> str:
        """Indented label for a select box: the last name part under its parent."""
        leaf = self.namespace.rsplit(".", 1)[-1]
        return f"{'  ' * self.depth}{'└ ' if self.depth else ''}{leaf} ({self.total})"


def namespace_entries(namespaces: Iterable[str]) -> list[NamespaceEntry]:
    """The namespace tree of the given flow namespaces, depth first and sorted.

    Every dotted prefix becomes a node (``company.team.a`` gives ``company``, ``company.team`` and
    ``company.team.a``), as in Kestra's namespace explorer.

    Args:
        namespaces: The namespace of each flow (one entry per flow; repeats count flows).

    Returns:
        Nodes in display order: each namespace directly followed by its children.
    """
    direct = Counter(ns for ns in namespaces if ns)
    every: set[str] = set()
    for ns in direct:
        parts = ns.split(".")
        every.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    totals: Counter[str] = Counter()
    for ns, count in direct.items():
        parts = ns.split(".")
        for i in range(len(parts)):
            totals[".".join(parts[: i + 1])] += count
    ordered = sorted(every, key=lambda ns: ns.split("."))
    return [NamespaceEntry(ns, ns.count("."), direct.get(ns, 0), totals[ns]) for ns in ordered]


def flow_rows(flows: Iterable[Flow]) -> list[dict[str, Any]]:
    """Table rows for a flow list: namespace, id, revision, inputs, tasks, labels, flags."""
    return [
        {
            "namespace": f.namespace,
            "flow": f.id,
            "revision": f.revision,
            "tasks": f.task_count,
            "inputs": ", ".join(i.id for i in f.inputs),
            "labels": ", ".join(f"{k}={v}" for k, v in f.labels.items()),
            "description": f.description,
            "disabled": f.disabled,
            "deleted": f.deleted,
        }
        for f in sorted(flows, key=lambda f: (f.namespace, f.id))
    ]


def parse_flow_source(source: str) -> dict[str, Any]:
    """The flow YAML as plain dicts and lists; ``{}`` when it is not a YAML mapping.

    The server validated the source when it was registered; the dashboard reads it only to draw
    (topology, trigger list, SELECT values), so a source it cannot read draws nothing.
    """
    try:
        data = YAML(typ="safe", pure=True).load(source or "")
    except YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def declared_triggers(flow: Flow) -> list[dict[str, Any]]:
    """The ``triggers`` a flow's source declares: id, type, and the main schedule fields.

    Used by the Triggers page while the control plane has no trigger API: it shows what is
    declared, not what the scheduler does.
    """
    doc = parse_flow_source(flow.source)
    rows = []
    for trig in doc.get("triggers") or []:
        if not isinstance(trig, dict):
            continue
        rows.append(
            {
                "namespace": flow.namespace,
                "flow": flow.id,
                "trigger": str(trig.get("id", "")),
                "type": str(trig.get("type", "")).rsplit(".", 1)[-1],
                "cron": str(trig.get("cron", "") or ""),
                "disabled": bool(trig.get("disabled", False)),
                "full type": str(trig.get("type", "")),
            }
        )
    return rows


# -- executions -----------------------------------------------------------------------------


def _execution_end(execution: Execution) -> datetime | None:
    return execution.end_date or execution.state.end_date


def _execution_start(execution: Execution) -> datetime | None:
    return execution.start_date or execution.state.start_date


def execution_rows(executions: Iterable[Execution], now: datetime) -> list[dict[str, Any]]:
    """Table rows for an execution list.

    Args:
        executions: Executions as listed (no task runs needed).
        now: Current time (UTC, aware), for the duration of running executions.

    Returns:
        One dict per execution: id, namespace, flow, revision, state, start, end, duration,
        labels; dates as ``YYYY-MM-DD HH:MM:SS`` UTC.
    """
    rows = []
    for e in executions:
        start, end = _execution_start(e), _execution_end(e)
        duration = (end or now) - start if start is not None else None
        rows.append(
            {
                "id": e.id,
                "namespace": e.namespace,
                "flow": e.flow_id,
                "revision": e.flow_revision,
                "state": str(e.state.current),
                "start (UTC)": _iso(start),
                "end (UTC)": _iso(end),
                "duration": format_duration(duration),
                "labels": ", ".join(f"{k}={v}" for k, v in e.labels.items()),
            }
        )
    return rows


@dataclass(frozen=True)
class TaskStateSummary:
    """The state of one task of a flow in one execution, over all its task runs.

    Attributes:
        state: The state shown for the task (see :func:`summarise_task_states`).
        counts: Number of task runs per state (loops run a task many times).
    """

    state: State
    counts: dict[State, int] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        """Total number of task runs of the task."""
        return sum(self.counts.values())

    @property
    def caption(self) -> str:
        """``SUCCESS`` for one run; ``200 runs: 198 SUCCESS, 2 FAILED`` for several."""
        if self.runs <= 1:
            return str(self.state)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))
        return f"{self.runs} runs: {parts}"


def summarise_task_states(task_runs: Iterable[TaskRun]) -> dict[str, TaskStateSummary]:
    """Task id -> the state to colour its node with, over every task run of that task.

    A task with unfinished runs shows RUNNING (or the unfinished state); otherwise Kestra's final
    state priority applies: KILLED > FAILED > WARNING > PAUSED > SUCCESS.
    """
    counts: dict[str, Counter[State]] = {}
    for tr in task_runs:
        counts.setdefault(tr.task_id, Counter())[tr.state.current] += 1
    out = {}
    for task_id, counter in counts.items():
        shown = next(s for s in (*_STATE_PRIORITY, *counter) if counter.get(s))
        out[task_id] = TaskStateSummary(shown, dict(counter))
    return out


def task_run_rows(execution: Execution, now: datetime) -> list[dict[str, Any]]:
    """Table rows of an execution's task runs, in creation order."""
    rows = []
    for tr in execution.task_runs:
        start = tr.state.start_date
        end = tr.state.end_date
        rows.append(
            {
                "task": tr.task_id,
                "value": tr.value or "",
                "type": tr.task_type.rsplit(".", 1)[-1],
                "state": str(tr.state.current),
                "attempts": len(tr.attempts),
                "worker": (tr.attempts[-1].worker_id or "") if tr.attempts else "",
                "start (UTC)": _iso(start),
                "duration": format_duration((end or now) - start if start else None),
                "error": tr.error or "",
                "id": tr.id,
            }
        )
    return rows


# -- logs -----------------------------------------------------------------------------------


def filter_logs(
    entries: Iterable[LogEntry],
    *,
    min_level: LogLevel | str | None = None,
    search: str = "",
    task_id: str | None = None,
) -> list[LogEntry]:
    """Log lines at or above ``min_level``, containing ``search`` (case-insensitive), of ``task_id``.

    Args:
        entries: Lines in sequence order.
        min_level: Minimum level (``None``/``UNSPECIFIED``: all lines).
        search: Substring searched in the message and task id; empty: no search.
        task_id: Only this task's lines; ``None``: every task.

    Returns:
        The matching lines, order kept.
    """
    floor = 0
    if min_level not in (None, "", LogLevel.UNSPECIFIED):
        floor = LEVEL_ORDER.index(LogLevel(str(min_level).upper()))
    needle = search.casefold().strip()
    out = []
    for entry in entries:
        rank = LEVEL_ORDER.index(entry.level) if entry.level in LEVEL_ORDER else len(LEVEL_ORDER)
        if rank < floor:
            continue
        if task_id is not None and entry.task_id != task_id:
            continue
        if (
            needle
            and needle not in entry.message.casefold()
            and needle not in (entry.task_id or "").casefold()
        ):
            continue
        out.append(entry)
    return out


def log_rows(entries: Iterable[LogEntry]) -> list[dict[str, Any]]:
    """Table rows of log lines: time, level, task, attempt, message."""
    return [
        {
            "time (UTC)": e.timestamp.strftime("%H:%M:%S.%f")[:-3] if e.timestamp else "",
            "level": str(e.level),
            "task": e.task_id or "",
            "attempt": e.attempt or "",
            "message": e.message,
        }
        for e in entries
    ]


# -- workers --------------------------------------------------------------------------------


def worker_rows_from_executions(executions: Sequence[Execution]) -> list[dict[str, Any]]:
    """Workers seen in the attempts of the given executions, newest activity first.

    The worker API has no listing RPC yet; this is what the executions reveal: each worker id
    with its attempts, the attempts it runs now (RUNNING), the task types it ran and when it was
    last seen claiming or finishing an attempt.

    Args:
        executions: Executions with their task runs.

    Returns:
        One dict per worker id: worker, running now, attempts, task types, last seen (UTC).
    """
    stats: dict[str, dict[str, Any]] = {}
    for execution in executions:
        for tr in execution.task_runs:
            for attempt in tr.attempts:
                if not attempt.worker_id:
                    continue
                row = stats.setdefault(
                    attempt.worker_id, {"running": 0, "attempts": 0, "types": set(), "last": None}
                )
                row["attempts"] += 1
                if attempt.state.current in (State.RUNNING, State.CREATED):
                    row["running"] += 1
                if tr.task_type:
                    row["types"].add(tr.task_type.rsplit(".", 1)[-1])
                seen = attempt.end_date or attempt.start_date
                if seen is not None and (row["last"] is None or seen > row["last"]):
                    row["last"] = seen
    ordered = sorted(stats.items(), key=lambda kv: kv[1]["last"] or _EPOCH, reverse=True)
    return [
        {
            "worker": worker,
            "running now": s["running"],
            "attempts": s["attempts"],
            "task types": ", ".join(sorted(s["types"])),
            "last seen (UTC)": _iso(s["last"]),
        }
        for worker, s in ordered
    ]


def labels_text_to_dict(text: str) -> tuple[dict[str, str], list[str]]:
    """Parses ``key=value`` lines (or comma-separated pairs) into labels.

    Returns:
        ``(labels, errors)``: the labels, and one message per malformed entry.
    """
    labels: dict[str, str] = {}
    errors = []
    for raw in text.replace(",", "\n").splitlines():
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            errors.append(f"label {item!r}: expected key=value")
            continue
        labels[key.strip()] = value.strip()
    return labels, errors


def json_ready(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """``value`` or ``{}``, for ``st.json`` (which shows nothing useful for ``None``)."""
    return dict(value or {})


def _parse_instant(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def fleet_rows(workers: Iterable[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Table rows of the live fleet from a worker listing (``ListWorkers``, as plain dicts).

    Args:
        workers: One dict per worker with the listing's field names (``id``, ``hostname``,
            ``sdk``, ``task_types``, ``worker_group``, ``concurrency``, ``state``,
            ``last_heartbeat_at`` as ISO text, ``running_task_runs``, ``labels`` as
            ``[{"key", "value"}]``); missing fields show empty.
        now: Current time (UTC, aware), for the heartbeat's age.

    Returns:
        Rows ACTIVE first, then STOPPED, DEAD and others, each group by id: worker, state, host,
        sdk, group, slots in use (``running/concurrency``), last heartbeat and its age, task
        types (short names), labels.
    """
    order = {"ACTIVE": 0, "STOPPED": 1, "DEAD": 2}
    rows = []
    for w in sorted(workers, key=lambda w: (order.get(str(w.get("state", "")), 3), str(w.get("id", "")))):
        beat = _parse_instant(w.get("last_heartbeat_at"))
        labels = w.get("labels") or []
        rows.append(
            {
                "worker": str(w.get("id", "")),
                "state": str(w.get("state", "")),
                "host": str(w.get("hostname", "")),
                "sdk": str(w.get("sdk", "")),
                "group": str(w.get("worker_group", "") or "default"),
                "slots in use": f"{int(w.get('running_task_runs') or 0)}/{int(w.get('concurrency') or 0)}",
                "last heartbeat (UTC)": _iso(beat),
                "heartbeat age": format_duration(now - beat) if beat else "",
                "task types": ", ".join(sorted(str(t).rsplit(".", 1)[-1] for t in w.get("task_types") or [])),
                "labels": ", ".join(
                    f"{lb.get('key')}={lb.get('value')}" for lb in labels if isinstance(lb, Mapping)
                ),
            }
        )
    return rows


def file_rows(files: Iterable[Any], task_runs: Iterable[TaskRun]) -> list[dict[str, Any]]:
    """Table rows of an execution's files in internal storage (``list_execution_files``).

    Args:
        files: Objects with ``uri``, ``size`` (bytes), ``task_run_id`` and ``created_at``.
        task_runs: The execution's task runs, to name the task (and loop value) that wrote each.

    Returns:
        One dict per file: file name, task, size (human), URI.
    """
    names = {tr.id: tr.task_id + (f" [{tr.value}]" if tr.value else "") for tr in task_runs}
    rows = []
    for f in files:
        size = int(getattr(f, "size", 0) or 0)
        shown = (
            f"{size} B"
            if size < 1024
            else f"{size / 1024:.1f} KiB"
            if size < 1024**2
            else f"{size / 1024**2:.1f} MiB"
        )
        rows.append(
            {
                "file": str(f.uri).rsplit("/", 1)[-1],
                "task": names.get(getattr(f, "task_run_id", None) or "", "(input)"),
                "size": shown,
                "uri": str(f.uri),
            }
        )
    return rows
