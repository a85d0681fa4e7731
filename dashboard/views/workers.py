"""Workers: the live fleet when the API lists it; until then, the workers seen in recent attempts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from itertools import islice

import streamlit as st

from dashboard.api import client, connection, show_error
from dashboard.model import fleet_rows, worker_rows_from_executions
from dashboard.rpc import WORKER_LISTINGS, rows_from_response
from worker_sdk.errors import KestrelError

#: Recent executions whose attempts are scanned for worker ids.
RECENT_EXECUTIONS = 30

st.title("Workers")
conn = connection()
kestrel = client()

listing = next((found for spec in WORKER_LISTINGS if (found := conn.find(spec)) is not None), None)
if listing is not None:
    try:
        answer = conn.call(listing, {})
    except (KestrelError, ValueError) as err:
        show_error(err, f"{listing.name} failed")
    else:
        listed = answer.get("workers")
        rows = (
            fleet_rows(listed, datetime.now(UTC)) if isinstance(listed, list) else rows_from_response(answer)
        )
        states = Counter(r.get("state", "") for r in rows)
        st.caption(
            f"{len(rows)} worker(s) from {listing.spec.service}.{listing.name}: "
            + ", ".join(f"{n} {s or '?'}" for s, n in states.items())
        )
        st.dataframe(rows, hide_index=True, width="stretch", key="wk_fleet")
else:
    st.info(
        "The worker API has no listing RPC yet (WorkerService has RegisterWorker, PollTaskRuns, "
        "heartbeats, Complete/FailTaskRun and ShutdownWorker: calls workers make, none that lists "
        "them; a ListWorkers RPC is expected from issue 7). Below: the workers seen in the attempts "
        f"of the {RECENT_EXECUTIONS} most recent executions."
    )

st.subheader("Workers seen in recent executions")
try:
    recent = list(islice(kestrel.iter_executions(page_size=RECENT_EXECUTIONS), RECENT_EXECUTIONS))
    detailed = [kestrel.get_execution(e.id) for e in recent]
except KestrelError as err:
    show_error(err, "Cannot read recent executions")
    st.stop()
rows = worker_rows_from_executions(detailed)
if rows:
    st.dataframe(rows, hide_index=True, width="stretch", key="wk_seen")
else:
    st.caption("No attempt ran on a worker in the recent executions.")
