"""Worker protocol against an in-process fake control plane (grpc.aio on a free port).

The fake implements just enough of WorkerService and LogService to observe what the worker
sends: registrations, polls, heartbeats, logs and results, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from kestrel.v1 import common_pb2, log_pb2, log_pb2_grpc, worker_pb2, worker_pb2_grpc
from worker_sdk import TaskContext, TaskFailure, TaskRegistry, TaskResult, Worker
from worker_sdk.worker import Assignment, WorkerError

REPO = Path(__file__).resolve().parents[3]
HEARTBEAT = 0.2


class FakeControlPlane(worker_pb2_grpc.WorkerServiceServicer, log_pb2_grpc.LogServiceServicer):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[worker_pb2.TaskAssignment] = asyncio.Queue()
        self.registrations: list[worker_pb2.RegisterWorkerRequest] = []
        self.known: set[str] = set()
        self.polls: list[int] = []
        self.events: list[tuple[str, str]] = []  # (kind, token) in arrival order
        self.logs: dict[str, list[log_pb2.LogEntry]] = defaultdict(list)
        self.completed: dict[str, worker_pb2.CompleteTaskRunRequest] = {}
        self.failed: dict[str, worker_pb2.FailTaskRunRequest] = {}
        self.task_heartbeats: dict[str, int] = defaultdict(int)
        self.worker_heartbeats = 0
        self.shutdowns: list[str] = []
        self.cancel: set[str] = set()
        self.lost: set[str] = set()
        self.unavailable_completes = 0
        self.changed = asyncio.Event()
        self._seq = 0

    def _touch(self) -> None:
        self.changed.set()

    def assign(self, task_type: str, props: dict[str, Any] | None = None, **fields: Any) -> str:
        self._seq += 1
        token = f"token-{self._seq}"
        self.queue.put_nowait(
            worker_pb2.TaskAssignment(
                task_token=token,
                task_run_id=f"tr-{self._seq}",
                execution_id="exec-1",
                namespace="company.team",
                flow_id="flow",
                flow_revision=1,
                task_id=f"task{self._seq}",
                task_type=task_type,
                attempt=1,
                properties_json=json.dumps(props or {}),
                idempotency_key=f"exec-1:tr-{self._seq}",
                **fields,
            )
        )
        return token

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting for the fake control plane"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=min(remaining, 0.1))
            except TimeoutError:
                pass

    def reported(self, token: str) -> bool:
        return token in self.completed or token in self.failed

    def messages(self, token: str) -> list[tuple[int, str]]:
        return [(e.level, e.message) for e in self.logs[token]]

    # WorkerService
    async def RegisterWorker(self, request, context):  # noqa: N802
        if request.worker_group == "refused":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "worker_group: unknown group")
        self.registrations.append(request)
        self.known.add(request.worker_id)
        self._touch()
        return worker_pb2.RegisterWorkerResponse(
            worker_id=request.worker_id, heartbeat_interval_seconds=HEARTBEAT, lease_seconds=3
        )

    async def PollTaskRuns(self, request, context):  # noqa: N802
        if request.worker_id not in self.known:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "unknown worker")
        self.polls.append(request.max_task_runs)
        self._touch()
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout=min(request.wait_seconds, 0.5))
        except TimeoutError:
            return worker_pb2.PollTaskRunsResponse()
        items = [first]
        while len(items) < request.max_task_runs and not self.queue.empty():
            items.append(self.queue.get_nowait())
        return worker_pb2.PollTaskRunsResponse(assignments=items)

    async def RecordTaskRunHeartbeat(self, request, context):  # noqa: N802
        token = request.task_token
        self.task_heartbeats[token] += 1
        self._touch()
        if token in self.lost:
            await context.abort(grpc.StatusCode.NOT_FOUND, "stale token")
        return worker_pb2.RecordTaskRunHeartbeatResponse(cancel_requested=token in self.cancel)

    async def CompleteTaskRun(self, request, context):  # noqa: N802
        if request.task_token in self.lost:
            await context.abort(grpc.StatusCode.NOT_FOUND, "stale token")
        if self.unavailable_completes > 0:
            self.unavailable_completes -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        if request.logs:  # the attempt's last lines, sent with the result
            self.logs[request.task_token].extend(request.logs)
            self.events.append(("logs", request.task_token))
        self.completed[request.task_token] = request
        self.events.append(("complete", request.task_token))
        self._touch()
        return worker_pb2.CompleteTaskRunResponse()

    async def FailTaskRun(self, request, context):  # noqa: N802
        if request.task_token in self.lost:
            await context.abort(grpc.StatusCode.NOT_FOUND, "stale token")
        self.failed[request.task_token] = request
        self.events.append(("fail", request.task_token))
        self._touch()
        return worker_pb2.FailTaskRunResponse()

    async def WorkerHeartbeat(self, request, context):  # noqa: N802
        self.worker_heartbeats += 1
        if request.worker_id not in self.known:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "unknown worker")
        self._touch()
        return worker_pb2.WorkerHeartbeatResponse()

    async def ShutdownWorker(self, request, context):  # noqa: N802
        self.shutdowns.append(request.worker_id)
        self.known.discard(request.worker_id)
        self._touch()
        return worker_pb2.ShutdownWorkerResponse(requeued_task_runs=0)

    # LogService
    async def AppendLogs(self, request, context):  # noqa: N802
        self.logs[request.task_token].extend(request.entries)
        self.events.append(("logs", request.task_token))
        self._touch()
        return log_pb2.AppendLogsResponse()


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeControlPlane, str]]:
    plane = FakeControlPlane()
    max_receive = getattr(request, "param", None)
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", max_receive)] if max_receive else []
    )
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(plane, server)
    log_pb2_grpc.add_LogServiceServicer_to_server(plane, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield plane, f"127.0.0.1:{port}"
    await server.stop(grace=None)


def make_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("test.Hello")
    def hello(ctx: TaskContext, props: dict) -> dict:
        ctx.log.info("hello %s", props["name"])
        ctx.log.debug("in %s", ctx.working_dir)
        assert ctx.working_dir.is_dir() and not any(ctx.working_dir.iterdir())
        return {"greeting": f"hello {props['name']}", "attempt": ctx.attempt, "value": ctx.value}

    @registry.task("test.Boom")
    def boom(ctx: TaskContext, props: dict) -> None:
        raise ValueError("boom")

    @registry.task("test.Refuse")
    async def refuse(ctx: TaskContext, props: dict) -> None:
        raise TaskFailure("refused on purpose", outputs={"partial": 1})

    @registry.task("test.Warn")
    async def warn(ctx: TaskContext, props: dict) -> TaskResult:
        return TaskResult({"ok": True}, warning=True)

    @registry.task("test.Wait")
    def wait(ctx: TaskContext, props: dict) -> dict:
        """Sleeps ``seconds`` unless cancelled."""
        cancelled = ctx.cancelled.wait(float(props.get("seconds", 30)))
        if cancelled:
            raise TaskFailure("stopped")
        return {"slept": props.get("seconds")}

    @registry.task("test.Big")
    def big(ctx: TaskContext, props: dict) -> dict:
        if props.get("log"):
            ctx.log.info("y" * 300_000)
        return {"blob": "x" * int(props.get("size", 0))}

    @registry.task("test.Chatty")
    def chatty(ctx: TaskContext, props: dict) -> dict:
        for i in range(250):
            ctx.log.info(f"line {i}")
        return {"n": 250}

    return registry


def new_worker(address: str, **kwargs: Any) -> Worker:
    kwargs.setdefault("registry", make_registry())
    kwargs.setdefault("poll_wait_seconds", 1.0)
    return Worker(address, worker_id="w-test", hostname="test-host", **kwargs)


async def start(worker: Worker) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.run_async())
    deadline = time.monotonic() + 10
    while not worker.wait_ready(0):
        assert not task.done(), task.exception() if task.done() else None
        assert time.monotonic() < deadline, "worker did not get ready"
        await asyncio.sleep(0.02)
    return task


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, timeout=20)


async def test_registers_every_task_type(fake) -> None:
    plane, address = fake
    worker = new_worker(address, concurrency=3, worker_group="gpu", labels={"zone": "a"})
    task = await start(worker)
    await stop(worker, task)
    [reg] = plane.registrations
    assert reg.worker_id == "w-test" and reg.hostname == "test-host" and reg.concurrency == 3
    assert reg.sdk.startswith("python/") and reg.worker_group == "gpu"
    assert [(label.key, label.value) for label in reg.labels] == [("zone", "a")]
    assert "io.kestra.plugin.core.log.Log" in reg.task_types and "test.Hello" in reg.task_types
    assert plane.shutdowns == ["w-test"]
    assert plane.polls and all(1 <= n <= 3 for n in plane.polls)


async def test_complete_with_outputs_and_logs_first(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    hello = plane.assign("test.Hello", {"name": "Ada"}, value="v1")
    ret = plane.assign("io.kestra.plugin.core.debug.Return", {"format": "flow-with-outputs"})
    log = plane.assign("io.kestra.plugin.core.log.Log", {"message": ["a", "b"], "level": "WARN"})
    await plane.wait_for(lambda: all(plane.reported(t) for t in (hello, ret, log)))
    await stop(worker, task)

    assert json.loads(plane.completed[hello].outputs_json) == {
        "greeting": "hello Ada",
        "attempt": 1,
        "value": "v1",
    }
    assert plane.completed[hello].state == common_pb2.STATE_SUCCESS
    assert plane.messages(hello)[0] == (common_pb2.LOG_LEVEL_INFO, "hello Ada")
    assert plane.messages(hello)[1][0] == common_pb2.LOG_LEVEL_DEBUG
    assert all(e.HasField("timestamp") for e in plane.logs[hello])
    assert plane.events.index(("logs", hello)) < plane.events.index(("complete", hello))
    assert json.loads(plane.completed[ret].outputs_json) == {"value": "flow-with-outputs"}
    assert plane.completed[log].outputs_json == ""
    assert plane.messages(log) == [(common_pb2.LOG_LEVEL_WARN, "a"), (common_pb2.LOG_LEVEL_WARN, "b")]
    # A short task's lines travel with its CompleteTaskRun: no separate AppendLogs call.
    assert [e.message for e in plane.completed[log].logs] == ["a", "b"]
    assert plane.events.count(("logs", log)) == 1


async def test_many_log_lines_are_batched_and_all_precede_the_result(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    token = plane.assign("test.Chatty")
    await plane.wait_for(lambda: plane.reported(token))
    await stop(worker, task)
    assert [m for _, m in plane.messages(token)] == [f"line {i}" for i in range(250)]
    kinds = [kind for kind, t in plane.events if t == token]
    assert kinds[-1] == "complete" and kinds.count("logs") >= 3  # batches of at most 100 lines


async def test_failures_warning_and_unknown_type(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    boom = plane.assign("test.Boom")
    refuse = plane.assign("test.Refuse")
    warn = plane.assign("test.Warn")
    fail = plane.assign("io.kestra.plugin.core.execution.Fail", {"errorMessage": "nope"})
    unknown = plane.assign("test.Unknown")
    await plane.wait_for(lambda: all(plane.reported(t) for t in (boom, refuse, warn, fail, unknown)))
    await stop(worker, task)

    assert plane.failed[boom].error_message == "ValueError: boom"
    assert plane.failed[boom].reason == worker_pb2.FAILURE_REASON_TASK_ERROR
    error_lines = [m for level, m in plane.messages(boom) if level == common_pb2.LOG_LEVEL_ERROR]
    assert error_lines and error_lines[0].startswith("ValueError: boom\nTraceback")
    assert plane.failed[refuse].error_message == "refused on purpose"
    assert json.loads(plane.failed[refuse].outputs_json) == {"partial": 1}
    assert plane.completed[warn].state == common_pb2.STATE_WARNING
    assert plane.failed[fail].error_message == "nope"
    assert plane.messages(fail) == [(common_pb2.LOG_LEVEL_ERROR, "nope")]
    assert "not registered" in plane.failed[unknown].error_message


async def test_shell_task_end_to_end(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    token = plane.assign(
        "io.kestra.plugin.scripts.shell.Commands",
        {"commands": ["echo hi", 'echo \'::{"outputs":{"n":42}}::\'']},
    )
    await plane.wait_for(lambda: plane.reported(token))
    await stop(worker, task)
    assert json.loads(plane.completed[token].outputs_json) == {"exitCode": 0, "vars": {"n": 42}}
    assert plane.messages(token) == [(common_pb2.LOG_LEVEL_INFO, "hi")]


async def test_cancel_requested_by_heartbeat_kills_the_process(fake, tmp_path: Path) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    pid_file = tmp_path / "pid"
    token = plane.assign(
        "io.kestra.plugin.scripts.shell.Commands", {"commands": [f"sleep 30 & echo $! > {pid_file}; wait"]}
    )
    await plane.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    pid = int(pid_file.read_text())
    plane.cancel.add(token)
    started = time.monotonic()
    await plane.wait_for(lambda: plane.reported(token))
    assert time.monotonic() - started < HEARTBEAT + 2
    await stop(worker, task)
    assert plane.failed[token].reason == worker_pb2.FAILURE_REASON_CANCELLED
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan may wait to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


async def test_lost_lease_stops_the_task_and_drops_the_result(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    token = plane.assign("test.Wait", {"seconds": 30})
    await plane.wait_for(lambda: plane.task_heartbeats[token] >= 1)
    plane.lost.add(token)
    await plane.wait_for(lambda: worker._in_use == 0, timeout=5)
    await stop(worker, task)
    assert not plane.reported(token)


async def test_lost_lease_on_completion_is_dropped_quietly(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    token = plane.assign("test.Wait", {"seconds": 0.05})
    plane.lost.add(token)  # the server refuses everything with this token
    await plane.wait_for(lambda: worker._in_use == 0 and plane.polls, timeout=5)
    await asyncio.sleep(0.1)
    await stop(worker, task)
    assert not plane.reported(token)


async def test_transient_unavailable_on_complete_is_retried(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    plane.unavailable_completes = 2
    token = plane.assign("io.kestra.plugin.core.debug.Return", {"format": "x"})
    await plane.wait_for(lambda: plane.reported(token))
    await stop(worker, task)
    assert json.loads(plane.completed[token].outputs_json) == {"value": "x"}


async def test_timeout_fails_with_reason_timeout(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    token = plane.assign("test.Wait", {"seconds": 30}, timeout_seconds=0.3)
    await plane.wait_for(lambda: plane.reported(token))
    await stop(worker, task)
    assert plane.failed[token].reason == worker_pb2.FAILURE_REASON_TIMEOUT
    assert plane.failed[token].error_message == "Timeout after 0.3 seconds"


async def test_concurrency_limits_polls_and_running_tasks(fake) -> None:
    plane, address = fake
    worker = new_worker(address, concurrency=2)
    task = await start(worker)
    tokens = [plane.assign("test.Wait", {"seconds": 0.4}) for _ in range(5)]
    peak = 0
    deadline = time.monotonic() + 10
    while not all(plane.reported(t) for t in tokens):
        peak = max(peak, worker._in_use)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await stop(worker, task)
    assert peak == 2
    assert all(1 <= n <= 2 for n in plane.polls)


async def test_unknown_worker_registers_again(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    plane.known.clear()  # the control plane forgot us (e.g. declared dead)
    await plane.wait_for(lambda: len(plane.registrations) >= 2)
    token = plane.assign("io.kestra.plugin.core.debug.Return", {"format": "again"})
    await plane.wait_for(lambda: plane.reported(token))
    await stop(worker, task)


async def test_worker_heartbeats(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    await plane.wait_for(lambda: plane.worker_heartbeats >= 2)
    await stop(worker, task)


async def test_shutdown_lets_short_tasks_finish_and_hands_back_the_rest(fake) -> None:
    plane, address = fake
    worker = new_worker(address, shutdown_grace_seconds=0.8)
    task = await start(worker)
    short = plane.assign("test.Wait", {"seconds": 0.3})
    long = plane.assign("test.Wait", {"seconds": 30})
    await plane.wait_for(lambda: plane.task_heartbeats[long] >= 1)
    started = time.monotonic()
    await stop(worker, task)
    assert time.monotonic() - started < 5
    assert short in plane.completed
    assert plane.failed[long].reason == worker_pb2.FAILURE_REASON_WORKER_SHUTDOWN
    assert plane.events.index(("fail", long)) < len(plane.events)
    assert plane.shutdowns == ["w-test"]


async def test_force_stop_skips_the_grace_period(fake) -> None:
    plane, address = fake
    worker = new_worker(address, shutdown_grace_seconds=60)
    task = await start(worker)
    token = plane.assign("test.Wait", {"seconds": 30})
    await plane.wait_for(lambda: plane.task_heartbeats[token] >= 1)
    started = time.monotonic()
    worker.stop(force=True)
    await asyncio.wait_for(task, timeout=10)
    assert time.monotonic() - started < 3
    assert plane.failed[token].reason == worker_pb2.FAILURE_REASON_WORKER_SHUTDOWN


@pytest.mark.parametrize("fake", [64 * 1024], indirect=True)
async def test_outputs_over_the_message_limit_fail_the_task_run(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    small = plane.assign("test.Big", {"size": 10})
    big = plane.assign("test.Big", {"size": 200_000})
    await plane.wait_for(lambda: plane.reported(small) and plane.reported(big))
    await stop(worker, task)
    assert small in plane.completed
    assert plane.failed[big].error_message.startswith("Task outputs are too large to report (200012 bytes)")


async def test_very_long_log_messages_are_cut(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    task = await start(worker)
    token = plane.assign("test.Big", {"log": True})
    await plane.wait_for(lambda: plane.reported(token))
    await stop(worker, task)
    [(_, message)] = plane.messages(token)
    assert message.startswith("y" * 1000) and message.endswith("… [37856 characters cut]")


async def test_refused_registration_raises(fake) -> None:
    plane, address = fake
    worker = new_worker(address, worker_group="refused")
    with pytest.raises(WorkerError, match="INVALID_ARGUMENT: worker_group"):
        await asyncio.wait_for(worker.run_async(), timeout=10)


async def test_waits_for_the_control_plane_to_come_up() -> None:
    plane = FakeControlPlane()
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(plane, server)
    log_pb2_grpc.add_LogServiceServicer_to_server(plane, server)
    port = server.add_insecure_port("127.0.0.1:0")  # reserve a port, start serving later
    worker = new_worker(f"127.0.0.1:{port}")
    task = asyncio.create_task(worker.run_async())
    await asyncio.sleep(0.8)
    assert not worker.wait_ready(0) and not task.done()
    await server.start()
    try:
        await plane.wait_for(lambda: plane.registrations, timeout=15)
        await stop(worker, task)
    finally:
        await server.stop(grace=None)


async def test_stop_before_run_returns_at_once(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    worker.stop()
    await asyncio.wait_for(worker.run_async(), timeout=5)
    assert plane.registrations == []


async def test_run_in_a_thread_and_stop(fake) -> None:
    plane, address = fake
    worker = new_worker(address)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert await asyncio.to_thread(worker.wait_ready, 10)
    token = plane.assign("io.kestra.plugin.core.debug.Return", {"format": "threaded"})
    await plane.wait_for(lambda: plane.reported(token))
    worker.stop()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    assert plane.shutdowns == ["w-test"]


async def test_subprocess_worker_drains_on_sigterm(fake, tmp_path: Path) -> None:
    plane, address = fake
    module = tmp_path / "sdk_test_tasks.py"
    module.write_text(
        "from worker_sdk import task\n\n"
        "@task('test.Sub')\n"
        "def sub(ctx, props):\n"
        "    ctx.log.info('from a subprocess')\n"
        "    return {'pid': __import__('os').getpid()}\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker_sdk", "--server", address, "--concurrency", "2",
        "--module", "sdk_test_tasks", "--label", "kind=sub",
        env=env, cwd=str(tmp_path),
    )  # fmt: skip
    try:
        await plane.wait_for(lambda: plane.registrations, timeout=20)
        assert "test.Sub" in plane.registrations[0].task_types
        token = plane.assign("test.Sub")
        await plane.wait_for(lambda: plane.reported(token), timeout=20)
        assert json.loads(plane.completed[token].outputs_json) == {"pid": proc.pid}
        assert plane.messages(token) == [(common_pb2.LOG_LEVEL_INFO, "from a subprocess")]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
        assert len(plane.shutdowns) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_assignment_from_proto() -> None:
    message = worker_pb2.TaskAssignment(
        task_token="t", task_run_id="tr", execution_id="e", namespace="ns", flow_id="f", flow_revision=2,
        task_id="id", task_type="x.Y", attempt=3, properties_json="{}", idempotency_key="e:tr",
    )  # fmt: skip
    message.lease_expires_at.FromSeconds(1_700_000_000)
    a = Assignment.from_proto(message)
    assert a.value is None and a.timeout_seconds is None and a.ready_at is None
    assert a.lease_expires_at is not None and a.lease_expires_at.tzinfo is not None
    assert (a.attempt, a.flow_revision, a.idempotency_key) == (3, 2, "e:tr")


async def test_inline_tasks_run_on_the_event_loop_without_a_directory_others_in_a_thread(fake) -> None:
    """TaskDefinition.inline: no thread, no working directory; any other sync task gets both."""
    plane, address = fake
    registry = make_registry()
    seen: dict[str, tuple[int, bool]] = {}

    def where(name: str) -> Callable[[TaskContext, dict], dict]:
        def fn(ctx: TaskContext, props: dict) -> dict:
            seen[name] = (threading.get_ident(), ctx.working_dir.is_dir())
            return {"ran": name}
        return fn

    registry.register("test.Inline", where("inline"), inline=True)
    registry.register("test.Threaded", where("threaded"))
    worker = new_worker(address, registry=registry)
    task = await start(worker)
    inline = plane.assign("test.Inline")
    threaded = plane.assign("test.Threaded")
    log = plane.assign("io.kestra.plugin.core.log.Log", {"message": "hi"})
    await plane.wait_for(lambda: all(plane.reported(t) for t in (inline, threaded, log)))
    await stop(worker, task)
    loop_thread = threading.get_ident()
    assert seen["inline"] == (loop_thread, False)
    assert seen["threaded"][0] != loop_thread and seen["threaded"][1] is True
    assert json.loads(plane.completed[inline].outputs_json) == {"ran": "inline"}
    assert plane.messages(log) == [(common_pb2.LOG_LEVEL_INFO, "hi")]


def test_the_pure_builtins_are_inline_and_a_replacement_is_not() -> None:
    registry = TaskRegistry()
    assert registry.get("io.kestra.plugin.core.log.Log").inline
    assert registry.get("io.kestra.plugin.core.debug.Return").inline
    assert not registry.get("io.kestra.plugin.scripts.shell.Commands").inline
    assert not registry.get("io.kestra.plugin.core.flow.Sleep").inline
    registry.register("io.kestra.plugin.core.log.Log", lambda ctx, props: None, replace=True)
    assert not registry.get("io.kestra.plugin.core.log.Log").inline
    registry.register("test.Async", _async_task, inline=True)
    assert not registry.get("test.Async").inline  # a coroutine runs on the loop anyway


async def _async_task(ctx: TaskContext, props: dict) -> None:
    return None
