"""``python -m worker_sdk``: runs one worker process.

    python -m worker_sdk --server 127.0.0.1:6570 --concurrency 4 --module my_tasks

The main CLI (``kestrel worker``) calls the same `worker_sdk.worker.run_worker`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kestrel import logsetup
from worker_sdk.connection import Connection
from worker_sdk.worker import DEFAULT_SERVER, DEFAULT_SHUTDOWN_GRACE_SECONDS, WorkerError, run_worker


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    """Parses arguments and runs a worker until SIGTERM/SIGINT.

    Returns:
        The process exit code: 0 after a clean stop, 1 when the worker could not run.
    """
    parser = argparse.ArgumentParser(prog="python -m worker_sdk", description="Run a Kestrel worker.")
    parser.add_argument(
        "--server",
        default=os.environ.get("KESTREL_SERVER", DEFAULT_SERVER),
        help="control plane HOST:PORT (env KESTREL_SERVER, default %(default)s)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="task runs at once (default 4)")
    parser.add_argument("--worker-group", default="", help="worker group key (default: the default group)")
    parser.add_argument(
        "--label",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help="worker label (repeatable)",
    )
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="MODULE",
        help="module with @task functions (repeatable)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=DEFAULT_SHUTDOWN_GRACE_SECONDS,
        metavar="SECONDS",
        help="on SIGTERM, seconds running task runs may still finish (default %(default)s)",
    )
    parser.add_argument("--token", default=None, help="API token (env KESTREL_TOKEN)")
    parser.add_argument("--tls-ca", default=None, metavar="PEM", help="CA of the server certificate (env KESTREL_TLS_CA)")
    parser.add_argument("--tls-cert", default=None, metavar="PEM",
                        help="client certificate for mutual TLS (env KESTREL_TLS_CERT)")
    parser.add_argument("--tls-key", default=None, metavar="PEM", help="key of --tls-cert (env KESTREL_TLS_KEY)")
    parser.add_argument("--log-level", default="INFO", help="local log level of the worker (default INFO)")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")

    try:
        logsetup.configure(args.log_level.upper())
    except ValueError as exc:
        parser.error(str(exc))
    try:
        run_worker(
            args.server,
            concurrency=args.concurrency,
            worker_group=args.worker_group,
            labels=dict(args.label),
            modules=args.module,
            shutdown_grace_seconds=args.shutdown_grace,
            connection=Connection.from_env(token=args.token, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                                           tls_key=args.tls_key),
        )
    except (ImportError, ValueError, WorkerError) as exc:
        logging.getLogger("kestrel.worker").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
