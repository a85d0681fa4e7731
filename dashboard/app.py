"""Streamlit entry script of the Kestrel dashboard: page navigation and the connection banner.

Run through ``kestrel dashboard --server HOST:PORT`` (which runs ``streamlit run`` on this file
with ``KESTREL_SERVER`` set); the pages live in ``dashboard/views``.
"""

from __future__ import annotations

import streamlit as st

from dashboard.api import server_address
from dashboard.ui import PAGES

st.set_page_config(page_title="Kestrel", page_icon="🪶", layout="wide")

pages = {
    name: st.Page(path, title=title, icon=icon, url_path=url, default=(name == "executions"))
    for name, (path, title, icon, url) in PAGES.items()
}
navigation = st.navigation(
    {
        "Run": [pages["executions"], pages["execution"]],
        "Define": [pages["flows"], pages["triggers"]],
        "Operate": [pages["workers"]],
    }
)
st.sidebar.caption(f"Control plane: `{server_address()}` (gRPC)")
navigation.run()
