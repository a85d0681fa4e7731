"""Executions: filtered, server-side paged list; executions per state over time; live refresh."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from itertools import islice

import plotly.io  # noqa: F401  (imported early: plotly's lazy imports are slow on first chart)
import streamlit as st

from dashboard.api import client, show_error, timed
from dashboard.charts import state_buckets, state_counts_figure
from dashboard.model import execution_rows, namespace_entries
from dashboard.ui import execution_link, go_to
from worker_sdk.errors import KestrelError
from worker_sdk.types import State

#: Executions the chart counts at most (the API has no aggregate; see the caption), and how long
#: its counts are reused (live refresh redraws the list every few seconds, the chart less often).
CHART_LIMIT = 1000
CHART_TTL_SECONDS = 15
REFRESH_SECONDS = 3

st.title("Executions")
kestrel = client()


@st.cache_data(ttl=15, show_spinner=False)
def _flows(server: str) -> list[tuple[str, str]]:
    return [(f.namespace, f.id) for f in kestrel.list_flows()]


try:
    flows = _flows(kestrel.server)
except KestrelError as err:
    show_error(err, "Cannot list flows")
    flows = []

query = st.query_params
entries = namespace_entries(ns for ns, _ in flows)
ns_options = ["", *(e.namespace for e in entries)]
ns_labels = {"": "all namespaces", **{e.namespace: e.label for e in entries}}
wanted_ns = query.get("namespace", "")
if wanted_ns and wanted_ns not in ns_options:
    ns_options.append(wanted_ns)
    ns_labels[wanted_ns] = wanted_ns

c1, c2, c3, c4, c5 = st.columns([3, 3, 4, 1.3, 1.4])
namespace = c1.selectbox(
    "Namespace", ns_options, index=ns_options.index(wanted_ns), format_func=ns_labels.get, key="ex_ns"
)
flow_options = [""] + sorted(
    {fid for ns, fid in flows if not namespace or ns == namespace or ns.startswith(namespace + ".")}
)
wanted_flow = query.get("flow", "")
if wanted_flow and wanted_flow not in flow_options:
    flow_options.append(wanted_flow)
flow_id = c2.selectbox(
    "Flow",
    flow_options,
    index=flow_options.index(wanted_flow) if wanted_flow in flow_options else 0,
    format_func=lambda f: f or "all flows",
    key="ex_flow",
)
state_names = [s.value for s in State if s is not State.UNSPECIFIED]
states = c3.multiselect(
    "State", state_names, default=[s for s in query.get_all("state") if s in state_names], key="ex_states"
)
page_size = c4.selectbox("Page size", [25, 50, 100, 200], index=1, key="ex_page_size")
live = c5.toggle("Live", value=False, help=f"Refresh every {REFRESH_SECONDS} s", key="ex_live")

filters = (namespace, flow_id, tuple(states), page_size)
if st.session_state.get("ex_filters") != filters:
    st.session_state["ex_filters"] = filters
    st.session_state["ex_tokens"] = [""]  # page tokens: index i is the token of page i


@st.cache_data(ttl=CHART_TTL_SECONDS, show_spinner=False)
def _recent_points(
    server: str, namespace: str, flow_id: str, states: tuple[str, ...]
) -> tuple[list[tuple[datetime | None, State]], float]:
    """(start date, state) of the latest CHART_LIMIT executions matching the filters, and the
    milliseconds the calls took."""
    recent, elapsed = timed(
        lambda: list(islice(kestrel.iter_executions(namespace, flow_id, states, page_size=500), CHART_LIMIT))
    )
    return [(e.start_date or e.state.start_date, e.state.current) for e in recent], elapsed


@st.fragment(run_every=REFRESH_SECONDS if live else None)
def listing() -> None:
    """The page of executions and the chart; re-run alone when live refresh is on."""
    tokens: list[str] = st.session_state["ex_tokens"]
    now = datetime.now(UTC)
    try:
        page, elapsed_ms = timed(
            lambda: kestrel.list_executions(namespace, flow_id, states, page_size, tokens[-1])
        )
    except KestrelError as err:
        show_error(err, "Cannot list executions")
        return
    rows = execution_rows(page.executions, now)
    for row in rows:
        row["open"] = execution_link(row["id"])
    st.caption(
        f"Page {len(tokens)} · {len(rows)} execution(s) · ListExecutions answered in {elapsed_ms:.0f} ms"
        f" · {now:%H:%M:%S} UTC"
    )
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_order=[
            "open",
            "state",
            "namespace",
            "flow",
            "revision",
            "start (UTC)",
            "end (UTC)",
            "duration",
            "labels",
            "id",
        ],
        column_config={"open": st.column_config.LinkColumn("open", display_text="open")},
        key="ex_table",
    )
    p1, p2, p3 = st.columns([1, 1, 6])
    # callbacks run before the next run, so the page drawn after a click is the one asked for
    p1.button("← Newer", disabled=len(tokens) == 1, key="ex_prev", on_click=tokens.pop)
    p2.button(
        "Older →",
        disabled=not page.next_page_token,
        key="ex_next",
        on_click=tokens.append,
        args=(page.next_page_token or "",),
    )
    if rows:
        choice = p3.selectbox(
            "Open an execution",
            [r["id"] for r in rows],
            format_func=lambda i: next(
                f"{r['flow']} · {r['state']} · {r['start (UTC)']} · {i}" for r in rows if r["id"] == i
            ),
            key="ex_open_choice",
            label_visibility="collapsed",
        )
        if p3.button("Open execution", key="ex_open"):
            go_to("execution", id=choice)

    st.subheader("Executions per state")
    try:
        points, chart_ms = _recent_points(kestrel.server, namespace, flow_id, tuple(states))
    except KestrelError as err:
        show_error(err, "Cannot count executions")
        return
    totals = dict(Counter(state for _, state in points).most_common())
    if totals:
        cols = st.columns(min(len(totals), 6))
        for col, (state, count) in zip(cols, list(totals.items())[:6], strict=False):
            col.metric(str(state), count)
        st.plotly_chart(state_counts_figure(state_buckets(points)), key="ex_chart")
    more = " or more" if len(points) >= CHART_LIMIT else ""
    st.caption(
        f"Counted from the {len(points)}{more} most recent executions matching the filters "
        f"({chart_ms:.0f} ms, reused for {CHART_TTL_SECONDS} s): the API has no count or aggregate RPC yet."
    )


listing()
