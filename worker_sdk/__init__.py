"""Kestrel Python SDK: run Kestra-style tasks as a worker of a Kestrel control plane.

Public surface::

    from worker_sdk import Worker, task, TaskContext, TaskFailure

    @task("my.company.Hello")
    def hello(ctx: TaskContext, props: dict) -> dict:
        ctx.log.info("hello %s", props["name"])
        return {"greeting": "hello " + props["name"]}

    Worker("127.0.0.1:6570", concurrency=4).run()

The API client for flows, executions and logs lives in `worker_sdk.client`.
"""

from worker_sdk.context import LogRecord, TaskContext, TaskFailure, TaskLogger, TaskResult
from worker_sdk.registry import (
    DuplicateTaskTypeError,
    TaskRegistry,
    UnknownTaskTypeError,
    default_registry,
    task,
)
from worker_sdk.worker import Worker, WorkerError, run_worker

__all__ = [
    "DuplicateTaskTypeError",
    "LogRecord",
    "TaskContext",
    "TaskFailure",
    "TaskLogger",
    "TaskRegistry",
    "TaskResult",
    "UnknownTaskTypeError",
    "Worker",
    "WorkerError",
    "default_registry",
    "run_worker",
    "task",
]
