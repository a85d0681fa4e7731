"""One execution: state, actions, Gantt, topology coloured by state, logs, task runs, data."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from dashboard.api import client, connection, show_error
from dashboard.charts import gantt_figure, gantt_rows
from dashboard.forms import collect_inputs, resume_fields
from dashboard.graphs import flow_topology, topology_dot
from dashboard.model import (
    LEVEL_ORDER,
    file_rows,
    filter_logs,
    format_duration,
    json_ready,
    labels_text_to_dict,
    log_rows,
    summarise_task_states,
    task_run_rows,
)
from dashboard.rpc import EXECUTION_ACTIONS
from dashboard.ui import go_to, render_input_field, state_badge
from worker_sdk.errors import KestrelError, NotFoundError
from worker_sdk.types import Execution, State

REFRESH_SECONDS = 2
#: Gantt rows drawn at most (an execution may have thousands of task runs).
GANTT_MAX_ROWS = 400

st.title("Execution")
kestrel = client()

# The id comes from the URL (?id=, set by links and by other pages) or is typed in; a new URL id
# wins over what the field held, and a typed id goes into the URL so the page can be shared.
url_id = st.query_params.get("id", "")
if url_id and st.session_state.get("exd_url_id") != url_id:
    st.session_state["exd_id"] = url_id
    st.session_state["exd_url_id"] = url_id
execution_id = st.text_input("Execution id", key="exd_id").strip()
if not execution_id:
    st.info("Open an execution from the Executions page, or paste its id above.")
    st.stop()
if url_id != execution_id:
    st.query_params["id"] = st.session_state["exd_url_id"] = execution_id

try:
    first = kestrel.get_execution(execution_id)
except NotFoundError:
    st.error(f"No execution with id {execution_id!r}.")
    st.stop()
except KestrelError as err:
    show_error(err, "Cannot load the execution")
    st.stop()

live = st.toggle(
    "Live refresh",
    value=not first.is_terminal,
    key=f"exd_live_{execution_id}",
    help=f"Reload every {REFRESH_SECONDS} s while the execution runs",
)


@st.cache_data(ttl=300, show_spinner=False)
def _flow_source(server: str, namespace: str, flow_id: str, revision: int) -> str:
    return kestrel.get_flow(namespace, flow_id, revision).source


def _action_form(rpc, execution: Execution) -> dict[str, object] | None:
    """The inputs of one optional action, in its popover; the request values once submitted."""
    values: dict[str, object] = {"id": execution.id, "execution_id": execution.id}
    key = f"exd_{rpc.name}_{execution.id}"
    if "task_run_id" in rpc.request_fields:
        runs = {tr.id: tr for tr in execution.task_runs}
        values["task_run_id"] = st.selectbox(
            "From task run",
            list(runs),
            key=f"{key}_tr",
            format_func=lambda i: f"{runs[i].task_id} {runs[i].value or ''} ({runs[i].state.current})",
        )
    if "labels" in rpc.request_fields:
        text = st.text_area(
            "Labels (key=value per line)",
            "\n".join(f"{k}={v}" for k, v in execution.labels.items()),
            key=f"{key}_labels",
        )
        labels, problems = labels_text_to_dict(text)
        for problem in problems:
            st.error(problem)
        values["labels"] = labels
    fields, slots, raw = [], {}, {}
    if "inputs_json" in rpc.request_fields:
        source = _flow_source(kestrel.server, execution.namespace, execution.flow_id, execution.flow_revision)
        paused = [tr for tr in execution.task_runs if tr.state.current is State.PAUSED]
        for tr in paused[:1]:
            fields = resume_fields(source, tr.task_id)
        for f in fields:
            raw[f.id] = render_input_field(f, f"{key}_in_{f.id}")
            slots[f.id] = st.empty()
    if not st.button(rpc.spec.title, key=f"{key}_go", type="primary"):
        return None
    if fields:
        inputs, errors = collect_inputs(fields, raw)
        for input_id, message in errors.items():
            slots[input_id].error(message)
        if errors:
            return None
        values["inputs_json"] = inputs
    return values


def _kill(execution_id: str) -> None:
    """Kill button callback: runs before the page is drawn again, which then shows the new state."""
    try:
        killed = kestrel.kill_execution(execution_id)
    except KestrelError as err:
        st.session_state["exd_notice"] = ("error", f"Kill failed: {err}")
    else:
        st.session_state["exd_notice"] = ("info", f"Kill requested: the execution is {killed.state.current}")


def _actions(execution: Execution) -> None:
    conn = connection()
    notice = st.session_state.pop("exd_notice", None)
    if notice is not None:
        (st.error if notice[0] == "error" else st.info)(notice[1])
    found = []
    waiting = []
    for spec in EXECUTION_ACTIONS:
        if not spec.applies_to(execution.state.current):
            continue
        rpc = conn.find(spec)
        if rpc is None:
            waiting.append(f"{spec.title} ({spec.names[0]}, {spec.waits_for})")
        else:
            found.append((spec, rpc))
    cols = iter(st.columns(6))
    if not execution.is_terminal:
        next(cols).button("Kill", type="primary", key="exd_kill", on_click=_kill, args=(execution.id,))
    for col, (spec, rpc) in zip(cols, found, strict=False):
        with col.popover(spec.title):
            values = _action_form(rpc, execution)
            if values is None:
                continue
            try:
                answer = conn.call(rpc, values)
            except (KestrelError, ValueError) as err:
                show_error(err, f"{spec.title} failed")
                continue
        new_id = (answer.get("execution") or {}).get("id")
        if new_id and new_id != execution.id:
            go_to("execution", id=new_id)
        st.session_state["exd_notice"] = ("info", f"{spec.title}: done")
        st.rerun()
    if waiting:
        st.caption("Not in the API yet: " + "; ".join(waiting))


def _header(execution: Execution, now: datetime) -> None:
    start = execution.start_date or execution.state.start_date
    end = execution.end_date or execution.state.end_date
    st.markdown(
        f"{state_badge(execution.state.current)} &nbsp; **{execution.namespace}.{execution.flow_id}** "
        f"revision {execution.flow_revision} · `{execution.id}`",
        unsafe_allow_html=True,
    )
    m = st.columns(4)
    m[0].metric("State", str(execution.state.current))
    m[1].metric("Duration", format_duration((end or now) - start) if start else "")
    m[2].metric("Task runs", len(execution.task_runs))
    m[3].metric("Started (UTC)", f"{start:%H:%M:%S}" if start else "")
    if execution.error:
        st.error(execution.error)
    if execution.original_id:
        st.caption(f"Replay of {execution.original_id}")
    if st.button("Flow", key="exd_flow", help="Open the flow of this execution"):
        go_to("flows", namespace=execution.namespace, flow=execution.flow_id)


def _logs(execution: Execution) -> None:
    c1, c2, c3 = st.columns([1, 2, 3])
    level = c1.selectbox("Minimum level", [str(lv) for lv in LEVEL_ORDER], index=0, key="exd_level")
    task_ids = sorted({tr.task_id for tr in execution.task_runs})
    task = c2.selectbox("Task", ["", *task_ids], format_func=lambda t: t or "all tasks", key="exd_log_task")
    search = c3.text_input("Search", key="exd_log_search", placeholder="text in the message")
    try:
        # the level filter runs on the server; search and task on the lines received
        entries = kestrel.list_logs(execution.id, min_level=level)
    except KestrelError as err:
        show_error(err, "Cannot load logs")
        return
    shown = filter_logs(entries, search=search, task_id=task or None)
    st.caption(f"{len(shown)} of {len(entries)} line(s) at {level} or above")
    st.dataframe(log_rows(shown), hide_index=True, width="stretch", key="exd_logs_table")
    text = "\n".join(
        f"{e.timestamp:%Y-%m-%dT%H:%M:%S.%f}Z {e.level} [{e.task_id or '-'}] {e.message}"
        if e.timestamp
        else e.message
        for e in shown
    )
    st.download_button("Download logs", text, file_name=f"{execution.id}.log", key="exd_logs_dl")


#: Largest file the page fetches for download, in bytes.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


def _files(execution: Execution) -> None:
    """The execution's files in internal storage, each downloadable (when the API has storage)."""
    if not hasattr(kestrel, "list_execution_files"):
        st.caption("Files: the client has no storage API in this version.")
        return
    try:
        files = kestrel.list_execution_files(execution.id)
    except KestrelError as err:
        show_error(err, "Cannot list the execution's files")
        return
    st.markdown("**Files**")
    if not files:
        st.caption("No file in internal storage.")
        return
    st.dataframe(file_rows(files, execution.task_runs), hide_index=True, width="stretch", key="exd_files")
    by_uri = {f.uri: f for f in files}
    uri = st.selectbox("File", list(by_uri), format_func=lambda u: u.rsplit("/", 1)[-1], key="exd_file")
    if by_uri[uri].size > MAX_DOWNLOAD_BYTES:
        st.caption(
            f"Larger than {MAX_DOWNLOAD_BYTES // 1024**2} MiB: use `kestrel` or the client to download it."
        )
        return
    if st.button("Fetch file", key="exd_file_fetch"):
        with tempfile.TemporaryDirectory(prefix="kestrel-dashboard-") as tmp:
            target = Path(tmp) / "file"
            try:
                kestrel.download_file(uri, target, timeout=120)
            except KestrelError as err:
                show_error(err, f"Cannot download {uri}")
                return
            st.session_state["exd_file_data"] = (uri, target.read_bytes())
    fetched = st.session_state.get("exd_file_data")
    if fetched and fetched[0] == uri:
        st.download_button(
            f"Download {uri.rsplit('/', 1)[-1]} ({len(fetched[1])} bytes)",
            fetched[1],
            file_name=uri.rsplit("/", 1)[-1],
            key="exd_file_dl",
        )


