"""Flows: namespace tree, flow list, and a flow's source, revisions (with diff), topology and the
Execute form generated from its typed inputs."""

from __future__ import annotations

import difflib

import streamlit as st

from dashboard.api import client, show_error
from dashboard.forms import collect_inputs, errors_by_input, input_fields
from dashboard.graphs import flow_topology, topology_dot
from dashboard.model import flow_rows, labels_text_to_dict, namespace_entries
from dashboard.ui import go_to, render_input_field, state_badge
from worker_sdk.errors import InvalidArgumentError, KestrelError, NotFoundError
from worker_sdk.types import Flow

st.title("Flows")
kestrel = client()

try:
    flows = kestrel.list_flows()
except KestrelError as err:
    show_error(err, "Cannot list flows")
    st.stop()
if not flows:
    st.info("No flow deployed yet: `kestrel flow deploy examples/`.")
    st.stop()

query = st.query_params
entries = namespace_entries(f.namespace for f in flows)
ns_options = ["", *(e.namespace for e in entries)]
labels = {"": f"all namespaces ({len(flows)})"}
labels.update({e.namespace: "\u2003" * e.depth + e.label.strip() for e in entries})
wanted_ns = query.get("namespace", "")
left, right = st.columns([1, 3])
with left:
    st.markdown("**Namespaces**")
    namespace = st.radio(
        "Namespace",
        ns_options,
        index=ns_options.index(wanted_ns) if wanted_ns in ns_options else 0,
        format_func=labels.get,
        label_visibility="collapsed",
        key="fl_ns",
    )
in_ns = [
    f for f in flows if not namespace or f.namespace == namespace or f.namespace.startswith(namespace + ".")
]
with right:
    st.dataframe(flow_rows(in_ns), hide_index=True, width="stretch", key="fl_table")
    uids = [f.uid for f in sorted(in_ns, key=lambda f: (f.namespace, f.id))]
    wanted = f"{query.get('namespace', '')}.{query.get('flow', '')}"
    chosen = st.selectbox("Flow", uids, index=uids.index(wanted) if wanted in uids else 0, key="fl_flow")

flow_ref = next(f for f in in_ns if f.uid == chosen)
try:
    flow = kestrel.get_flow(flow_ref.namespace, flow_ref.id)
except NotFoundError:
    st.error(f"Flow {chosen} no longer exists.")
    st.stop()
except KestrelError as err:
    show_error(err, f"Cannot load flow {chosen}")
    st.stop()

st.header(f"{flow.namespace}.{flow.id}")
st.caption(
    f"revision {flow.revision} · {flow.task_count} task(s)"
    + (f" · created {flow.created:%Y-%m-%d %H:%M:%S} UTC" if flow.created else "")
    + (" · disabled" if flow.disabled else "")
)
if flow.description:
    st.markdown(flow.description)


def _execute(flow: Flow) -> None:
    fields = input_fields(flow)
    with st.form(f"fl_execute_{flow.uid}"):
        top_error = st.empty()
        slots = {}
        values = {}
        for f in fields:
            values[f.id] = render_input_field(f, f"fl_in_{flow.uid}_{f.id}")
            slots[f.id] = st.empty()
        labels_text = st.text_area("Labels (key=value per line)", key=f"fl_labels_{flow.uid}", height=68)
        labels_slot = st.empty()
        submitted = st.form_submit_button("Execute", type="primary")
    if not fields:
        st.caption("This flow declares no inputs.")
    if not submitted:
        return
    inputs, errors = collect_inputs(fields, values)
    exec_labels, label_errors = labels_text_to_dict(labels_text)
    if label_errors:
        labels_slot.error("; ".join(label_errors))
    for input_id, message in errors.items():
        slots[input_id].error(message)
    if errors or label_errors:
        return
    try:
        execution = kestrel.start_execution(
            flow.namespace, flow.id, inputs=inputs, labels=exec_labels, revision=flow.revision
        )
    except InvalidArgumentError as err:
        per_field, other = errors_by_input(err.message, [f.id for f in fields])
        for input_id, message in per_field.items():
            slots[input_id].error(message)
        if other:
            top_error.error("\n".join(other))
        return
    except KestrelError as err:
        show_error(err, "Execution not started")
        return
    st.session_state["fl_started"] = execution.id
    st.success(f"Started execution {execution.id}")


tabs = st.tabs(["Execute", "Source", "Topology", "Revisions", "Executions"])
with tabs[0]:
    _execute(flow)
    started = st.session_state.get("fl_started")
    if started and st.button(f"Open execution {started}", key="fl_open_started"):
        go_to("execution", id=started)
with tabs[1]:
    st.code(flow.source, language="yaml", line_numbers=True)
with tabs[2]:
    st.graphviz_chart(topology_dot(flow_topology(flow.source)))
with tabs[3]:
    try:
        revisions = kestrel.list_flow_revisions(flow.namespace, flow.id)
    except KestrelError as err:
        show_error(err, "Cannot list revisions")
        revisions = []
    st.dataframe(
        [
            {
                "revision": r.revision,
                "created (UTC)": f"{r.created:%Y-%m-%d %H:%M:%S}" if r.created else "",
                "tasks": r.task_count,
                "inputs": ", ".join(i.id for i in r.inputs),
            }
            for r in reversed(revisions)
        ],
        hide_index=True,
        key="fl_revisions",
    )
    if len(revisions) >= 2:
        numbers = [r.revision for r in revisions]
        c1, c2 = st.columns(2)
        old = c1.selectbox("From revision", numbers, index=len(numbers) - 2, key="fl_rev_old")
        new = c2.selectbox("To revision", numbers, index=len(numbers) - 1, key="fl_rev_new")
        by_number = {r.revision: r.source for r in revisions}
        diff = "".join(
            difflib.unified_diff(
                by_number[old].splitlines(keepends=True),
                by_number[new].splitlines(keepends=True),
                fromfile=f"revision {old}",
                tofile=f"revision {new}",
            )
        )
        st.code(diff or "(identical)", language="diff")
    else:
        st.caption("Only one revision: nothing to compare.")
with tabs[4]:
    try:
        page = kestrel.list_executions(flow.namespace, flow.id, page_size=10)
    except KestrelError as err:
        show_error(err, "Cannot list executions")
    else:
        for e in page.executions:
            start = e.start_date or e.state.start_date
            st.markdown(
                f"{state_badge(e.state.current)} &nbsp; `{e.id}` · {start:%Y-%m-%d %H:%M:%S} UTC"
                if start
                else e.id,
                unsafe_allow_html=True,
            )
        if st.button("All executions of this flow", key="fl_all_exec"):
            go_to("executions", namespace=flow.namespace, flow=flow.id)
