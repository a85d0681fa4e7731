"""Chart builders: pure functions from API data to Plotly figures.

- :func:`gantt_rows` / :func:`gantt_figure`: an execution's task runs and attempts on a time axis,
  nested under their flowable parents, coloured by state;
- :func:`state_buckets` / :func:`state_counts_figure`: executions per state over time.

The functions take the client's dataclasses and an explicit ``now`` (for things still running),
so tests build inputs by hand and check the figure's data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import plotly.graph_objects as go

from dashboard.model import STATE_COLORS, format_duration
from worker_sdk.types import Execution, State, TaskRun

__all__ = [
    "BUCKET_WIDTHS",
    "GanttRow",
    "StateBuckets",
    "gantt_figure",
    "gantt_rows",
    "state_buckets",
    "state_counts_figure",
    "state_totals",
]

# Pixels per Gantt row and the margin around them.
_ROW_PX = 22
_GANTT_MARGIN_PX = 90


@dataclass(frozen=True)
class GanttRow:
    """One bar of the Gantt chart.

    Attributes:
        key: Unique row key (the task run id, or ``<task run id>#<attempt>``).
        label: Text on the y axis, indented by depth (``"  ↳ attempt 2"``).
        depth: Nesting depth: 0 for top-level task runs, +1 under each flowable parent, attempts
            one deeper than their task run.
        kind: ``"task_run"`` or ``"attempt"``.
        task_id: The task's id.
        value: Loop value, ``None`` outside loops.
        state: State the bar is coloured by.
        start: Bar start (UTC).
        end: Bar end (UTC); ``now`` for something still running.
        running: Whether it has not ended yet (``end`` is ``now``).
        worker: Worker id of an attempt, ``None`` otherwise.
        run_start: When a task run first entered RUNNING (``None`` if it never ran): the bar is
            drawn pale from ``start`` (created, waiting for a worker) to ``run_start``, then in
            full colour.
    """

    key: str
    label: str
    depth: int
    kind: str
    task_id: str
    value: str | None
    state: State
    start: datetime
    end: datetime
    running: bool = False
    worker: str | None = None
    run_start: datetime | None = None

    @property
    def waiting(self) -> timedelta:
        """Time between ``start`` and ``run_start`` (zero when it never waited or never ran)."""
        if self.run_start is None:
            return timedelta(0)
        return min(max(self.run_start - self.start, timedelta(0)), self.duration)

    @property
    def duration(self) -> timedelta:
        """``end - start`` (never negative)."""
        return max(self.end - self.start, timedelta(0))


def _ordered_task_runs(task_runs: Sequence[TaskRun]) -> list[tuple[TaskRun, int]]:
    """Task runs depth first under their parents, siblings in creation order, with depth."""
    ids = {tr.id for tr in task_runs}
    children: dict[str | None, list[TaskRun]] = {}
    for tr in task_runs:
        parent = tr.parent_task_run_id if tr.parent_task_run_id in ids else None
        children.setdefault(parent, []).append(tr)
    out: list[tuple[TaskRun, int]] = []
    stack: list[tuple[TaskRun, int]] = [(tr, 0) for tr in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        tr, depth = stack.pop()
        if tr.id in seen:  # a malformed parent cycle must not loop for ever
            continue
        seen.add(tr.id)
        out.append((tr, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(tr.id, [])))
    # task runs only reachable through a cycle still get a row, at the top level
    out.extend((tr, 0) for tr in task_runs if tr.id not in seen)
    return out


def gantt_rows(execution: Execution, now: datetime, *, attempts: str = "multiple") -> list[GanttRow]:
    """The rows of an execution's Gantt chart, in display order.

    Each task run is one row, placed after its flowable parent and indented one level deeper
    (``ForEach`` iterations show their loop value). Attempts get rows of their own under their
    task run: with ``attempts="multiple"`` only when a task run has more than one (retries,
    lease expiries), with ``"all"`` always, with ``"none"`` never.

    A task run or attempt with no start date yet starts and ends at ``now``; one not ended yet
    ends at ``now`` and is marked ``running``.

    Args:
        execution: The execution with its task runs (``GetExecution``).
        now: Current time, UTC-aware.
        attempts: ``"multiple"``, ``"all"`` or ``"none"``.

    Raises:
        ValueError: An unknown ``attempts`` mode.
    """
    if attempts not in ("multiple", "all", "none"):
        raise ValueError(f"attempts must be 'multiple', 'all' or 'none', got {attempts!r}")
    rows: list[GanttRow] = []
    for tr, depth in _ordered_task_runs(execution.task_runs):
        start = tr.state.start_date or now
        end = tr.state.end_date
        run_start = next((h.date for h in tr.state.histories if h.state is State.RUNNING and h.date), None)
        label = f"{'  ' * depth}{tr.task_id}" + (f" [{tr.value}]" if tr.value else "")
        rows.append(
            GanttRow(
                key=tr.id,
                label=label,
                depth=depth,
                kind="task_run",
                task_id=tr.task_id,
                value=tr.value,
                state=tr.state.current,
                start=start,
                end=end or max(now, start),
                running=end is None,
                worker=(tr.attempts[-1].worker_id if tr.attempts else None),
                run_start=run_start,
            )
        )
        if attempts == "none" or (attempts == "multiple" and len(tr.attempts) < 2):
            continue
        for attempt in tr.attempts:
            a_start = attempt.start_date or attempt.state.start_date or start
            a_end = attempt.end_date or attempt.state.end_date
            rows.append(
                GanttRow(
                    key=f"{tr.id}#{attempt.attempt}",
                    label=f"{'  ' * (depth + 1)}↳ attempt {attempt.attempt}",
                    depth=depth + 1,
                    kind="attempt",
                    task_id=tr.task_id,
                    value=tr.value,
                    state=attempt.state.current,
                    start=a_start,
                    end=a_end or max(now, a_start),
                    running=a_end is None,
                    worker=attempt.worker_id,
                )
            )
    return rows


def gantt_figure(rows: Sequence[GanttRow], *, title: str = "") -> go.Figure:
    """A horizontal-bar Gantt chart of ``rows``: one trace per state (its legend entry), rows
    top to bottom in the given order, bars from ``start`` to ``end`` on a date axis. The part of
    a task run spent waiting for a worker (``start`` to ``run_start``) is a pale bar of its own
    trace, ``waiting``.

    Hovering a bar shows the task, loop value, state, duration and worker.
    """
    keys = [r.key for r in rows]
    fig = go.Figure()
    waited = [r for r in rows if r.waiting > timedelta(0)]
    if waited:
        fig.add_trace(
            go.Bar(
                name="waiting",
                orientation="h",
                y=[r.key for r in waited],
                base=[r.start.isoformat() for r in waited],
                x=[r.waiting.total_seconds() * 1000.0 for r in waited],
                marker_color=[STATE_COLORS.get(r.state, STATE_COLORS[State.UNSPECIFIED]) for r in waited],
                marker_opacity=0.3,
                customdata=[[r.label.strip(), format_duration(r.waiting)] for r in waited],
                hovertemplate="<b>%{customdata[0]}</b><br>waiting for a worker %{customdata[1]}<extra></extra>",
            )
        )
    for state in dict.fromkeys(r.state for r in rows):
        mine = [r for r in rows if r.state is state]
        fig.add_trace(
            go.Bar(
                name=str(state),
                orientation="h",
                y=[r.key for r in mine],
                base=[(r.start + r.waiting).isoformat() for r in mine],
                x=[max((r.duration - r.waiting).total_seconds() * 1000.0, 1.0) for r in mine],
                marker_color=STATE_COLORS.get(state, STATE_COLORS[State.UNSPECIFIED]),
                marker_opacity=[0.55 if r.kind == "attempt" else 1.0 for r in mine],
                customdata=[
                    [
                        r.task_id,
                        r.value or "",
                        str(r.state) + (" (running)" if r.running else ""),
                        format_duration(r.duration),
                        r.worker or "",
                        r.label.strip(),
                    ]
                    for r in mine
                ],
                hovertemplate=(
                    "<b>%{customdata[5]}</b><br>task %{customdata[0]} %{customdata[1]}"
                    "<br>%{customdata[2]} · %{customdata[3]}<br>worker %{customdata[4]}<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        title=title or None,
        barmode="overlay",
        height=max(220, _ROW_PX * len(rows) + _GANTT_MARGIN_PX),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 30},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        xaxis={"type": "date", "title": None},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": keys,
            "tickmode": "array",
            "tickvals": keys,
            "ticktext": [r.label for r in rows],
            "autorange": "reversed",
            "title": None,
        },
    )
    return fig


# -- executions per state over time ----------------------------------------------------------

#: Bucket widths tried, smallest first; the first that gives at most ``max_buckets`` is used.
BUCKET_WIDTHS: tuple[timedelta, ...] = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=7),
    timedelta(days=30),
)


@dataclass(frozen=True)
class StateBuckets:
    """Executions counted per state and time bucket.

    Attributes:
        starts: Start of each bucket (UTC), ascending, contiguous.
        width: Width of every bucket.
        counts: State -> one count per bucket (states with no execution are absent).
    """

    starts: list[datetime] = field(default_factory=list)
    width: timedelta = timedelta(minutes=1)
    counts: dict[State, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Executions counted."""
        return sum(sum(v) for v in self.counts.values())


def _floor(value: datetime, width: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=value.tzinfo)
    return epoch + ((value - epoch) // width) * width


def state_buckets(points: Iterable[tuple[datetime | None, State]], *, max_buckets: int = 60) -> StateBuckets:
    """Counts ``(start date, state)`` points per state in equal time buckets.

    The bucket width is the smallest of :data:`BUCKET_WIDTHS` giving at most ``max_buckets``
    buckets over the points' span (the largest width if none does). Points without a date are
    left out.

    Args:
        points: One ``(start_date, state)`` per execution (UTC-aware dates).
        max_buckets: Upper bound on the number of buckets (>= 1).

    Raises:
        ValueError: ``max_buckets`` < 1.
    """
    if max_buckets < 1:
        raise ValueError(f"max_buckets must be >= 1, got {max_buckets}")
    dated = [(d, s) for d, s in points if d is not None]
    if not dated:
        return StateBuckets()
    first = min(d for d, _ in dated)
    last = max(d for d, _ in dated)
    width = BUCKET_WIDTHS[-1]
    for candidate in BUCKET_WIDTHS:
        if (_floor(last, candidate) - _floor(first, candidate)) // candidate + 1 <= max_buckets:
            width = candidate
            break
    origin = _floor(first, width)
    n = (_floor(last, width) - origin) // width + 1
    counts: dict[State, list[int]] = {}
    for date, state in dated:
        counts.setdefault(state, [0] * n)[(_floor(date, width) - origin) // width] += 1
    return StateBuckets([origin + i * width for i in range(n)], width, counts)


def state_totals(executions: Iterable[Execution]) -> dict[State, int]:
    """Number of executions in each current state, most frequent first."""
    return dict(Counter(e.state.current for e in executions).most_common())


def state_counts_figure(buckets: StateBuckets, *, title: str = "") -> go.Figure:
    """Stacked bars: executions started per time bucket, one colour per state."""
    fig = go.Figure()
    order = [s for s in STATE_COLORS if s in buckets.counts]
    for state in order:
        fig.add_trace(
            go.Bar(
                name=str(state),
                x=[s.isoformat() for s in buckets.starts],
                y=buckets.counts[state],
                marker_color=STATE_COLORS[state],
                hovertemplate=f"{state}: %{{y}}<br>%{{x}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or None,
        barmode="stack",
        height=260,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 30},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        xaxis={"type": "date", "title": None},
        yaxis={"title": "executions", "rangemode": "tozero"},
        bargap=0.1,
    )
    return fig
