"""Receipt probe, imported by benchmark workers with ``python -m worker_sdk --module bench.probe``.

The worker SDK does not record when it receives an assignment, so this module wraps
``worker_sdk.worker.Worker._start`` (called once per assignment, right after the
``PollTaskRuns`` response is decoded) and appends one line per assignment to the file named by
``KESTREL_BENCH_RECEIPTS``::

    <task_run_id> <ready_at, Unix seconds> <received_at, Unix seconds> <worker pid>

``ready_at`` is ``TaskAssignment.ready_at``: the control plane's clock when the task run became
ready (set by the executor before its transaction commits). ``received_at`` is this worker's
``time.time()``. Both clocks are the same machine's wall clock. Without the variable nothing is
patched. Lines are written with one ``os.write`` on an ``O_APPEND`` descriptor, so two worker
processes can share the file and a killed worker loses nothing already received.
"""

from __future__ import annotations

import os
import time

from worker_sdk.worker import Worker

_PATH = os.environ.get("KESTREL_BENCH_RECEIPTS")

if _PATH and not getattr(Worker, "_bench_probe", False):
    _fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _original_start = Worker._start
    _pid = os.getpid()

    def _start(self, assignment):  # type: ignore[no-untyped-def]
        received = time.time()
        ready = assignment.ready_at.timestamp() if assignment.ready_at is not None else float("nan")
        os.write(_fd, f"{assignment.task_run_id} {ready:.6f} {received:.6f} {_pid}\n".encode())
        return _original_start(self, assignment)

    Worker._start = _start  # type: ignore[method-assign]
    Worker._bench_probe = True  # type: ignore[attr-defined]


def read_receipts(path: str) -> dict[str, tuple[float, float]]:
    """Parses a receipts file: task_run_id -> (ready_at, received_at), Unix seconds.

    A task run received more than once (a redelivery) keeps its first receipt.
    """
    out: dict[str, tuple[float, float]] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[0] not in out:
                    out[parts[0]] = (float(parts[1]), float(parts[2]))
    except FileNotFoundError:
        pass
    return out
