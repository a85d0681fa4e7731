"""Shared fixtures of the storage, KV and script tests: a control plane whose internal storage
lives in a temporary directory, two worker processes in separate working directories, and a
typed client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.harness import REPO, ServerThread, test_settings, wait_until
from worker_sdk.client import KestrelClient
from worker_sdk.types import Execution


@contextmanager
def storage_stack(database_url: str, tmp: Path, workers: int = 2,
                  extra: tuple[str, ...] = ()) -> Iterator[tuple[ServerThread, KestrelClient]]:
    """A control plane (storage under ``tmp/storage``) and ``workers`` worker processes, each
    started in its own directory ``tmp/worker-N`` with its own TMPDIR (no shared files) and
    serving the worker group ``gN`` (worker 0: the default group), so a flow can pin a task to
    worker 1 with ``workerGroup: {key: g1}`` while the others run on worker 0. ``extra``: more
    worker arguments (``--module M``)."""
    server = ServerThread(test_settings(database_url, data_dir=tmp / "storage")).start()
    procs = []
    try:
        for n in range(workers):
            home = tmp / f"worker-{n}"
            (home / "tmp").mkdir(parents=True)
            env = dict(os.environ, TMPDIR=str(home / "tmp"),
                       PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "worker_sdk", "--server", server.address, "--concurrency", "4",
                 "--worker-group", f"g{n}" if n else "", *extra],
                env=env, cwd=home,
            ))
        client = KestrelClient(server.address, timeout=30)
        yield server, client
        client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()


def run(client: KestrelClient, source: str, inputs: dict | None = None, timeout: float = 60) -> Execution:
    """Deploy ``source``, start it and wait for the end."""
    flow = client.deploy_flow(source).flow
    execution = client.start_execution(flow.namespace, flow.id, inputs=inputs)
    return client.wait_execution(execution.id, timeout=timeout)


def by_task(execution: Execution) -> dict:
    """task id -> task run (last one wins)."""
    return {tr.task_id: tr for tr in execution.task_runs}


def wait_for_workers(client: KestrelClient, count: int = 2) -> None:
    """Until a trivial flow runs on every worker."""
    probe = "id: probe\nnamespace: tests.storage\ntasks:\n  - {id: r0, type: io.kestra.plugin.core.debug.Return, format: x}\n" + "".join(
        f"  - {{id: r{n}, type: io.kestra.plugin.core.debug.Return, format: x, workerGroup: {{key: g{n}}}}}\n"
        for n in range(1, count)
    )
    wait_until(lambda: run(client, probe, timeout=30).state.current.value == "SUCCESS", timeout=60, what="workers")
