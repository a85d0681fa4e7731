"""Summaries of py-spy ``--format raw`` profiles (collapsed stacks: ``frame;frame;… count``)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


def summarise(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions of a py-spy raw profile by self and by inclusive share of samples (percent).

    Returns:
        ``{"samples": [("total", n)], "self": […], "inclusive": […], "project": […]}``, each a list of
        ``(function, percent of samples)``; ``by_package`` is self time grouped by top-level package;
        ``project`` is inclusive time of Kestrel's own functions
        (``controlplane/``, ``worker_sdk/``). Line numbers are dropped so one function's samples add up.
    """
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    proj_counts: Counter[str] = Counter()
    pkg_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames:
            continue
        total += n
        self_counts[frames[-1]] += n
        pkg_counts[_package(frames[-1])] += n
        for f in set(frames):
            incl_counts[f] += n
            if _is_project(f):
                proj_counts[f] += n
    if not total:
        return {"samples": [("total", 0)], "self": [], "inclusive": [], "project": [], "by_package": []}

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100.0 * k / total, 1)) for f, k in c.most_common(top)]

    return {"samples": [("total", float(total))], "self": pct(self_counts), "inclusive": pct(incl_counts),
            "project": pct(proj_counts), "by_package": pct(pkg_counts)}


def _package(frame: str) -> str:
    """Top-level package of a shortened frame: ``f (sqlalchemy/sql/x.py)`` -> ``sqlalchemy``;
    the standard library's modules keep their own name (``asyncio``, ``threading``…)."""
    inside = frame.rsplit("(", 1)[-1].rstrip(")")
    head = inside.split("/", 1)[0]
    if "/" not in inside and "." in head:  # e.g. "threading.py"
        head = head.split(".", 1)[0]
    return head or "?"


_ENTRY = ("run_standalone ", "_serve ", "server_standalone ", "main ", "<module> ")


def _is_project(frame: str) -> bool:
    """A Kestrel function (control plane or worker SDK) other than a process entry point."""
    return ("(controlplane/" in frame or "(worker_sdk/" in frame) and not frame.startswith(_ENTRY)
