"""``python -m tests.conformance``: run Kestra's ``run``-kind corpus flows and print the pass count.

Without ``--server`` it starts its own stack (control plane in a thread on a fresh Postgres
database, plus worker processes) and tears it down afterwards. Exit status: 0 when the run
completed (whatever the pass count), 2 when the corpus is missing or the server unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.conformance.runner import (
    DEFAULT_TIMEOUT,
    SCENARIO_KINDS,
    corpus_dir,
    corpus_missing_reason,
    format_expected_failures,
    format_scenarios,
    format_summary,
    format_table,
    local_stack,
    run_corpus,
    run_scenarios,
    summary_line,
)
from worker_sdk.errors import KestrelError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance",
        description="Run the run-kind flows of Kestra's conformance corpus and print the pass count.",
    )
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="an already running control plane with workers (default: start a local stack)",
    )
    parser.add_argument("--corpus", type=Path, help="corpus directory (default: $KESTREL_CONFORMANCE_DIR)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON here")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per execution (default %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local stack")
    parser.add_argument(
        "--write-expected-failures",
        type=Path,
        metavar="FILE",
        help="write the failures as an expected-failures list (review it before committing)",
    )
    parser.add_argument("--flow", action="append", metavar="FILE", help="only this corpus file (repeatable)")
    parser.add_argument("--triggers", action="store_true",
                        help="run the flow-trigger and trigger/scheduler kinds instead (tests/conformance/triggers.py)")
    parser.add_argument(
        "--kind",
        choices=("run", *SCENARIO_KINDS, "scenarios"),
        default="run",
        help="test_kind to run: run (default), one scenario kind, or 'scenarios' for all three",
    )
    return parser


def _scenarios(args: argparse.Namespace, corpus: Path) -> int:
    """Runs the scenario kinds (pause-resume, restart/replay, concurrency) and prints them."""
    kinds = SCENARIO_KINDS if args.kind == "scenarios" else (args.kind,)
    try:
        if args.server:
            results = run_scenarios(args.server, corpus, kinds=kinds, files=args.flow, timeout=args.timeout)
        else:
            with local_stack(args.workers) as address:
                results = run_scenarios(address, corpus, kinds=kinds, files=args.flow, timeout=args.timeout)
    except (KestrelError, RuntimeError) as err:
        print(f"conformance: could not run: {err}", file=sys.stderr)
        return 2
    print(format_scenarios(results))
    if args.json:
        payload = {kind: [r.to_json() for r in flows] for kind, flows in results.items()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the harness; returns the process exit status."""
    args = _parser().parse_args(argv)
    corpus = args.corpus or corpus_dir()
    missing = corpus_missing_reason(corpus)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    if args.kind != "run":
        return _scenarios(args, corpus)
    began = time.monotonic()
    if args.triggers:
        from tests.conformance.triggers import format_trigger_results, run_trigger_corpus

        try:
            if args.server:
                found = run_trigger_corpus(args.server, corpus, args.flow, args.timeout)
            else:
                with local_stack(args.workers) as address:
                    found = run_trigger_corpus(address, corpus, args.flow, args.timeout)
        except (KestrelError, RuntimeError) as err:
            print(f"conformance: could not run: {err}", file=sys.stderr)
            return 2
        print(format_trigger_results(found))
        print(f"elapsed: {time.monotonic() - began:.1f} s")
        return 0
    try:
        if args.server:
            results = run_corpus(args.server, corpus, timeout=args.timeout, files=args.flow)
        else:
            with local_stack(args.workers) as address:
                results = run_corpus(address, corpus, timeout=args.timeout, files=args.flow)
    except (KestrelError, RuntimeError) as err:
        print(f"conformance: could not run: {err}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - began
    print(format_table(results))
    print()
    print(format_summary(results))
    print(f"elapsed: {elapsed:.1f} s")
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n", encoding="utf-8")
    if args.write_expected_failures:
        args.write_expected_failures.write_text(format_expected_failures(results), encoding="utf-8")
    print(summary_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
