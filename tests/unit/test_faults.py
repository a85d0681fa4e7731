"""Fault points (``controlplane/faults.py``): the spec is checked at startup, an armed point
crashes the process at its N-th hit with the fault exit code, an unarmed one does nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controlplane import faults


def test_spec_is_checked_and_names_the_known_points():
    with pytest.raises(ValueError, match="fault point 'nope' is unknown; valid points: start.inserted"):
        faults.configure("nope:crash")
    with pytest.raises(ValueError, match="action 'hang' is unknown"):
        faults.configure("result.committed:hang")
    with pytest.raises(ValueError, match="positive hit number"):
        faults.configure("result.committed:crash@0")
    assert faults.configure(" result.committed:crash@2 , claim.committed:crash") == ["result.committed",
                                                                                    "claim.committed"]
    assert faults.configure("") == []
    faults.hit("result.committed")  # nothing armed: returns


def test_an_armed_point_crashes_at_its_nth_hit_and_others_do_not():
    code = ("from controlplane import faults\n"
            "faults.configure('result.committed:crash@3')\n"
            "for i in range(5):\n"
            "    faults.hit('claim.committed')\n"
            "    print('hit', i, flush=True)\n"
            "    faults.hit('result.committed')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == faults.FAULT_EXIT_CODE
    assert done.stdout.split("\n")[:3] == ["hit 0", "hit 1", "hit 2"] and "hit 3" not in done.stdout
    assert "FAULT POINT result.committed: crashing now" in done.stderr


def test_a_typo_in_the_environment_stops_the_server_with_one_line():
    """The real `kestrel server standalone` process: a misspelt point is refused before anything
    starts (no traceback), naming it and listing the valid points."""
    import os

    env = dict(os.environ, KESTREL_FAULT_POINTS="claim.comitted:crash",
               KESTREL_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none")
    done = subprocess.run([sys.executable, "-m", "controlplane.cli", "server", "standalone", "--no-auth"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        "error: invalid settings: KESTREL_FAULT_POINTS: fault point 'claim.comitted' is unknown; valid points: "
        + ", ".join(faults.POINTS)
    ], done.stderr
