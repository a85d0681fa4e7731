"""Process log setup shared by the control plane (``kestrel server …``) and workers.

``KESTREL_LOG_FORMAT=json`` writes one JSON object per line (python-json-logger): ``timestamp``
(ISO-8601, UTC), ``level``, ``logger``, ``message``, ``process`` and any ``extra=`` fields, plus
``exc_info`` for exceptions: what log shippers (Loki, Elasticsearch, CloudWatch) index without a
parsing rule. ``text`` (the default) keeps the human format ``<time> <LEVEL> <logger>: <message>``.
"""

from __future__ import annotations

import logging
import os
import sys

FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int | str = logging.INFO, fmt: str | None = None) -> None:
    """Configure the root logger once (a no-op when handlers already exist, e.g. under pytest).

    Args:
        level: Root level (``"INFO"``, ``logging.DEBUG``...).
        fmt: ``text`` or ``json``; default ``$KESTREL_LOG_FORMAT``, else ``text``.

    Raises:
        ValueError: an unknown format (names the variable and the accepted values).
    """
    chosen = (fmt or os.environ.get("KESTREL_LOG_FORMAT") or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"KESTREL_LOG_FORMAT: must be one of {', '.join(FORMATS)}, not {chosen!r}")
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if chosen == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "%(levelname)s %(name)s %(message)s %(process)d",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        ))
    else:
        handler.setFormatter(logging.Formatter(_TEXT))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
