"""Triggers: from the trigger API once it exists; until then, the triggers flows declare."""

from __future__ import annotations

import streamlit as st

from dashboard.api import client, connection, show_error
from dashboard.model import declared_triggers
from dashboard.rpc import TRIGGER_ACTIONS, TRIGGER_LISTINGS, rows_from_response
from worker_sdk.errors import KestrelError

#: Flows whose sources are read for declared triggers at most (one GetFlow each).
MAX_FLOWS = 300

st.title("Triggers")
conn = connection()
kestrel = client()

listing = next((found for spec in TRIGGER_LISTINGS if (found := conn.find(spec)) is not None), None)
actions = [(spec, conn.find(spec)) for spec in TRIGGER_ACTIONS]

if listing is not None:
    try:
        answer = conn.call(listing, {})
    except (KestrelError, ValueError) as err:
        show_error(err, f"{listing.name} failed")
        answer = {}
    rows = rows_from_response(answer, ("triggers",))
    st.caption(f"{len(rows)} trigger(s) from {listing.spec.service}.{listing.name}")
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch", key="tr_api")
        labels = [
            f"{r.get('namespace', '')}.{r.get('flow_id', '')} · {r.get('trigger_id', r.get('id', ''))}"
            for r in rows
        ]
        index = st.selectbox("Trigger", range(len(rows)), format_func=lambda i: labels[i], key="tr_pick")
        row = rows[index]
        values = {
            "namespace": row.get("namespace"),
            "flow_id": row.get("flow_id"),
            "trigger_id": row.get("trigger_id", row.get("id")),
            "id": row.get("id"),
        }
        cols = st.columns(len(actions))
        for col, (spec, rpc) in zip(cols, actions, strict=True):
            if rpc is None:
                col.caption(f"{spec.title}: not in the API yet")
                continue
            with col.popover(spec.title):
                call_values = dict(values)
                if "enabled" in rpc.request_fields:
                    enabled_now = row.get("enabled", not row.get("disabled", False))
                    call_values["enabled"] = st.toggle("Enabled", value=bool(enabled_now), key="tr_enabled")
                if "disabled" in rpc.request_fields:
                    call_values["disabled"] = st.toggle(
                        "Disabled", value=bool(row.get("disabled", False)), key="tr_disabled"
                    )
                for name in ("start", "end"):
                    if name in rpc.request_fields or f"{name}_date" in rpc.request_fields:
                        text = st.text_input(f"Backfill {name} (ISO date-time)", key=f"tr_{name}")
                        call_values[name] = call_values[f"{name}_date"] = text or None
                if st.button(spec.title, key=f"tr_go_{rpc.name}"):
                    try:
                        conn.call(rpc, call_values)
                        st.success(f"{spec.title}: done")
                    except (KestrelError, ValueError) as err:
                        show_error(err, f"{spec.title} failed")
else:
    st.info(
        "The control plane has no trigger API yet (the scheduler is issue 5): this page lists the "
        "triggers the flows declare. Next fire times, enable/disable and backfill appear here when "
        "a TriggerService with ListTriggers is in the API."
    )

st.subheader("Declared in flows")
try:
    flows = kestrel.list_flows()[:MAX_FLOWS]
    declared = [row for f in flows for row in declared_triggers(kestrel.get_flow(f.namespace, f.id))]
except KestrelError as err:
    show_error(err, "Cannot read flows")
    st.stop()
if declared:
    st.dataframe(declared, hide_index=True, width="stretch", key="tr_declared")
else:
    st.caption("No flow declares a trigger.")