@st.fragment(run_every=REFRESH_SECONDS if live else None)
def body() -> None:
    """Everything that changes while the execution runs; re-run alone under live refresh."""
    now = datetime.now(UTC)
    try:
        execution = kestrel.get_execution(execution_id)
    except KestrelError as err:
        show_error(err, "Cannot load the execution")
        return
    _header(execution, now)
    _actions(execution)
    tabs = st.tabs(["Gantt", "Topology", "Logs", "Task runs", "Inputs & outputs"])
    with tabs[0]:
        rows = gantt_rows(execution, now)
        if not rows:
            st.info("No task run yet.")
        else:
            if len(rows) > GANTT_MAX_ROWS:
                st.caption(f"Showing the first {GANTT_MAX_ROWS} of {len(rows)} rows.")
            st.plotly_chart(gantt_figure(rows[:GANTT_MAX_ROWS]), key="exd_gantt")
    with tabs[1]:
        try:
            source = _flow_source(
                kestrel.server, execution.namespace, execution.flow_id, execution.flow_revision
            )
        except KestrelError as err:
            show_error(err, "Cannot load the flow revision")
        else:
            st.graphviz_chart(topology_dot(flow_topology(source), summarise_task_states(execution.task_runs)))
    with tabs[2]:
        _logs(execution)
    with tabs[3]:
        st.dataframe(task_run_rows(execution, now), hide_index=True, width="stretch", key="exd_tr_table")
        failed = [tr for tr in execution.task_runs if tr.error]
        for tr in failed[:20]:
            st.error(f"{tr.task_id}{' [' + tr.value + ']' if tr.value else ''}: {tr.error}")
    with tabs[4]:
        c1, c2, c3 = st.columns(3)
        c1.markdown("**Inputs**")
        c1.json(json_ready(execution.inputs))
        c2.markdown("**Outputs**")
        c2.json(json_ready(execution.outputs))
        c3.markdown("**Labels**")
        c3.json(json_ready(execution.labels))
        outputs = {
            tr.task_id + (f"[{tr.value}]" if tr.value else ""): tr.outputs
            for tr in execution.task_runs
            if tr.outputs
        }
        st.markdown("**Task outputs**")
        st.json(outputs, expanded=False)
        _files(execution)
        st.download_button(
            "Download outputs (JSON)",
            json.dumps({"outputs": execution.outputs, "tasks": outputs}, indent=2, default=str),
            file_name=f"{execution.id}-outputs.json",
            key="exd_out_dl",
        )
    if live and execution.is_terminal:
        st.caption("The execution has terminated; live refresh can be turned off.")


body()
