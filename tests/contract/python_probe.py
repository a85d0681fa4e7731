"""The contract suite's wire-level probe for Python: ``python -m tests.contract.python_probe --server HOST:PORT``.

Reads JSON commands on stdin, one a line, and answers each with one JSON line on stdout, calling
the generated ``kestrel.v1`` stubs that the Python SDK's worker uses. ``node_worker.js probe`` is
the Node SDK's twin; any SDK joins the suite with a probe speaking the same protocol:

- ``{"op": "register", "task_types": [...], "worker_group": ""}`` → ``{"code": "OK", "worker_id": ...}``
- ``{"op": "poll", "worker_id": ..., "wait": 1}`` → ``{"code": "OK", "assignments": [{"task_token",
  "task_id", "attempt"}]}``
- ``{"op": "complete", "task_token": ..., "outputs_json": ...}`` → ``{"code": "OK"}``
- ``{"op": "fail", "task_token": ..., "error_message": ...}`` (reason TASK_ERROR)
- ``{"op": "heartbeat", "task_token": ...}`` → ``{"code": "OK", "cancel_requested": bool}``

A refused call answers ``{"code": "<gRPC status name>", "details": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import grpc

from kestrel.v1 import worker_pb2, worker_pb2_grpc


def handle(stub: worker_pb2_grpc.WorkerServiceStub, cmd: dict[str, Any]) -> dict[str, Any]:
    """Runs one probe command; returns its JSON answer.

    Raises:
        ValueError: unknown ``op``.
    """
    op = cmd.get("op")
    try:
        if op == "register":
            r = stub.RegisterWorker(
                worker_pb2.RegisterWorkerRequest(
                    task_types=cmd["task_types"], hostname="contract-probe", sdk="python-probe/0",
                    concurrency=1, worker_group=cmd.get("worker_group", ""),
                ),
                timeout=10,
            )
            return {"code": "OK", "worker_id": r.worker_id}
        if op == "poll":
            wait = float(cmd.get("wait", 1))
            r = stub.PollTaskRuns(
                worker_pb2.PollTaskRunsRequest(worker_id=cmd["worker_id"], max_task_runs=1, wait_seconds=wait),
                timeout=wait + 10,
            )
            return {
                "code": "OK",
                "assignments": [
                    {"task_token": a.task_token, "task_id": a.task_id, "attempt": a.attempt} for a in r.assignments
                ],
            }
        if op == "complete":
            stub.CompleteTaskRun(
                worker_pb2.CompleteTaskRunRequest(task_token=cmd["task_token"], outputs_json=cmd.get("outputs_json", "")),
                timeout=10,
            )
            return {"code": "OK"}
        if op == "fail":
            stub.FailTaskRun(
                worker_pb2.FailTaskRunRequest(
                    task_token=cmd["task_token"], error_message=cmd.get("error_message", ""),
                    reason=worker_pb2.FAILURE_REASON_TASK_ERROR,
                ),
                timeout=10,
            )
            return {"code": "OK"}
        if op == "heartbeat":
            r = stub.RecordTaskRunHeartbeat(
                worker_pb2.RecordTaskRunHeartbeatRequest(task_token=cmd["task_token"]), timeout=10
            )
            return {"code": "OK", "cancel_requested": r.cancel_requested}
    except grpc.RpcError as exc:
        return {"code": exc.code().name, "details": exc.details()}
    raise ValueError(f"unknown op {op!r}")


def main(argv: list[str] | None = None) -> int:
    """Serves probe commands from stdin until it closes."""
    parser = argparse.ArgumentParser(prog="python -m tests.contract.python_probe")
    parser.add_argument("--server", required=True)
    args = parser.parse_args(argv)
    with grpc.insecure_channel(args.server) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(handle(stub, json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
