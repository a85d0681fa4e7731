"""Named fault points for the chaos suite (issue 7): crash the control plane at one exact step.

``KESTREL_FAULT_POINTS=result.attempt_recorded:crash`` (comma-separated ``POINT:ACTION`` pairs,
read once when the control plane starts, see :func:`configure`) makes the process
``os._exit(FAULT_EXIT_CODE)`` the first time it reaches that point: no ``finally``, no commit, no
goodbye, like a SIGKILL at that line. ``POINT:crash@N`` crashes at the N-th time instead.

The points sit at each step boundary of the start-execution path and of the result → advance →
enqueue path (see :data:`POINTS`). Unset (production), :func:`hit` is one dictionary truthiness
test. Never set it in production: it exists so ``python -m tests.chaos --only fault_points``
can prove that a crash at any step leaves nothing stuck and nothing recorded twice.
"""

from __future__ import annotations

import os
import sys

FAULT_EXIT_CODE = 70
"""Exit status of a process crashed by a fault point (``EX_SOFTWARE``)."""

POINTS: dict[str, str] = {
    "start.inserted": "StartExecution: the CREATED execution row is inserted, not yet advanced (open transaction)",
    "start.advanced": "StartExecution: advanced (first task runs inserted and queued), not yet committed",
    "start.committed": "StartExecution: committed, the response not yet sent to the client",
    "advance.task_run_inserted": "advance: a runnable task run row is inserted, its queue row not yet (open transaction)",
    "queue.committed_before_wakeup": "a transaction that queued task runs committed; polling workers not yet woken",
    "claim.committed": "PollTaskRuns: task runs claimed (RUNNING, leased) and committed, not yet sent to the worker",
    "result.attempt_recorded": "CompleteTaskRun: the attempt and task run are SUCCESS, the execution not yet advanced "
                               "(open transaction)",
    "result.advanced": "CompleteTaskRun: the execution advanced (next task run queued), not yet committed",
    "result.committed": "CompleteTaskRun: committed, the response not yet sent to the worker",
    "kill.committed": "KillExecution: the execution's kill committed, its subflow executions not yet killed",
}
"""Every fault point: name -> the step it stands between."""

_ACTIONS = ("crash",)
_armed: dict[str, list[int]] = {}  # point -> [hits so far, crash at this hit]


def parse(spec: str) -> dict[str, int]:
    """Check ``spec`` (``"POINT:crash[@N],…"``) without arming anything (the settings validate
    ``KESTREL_FAULT_POINTS`` with it, so a typo stops the process at start with one line).

    Returns:
        point -> the hit number that crashes (1 = the first).

    Raises:
        ValueError: an unknown point or action, or a bad ``@N``; the message names the bad item
            and lists the valid points (or actions).
    """
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, action = item.partition(":")
        action, _, nth = action.partition("@")
        if point not in POINTS:
            raise ValueError(f"fault point '{point}' is unknown; valid points: {', '.join(POINTS)}")
        if action not in _ACTIONS:
            raise ValueError(f"fault point '{point}': action '{action}' is unknown; valid actions: "
                             f"{', '.join(_ACTIONS)} (as POINT:crash or POINT:crash@N)")
        if nth and (not nth.isdigit() or int(nth) < 1):
            raise ValueError(f"fault point '{point}': '@{nth}' must be a positive hit number")
        out[point] = int(nth or 1)
    return out


def configure(spec: str) -> list[str]:
    """Arm the fault points of ``spec`` (``"POINT:crash[@N],…"``; empty disarms all).

    Returns:
        The armed point names.

    Raises:
        ValueError: as :func:`parse` (nothing is armed then).
    """
    _armed.clear()
    for point, nth in parse(spec).items():
        _armed[point] = [0, nth]
    return list(_armed)


def hit(point: str) -> None:
    """Reached ``point``: crash the process at once when it is armed (and this is the N-th hit).

    Costs one dictionary test when nothing is armed."""
    if not _armed:
        return
    state = _armed.get(point)
    if state is None:
        return
    state[0] += 1
    if state[0] >= state[1]:
        sys.stderr.write(f"FAULT POINT {point}: crashing now (os._exit({FAULT_EXIT_CODE}), hit {state[0]})\n")
        sys.stderr.flush()
        os._exit(FAULT_EXIT_CODE)
