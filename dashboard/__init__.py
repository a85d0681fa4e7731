"""Kestrel's Streamlit dashboard: a gRPC client of the control plane, never of the database.

Run it with ``kestrel dashboard --server HOST:PORT [--port 8501]`` (or ``kestrel server local``,
which serves it on port 8501 unless ``--no-dashboard``).

Layout:

- :mod:`dashboard.app` is the Streamlit entry script (navigation only);
- ``dashboard/views/*.py`` are the pages; they stay thin: fetch through :mod:`dashboard.api`,
  hand plain API data to the builders, draw the result;
- :mod:`dashboard.model`, :mod:`dashboard.charts`, :mod:`dashboard.graphs`,
  :mod:`dashboard.forms` and :mod:`dashboard.rpc` are pure functions of API data (the client's
  dataclasses, plain dicts and strings), unit-tested in ``tests/unit/dashboard``;
- :mod:`dashboard.launcher` starts Streamlit as a subprocess (the CLI and ``server local``).
"""

from __future__ import annotations

#: Port the dashboard listens on by default (Streamlit's own default).
DEFAULT_PORT = 8501

#: Environment variable the dashboard reads the control plane's ``host:port`` from.
SERVER_ENV = "KESTREL_SERVER"
