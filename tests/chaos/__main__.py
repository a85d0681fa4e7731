"""``python -m tests.chaos [--full] [--only NAME]``: run the chaos scenarios and print figures.

Exit status 1 when a scenario breaks a guarantee (its message is printed)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tests.chaos.scenarios import CI, FULL, SCENARIOS
from tests.chaos.stack import ChaosSkip


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--full", action="store_true", help="full sizes (500 executions, 50 in flight, …)")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append", help="run only this scenario")
    args = parser.parse_args(argv)
    sizes = FULL if args.full else CI
    failed = 0
    for name in args.only or list(SCENARIOS):
        started = time.monotonic()
        try:
            figures = SCENARIOS[name](sizes)
        except AssertionError as exc:
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - started:.0f} s): {exc}", flush=True)
            continue
        except ChaosSkip as exc:
            print(f"SKIP {name}: {exc}", flush=True)
            continue
        print(f"PASS {name} ({time.monotonic() - started:.0f} s): {json.dumps(figures, sort_keys=True)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
