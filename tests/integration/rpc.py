"""Raw gRPC stubs for contract-level tests (what a worker in any language sees)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import grpc

from kestrel.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    flow_pb2,
    flow_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)


@dataclass
class Stubs:
    channel: grpc.Channel
    flows: flow_pb2_grpc.FlowServiceStub
    executions: execution_pb2_grpc.ExecutionServiceStub
    workers: worker_pb2_grpc.WorkerServiceStub
    logs: log_pb2_grpc.LogServiceStub

    def deploy(self, source: str, **kw) -> flow_pb2.Flow:
        return self.flows.RegisterFlow(flow_pb2.RegisterFlowRequest(source=source, **kw), timeout=10).flow

    def start(self, namespace: str, flow_id: str, inputs: dict | None = None, **kw) -> execution_pb2.Execution:
        req = execution_pb2.StartExecutionRequest(
            namespace=namespace, flow_id=flow_id, inputs_json=json.dumps(inputs or {}), **kw
        )
        return self.executions.StartExecution(req, timeout=10).execution

    def get(self, execution_id: str) -> execution_pb2.Execution:
        return self.executions.GetExecution(execution_pb2.GetExecutionRequest(id=execution_id), timeout=10).execution

    def wait(self, execution_id: str, timeout: float = 60) -> execution_pb2.Execution:
        last = None
        for msg in self.executions.WatchExecution(execution_pb2.WatchExecutionRequest(id=execution_id), timeout=timeout):
            last = msg.execution
        assert last is not None
        return last

    def logs(self, execution_id: str) -> list[log_pb2.LogEntry]:
        return list(self.logs_stub_list(execution_id))

    def logs_stub_list(self, execution_id: str):
        return self.logs.ListLogs(log_pb2.ListLogsRequest(execution_id=execution_id), timeout=10).entries

    def register_worker(self, task_types: list[str], **kw) -> str:
        return self.workers.RegisterWorker(
            worker_pb2.RegisterWorkerRequest(task_types=task_types, hostname="test", sdk="test/0", concurrency=4, **kw),
            timeout=10,
        ).worker_id

    def poll(self, worker_id: str, wait: float = 5.0, max_task_runs: int = 1) -> list[worker_pb2.TaskAssignment]:
        return list(
            self.workers.PollTaskRuns(
                worker_pb2.PollTaskRunsRequest(worker_id=worker_id, max_task_runs=max_task_runs, wait_seconds=wait),
                timeout=wait + 10,
            ).assignments
        )

    def close(self) -> None:
        self.channel.close()


def connect(address: str) -> Stubs:
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)
    return Stubs(
        channel,
        flow_pb2_grpc.FlowServiceStub(channel),
        execution_pb2_grpc.ExecutionServiceStub(channel),
        worker_pb2_grpc.WorkerServiceStub(channel),
        log_pb2_grpc.LogServiceStub(channel),
    )


def state_name(value: int) -> str:
    return common_pb2.State.Name(value).removeprefix("STATE_")


def wait_state(stubs: Stubs, execution_id: str, states: set[str], timeout: float = 30) -> execution_pb2.Execution:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ex = stubs.get(execution_id)
        if state_name(ex.state.current) in states:
            return ex
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} not in {states} after {timeout}s: {state_name(ex.state.current)}")
