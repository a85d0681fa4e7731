"""Small Streamlit helpers shared by the pages (no data logic: that lives in the pure modules)."""

from __future__ import annotations

import html

import streamlit as st

from dashboard.forms import InputField
from dashboard.model import state_color
from worker_sdk.types import State

#: Page key -> (script path relative to dashboard/app.py, title, icon, url path).
PAGES: dict[str, tuple[str, str, str, str]] = {
    "executions": ("views/executions.py", "Executions", ":material/list:", "executions"),
    "execution": ("views/execution.py", "Execution", ":material/timeline:", "execution"),
    "flows": ("views/flows.py", "Flows", ":material/account_tree:", "flows"),
    "triggers": ("views/triggers.py", "Triggers", ":material/schedule:", "triggers"),
    "workers": ("views/workers.py", "Workers", ":material/dns:", "workers"),
}


def state_badge(state: State | str) -> str:
    """HTML of a pill in the state's colour (for ``st.markdown(..., unsafe_allow_html=True)``)."""
    return (
        f'<span style="background:{state_color(state)};color:#fff;padding:2px 10px;'
        f'border-radius:10px;font-size:0.85em;font-weight:600">{html.escape(str(state))}</span>'
    )


def go_to(page: str, **query: str) -> None:
    """Switches to another page of the dashboard with query parameters (``id=...``)."""
    st.switch_page(PAGES[page][0], query_params=query)


def execution_link(execution_id: str) -> str:
    """Relative URL of an execution's page (opens in the same dashboard)."""
    return f"execution?id={execution_id}"


def render_input_field(f: InputField, key: str) -> object:
    """One widget for one input; returns its value (``None``/empty when left empty)."""
    label = f"{f.id}{' *' if f.required else ''}"
    common = {"key": key, "help": f.help}
    if f.widget == "int":
        return st.number_input(label, value=None, step=1, placeholder=f.placeholder or "integer", **common)
    if f.widget == "float":
        return st.number_input(
            label, value=None, format="%g", placeholder=f.placeholder or "number", **common
        )
    if f.widget == "bool":
        return st.selectbox(
            label, ["", "true", "false"], format_func=lambda v: v or (f.placeholder or "(not set)"), **common
        )
    if f.widget == "date":
        return st.date_input(label, value=None, **common)
    if f.widget == "time":
        return st.time_input(label, value=None, **common)
    if f.widget == "select":
        return st.selectbox(
            label, ["", *f.values], format_func=lambda v: v or (f.placeholder or "(not set)"), **common
        )
    if f.widget == "multiselect":
        return st.multiselect(label, f.values, placeholder=f.placeholder or "choose", **common)
    if f.widget == "textarea":
        return st.text_area(label, placeholder=f.placeholder, height=90, **common)
    if f.widget == "password":
        return st.text_input(label, type="password", **common)
    if f.widget == "unsupported":
        st.text_input(label, disabled=True, placeholder=f"{f.type} inputs are not available yet", **common)
        return None
    return st.text_input(label, placeholder=f.placeholder, **common)
