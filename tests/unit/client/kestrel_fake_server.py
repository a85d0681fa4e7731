"""An in-process stand-in for the Kestrel gRPC API, for client and CLI unit tests.

It speaks the real ``kestrel.v1`` contract over a real gRPC server on a free port, with canned
behaviour a test can steer: flows are stored in memory; an execution runs a scripted sequence of
states that ``WatchExecution`` replays; ``fail`` forces any RPC to return a given status. It is
not the control plane; end-to-end tests against the real server live elsewhere.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from kestrel.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    flow_pb2,
    flow_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
)

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def ts(seconds: float) -> Timestamp:
    """A Timestamp ``seconds`` after :data:`T0`."""
    out = Timestamp()
    out.FromDatetime(T0 + timedelta(seconds=seconds))
    return out


def state_info(*states: int, start: float = 0.0, step: float = 1.0) -> common_pb2.StateInfo:
    """A StateInfo whose histories are ``states``, one every ``step`` seconds from ``start``."""
    return common_pb2.StateInfo(
        current=states[-1],
        histories=[common_pb2.StateHistory(state=s, date=ts(start + i * step)) for i, s in enumerate(states)],
    )


def _field(source: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)\s*$", source, re.MULTILINE)
    return match.group(1) if match else ""


@dataclass
class FakeKestrel(
    flow_pb2_grpc.FlowServiceServicer,
    execution_pb2_grpc.ExecutionServiceServicer,
    log_pb2_grpc.LogServiceServicer,
):
    """The servicers' state and knobs.

    Attributes:
        flows: (namespace, id) -> stored revisions, oldest first.
        executions: id -> scripted states; the last entry is what GetExecution returns.
        logs: execution id -> log entries.
        requests: every request received, as (method name, request message).
        fail: method name -> (status, message) to abort that RPC with.
        final_state: terminal state given to the next started execution.
        watch_closes_early: WatchExecution stops after this many messages (None: never).
    """

    flows: dict[tuple[str, str], list[flow_pb2.Flow]] = field(default_factory=dict)
    executions: dict[str, list[execution_pb2.Execution]] = field(default_factory=dict)
    logs: dict[str, list[log_pb2.LogEntry]] = field(default_factory=dict)
    requests: list[tuple[str, object]] = field(default_factory=list)
    fail: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    final_state: int = common_pb2.STATE_SUCCESS
    watch_closes_early: int | None = None
    list_page_size_cap: int = 2
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, name: str, request: object, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.requests.append((name, request))
        if name in self.fail:
            code, message = self.fail[name]
            context.abort(code, message)

    def requests_of(self, name: str) -> list:
        return [r for n, r in self.requests if n == name]

    # -- flows --

    def _issues(self, source: str) -> list[flow_pb2.ValidationIssue]:
        issues = []
        for number, line in enumerate(source.splitlines(), start=1):
            if "type: unknown" in line:
                issues.append(
                    flow_pb2.ValidationIssue(
                        path="tasks[0].type",
                        message="unknown task type 'unknown' in task 'bad'",
                        line=number,
                        column=line.index("type") + 1,
                    )
                )
        if not _field(source, "id"):
            issues.append(flow_pb2.ValidationIssue(path="id", message="missing required field 'id'"))
        return issues

    def ValidateFlow(self, request, context):
        self._enter("ValidateFlow", request, context)
        errors = self._issues(request.source)
        warnings = []
        if "deprecated" in request.source:
            warnings.append(flow_pb2.ValidationIssue(path="tasks[0]", message="deprecated alias", line=5))
        return flow_pb2.ValidateFlowResponse(
            valid=not errors,
            errors=errors,
            warnings=warnings,
            namespace=_field(request.source, "namespace"),
            id=_field(request.source, "id"),
        )

    def RegisterFlow(self, request, context):
        self._enter("RegisterFlow", request, context)
        errors = self._issues(request.source)
        if errors:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(e.message for e in errors))
        key = (_field(request.source, "namespace"), _field(request.source, "id"))
        revisions = self.flows.setdefault(key, [])
        latest = revisions[-1] if revisions else None
        if request.expected_revision and (latest.revision if latest else 0) != request.expected_revision:
            context.abort(grpc.StatusCode.ABORTED, f"flow {key[0]}.{key[1]} is at another revision")
        if latest is not None and latest.source == request.source:
            return flow_pb2.RegisterFlowResponse(flow=latest, created_revision=False)
        flow = flow_pb2.Flow(
            namespace=key[0],
            id=key[1],
            revision=len(revisions) + 1,
            source=request.source,
            task_count=request.source.count("- id:"),
            created=ts(0),
        )
        revisions.append(flow)
        return flow_pb2.RegisterFlowResponse(flow=flow, created_revision=True)

    def GetFlow(self, request, context):
        self._enter("GetFlow", request, context)
        revisions = self.flows.get((request.namespace, request.id))
        if not revisions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"flow {request.namespace}.{request.id} not found")
        if request.revision:
            if request.revision > len(revisions):
                context.abort(grpc.StatusCode.NOT_FOUND, f"revision {request.revision} not found")
            return flow_pb2.GetFlowResponse(flow=revisions[request.revision - 1])
        return flow_pb2.GetFlowResponse(flow=revisions[-1])

    def ListFlows(self, request, context):
        self._enter("ListFlows", request, context)
        latest = [
            revs[-1] for key, revs in sorted(self.flows.items()) if key[0].startswith(request.namespace)
        ]
        start = int(request.page_token or 0)
        page = latest[start : start + self.list_page_size_cap]
        more = start + self.list_page_size_cap < len(latest)
        return flow_pb2.ListFlowsResponse(
            flows=page, next_page_token=str(start + self.list_page_size_cap) if more else ""
        )

    def ListFlowRevisions(self, request, context):
        self._enter("ListFlowRevisions", request, context)
        return flow_pb2.ListFlowRevisionsResponse(flows=self.flows.get((request.namespace, request.id), []))

    def DeleteFlow(self, request, context):
        self._enter("DeleteFlow", request, context)
        if self.flows.pop((request.namespace, request.id), None) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "flow not found")
        return flow_pb2.DeleteFlowResponse()

    # -- executions --

    def _script(self, execution_id: str, flow: flow_pb2.Flow, request) -> list[execution_pb2.Execution]:
        """CREATED -> RUNNING (one task run running) -> final state (task run done, outputs)."""
        base = dict(
            id=execution_id,
            namespace=flow.namespace,
            flow_id=flow.id,
            flow_revision=flow.revision,
            inputs_json=request.inputs_json or "{}",
            labels=request.labels,
            start_date=ts(0),
        )
        final = self.final_state
        ok = final in (common_pb2.STATE_SUCCESS, common_pb2.STATE_WARNING)
        created = execution_pb2.Execution(state=state_info(common_pb2.STATE_CREATED), **base)
        running_run = execution_pb2.TaskRun(
            id="tr-1",
            execution_id=execution_id,
            task_id="hello",
            task_type="io.kestra.plugin.core.log.Log",
            state=state_info(common_pb2.STATE_CREATED, common_pb2.STATE_RUNNING, start=1),
        )
        running = execution_pb2.Execution(
            state=state_info(common_pb2.STATE_CREATED, common_pb2.STATE_RUNNING),
            task_runs=[running_run],
            **base,
        )
        done_run = execution_pb2.TaskRun(
            id="tr-1",
            execution_id=execution_id,
            task_id="hello",
            task_type="io.kestra.plugin.core.log.Log",
            state=state_info(common_pb2.STATE_CREATED, common_pb2.STATE_RUNNING, final, start=1, step=0.25),
            attempts=[
                execution_pb2.TaskRunAttempt(
                    attempt=1,
                    worker_id="worker-a",
                    state=state_info(common_pb2.STATE_RUNNING, final, start=1.25, step=0.25),
                    start_date=ts(1.25),
                    end_date=ts(1.5),
                )
            ],
            outputs_json='{"value": "hi"}' if ok else "",
            error="" if ok else "boom",
        )
        done = execution_pb2.Execution(
            state=state_info(common_pb2.STATE_CREATED, common_pb2.STATE_RUNNING, final),
            task_runs=[done_run],
            outputs_json='{"greeting": "hi"}' if ok else "",
            end_date=ts(2),
            **base,
        )
        return [created, running, done]

    def StartExecution(self, request, context):
        self._enter("StartExecution", request, context)
        revisions = self.flows.get((request.namespace, request.flow_id))
        if not revisions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"flow {request.namespace}.{request.flow_id} not found")
        inputs = json.loads(request.inputs_json or "{}")
        if "count" in inputs and not str(inputs["count"]).lstrip("-").isdigit():
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input 'count' of flow {request.namespace}.{request.flow_id}: "
                f"expected INT, got {inputs['count']!r}",
            )
        with self._lock:
            self._counter += 1
            execution_id = f"exec-{self._counter}"
        script = self._script(execution_id, revisions[-1], request)
        self.executions[execution_id] = script
        return execution_pb2.StartExecutionResponse(execution=script[0], created=True)

    def _get(self, execution_id: str, context) -> list[execution_pb2.Execution]:
        script = self.executions.get(execution_id)
        if script is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"execution {execution_id} not found")
        return script

    def GetExecution(self, request, context):
        self._enter("GetExecution", request, context)
        return execution_pb2.GetExecutionResponse(execution=self._get(request.id, context)[-1])

    def ListExecutions(self, request, context):
        self._enter("ListExecutions", request, context)
        latest = [s[-1] for _, s in sorted(self.executions.items(), reverse=True)]
        latest = [e for e in latest if e.namespace.startswith(request.namespace)]
        if request.flow_id:
            latest = [e for e in latest if e.flow_id == request.flow_id]
        if request.states:
            latest = [e for e in latest if e.state.current in request.states]
        size = min(request.page_size or 50, self.list_page_size_cap)
        start = int(request.page_token or 0)
        page = []
        for e in latest[start : start + size]:
            slim = execution_pb2.Execution()
            slim.CopyFrom(e)
            del slim.task_runs[:]
            page.append(slim)
        more = start + size < len(latest)
        return execution_pb2.ListExecutionsResponse(
            executions=page, next_page_token=str(start + size) if more else ""
        )

    def KillExecution(self, request, context):
        self._enter("KillExecution", request, context)
        script = self._get(request.id, context)
        killing = execution_pb2.Execution()
        killing.CopyFrom(script[-1])
        killing.state.current = common_pb2.STATE_KILLING
        killing.state.histories.append(common_pb2.StateHistory(state=common_pb2.STATE_KILLING, date=ts(3)))
        return execution_pb2.KillExecutionResponse(execution=killing)

    def WatchExecution(self, request, context) -> Iterator[execution_pb2.WatchExecutionResponse]:
        self._enter("WatchExecution", request, context)
        script = self._get(request.id, context)
        for number, execution in enumerate(script):
            if self.watch_closes_early is not None and number >= self.watch_closes_early:
                return
            yield execution_pb2.WatchExecutionResponse(execution=execution)

    # -- logs --

    def ListLogs(self, request, context):
        self._enter("ListLogs", request, context)
        entries = [
            e
            for e in self.logs.get(request.execution_id, [])
            if e.sequence > request.after_sequence
            and (not request.task_run_id or e.task_run_id == request.task_run_id)
            and e.level >= request.min_level
        ]
        return log_pb2.ListLogsResponse(entries=entries[: min(request.page_size or 1000, 2)])

    def TailLogs(self, request, context):
        self._enter("TailLogs", request, context)
        entries = [e for e in self.logs.get(request.execution_id, []) if e.sequence > request.after_sequence]
        for i in range(0, len(entries), 2):
            yield log_pb2.TailLogsResponse(entries=entries[i : i + 2])


@dataclass
class RunningFake:
    """A started fake: ``address`` is ``127.0.0.1:<port>``."""

    fake: FakeKestrel
    address: str
    server: grpc.Server


def start_fake(fake: FakeKestrel | None = None) -> RunningFake:
    """Serves ``fake`` (a new one by default) on a free local port."""
    fake = fake or FakeKestrel()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    flow_pb2_grpc.add_FlowServiceServicer_to_server(fake, server)
    execution_pb2_grpc.add_ExecutionServiceServicer_to_server(fake, server)
    log_pb2_grpc.add_LogServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return RunningFake(fake=fake, address=f"127.0.0.1:{port}", server=server)


def log_entry(sequence: int, message: str, level: int = common_pb2.LOG_LEVEL_INFO, task_id: str = "hello"):
    """A stored log line of execution ``exec-1``."""
    return log_pb2.LogEntry(
        sequence=sequence,
        execution_id="exec-1",
        task_run_id="tr-1" if task_id else "",
        task_id=task_id,
        attempt=1,
        level=level,
        message=message,
        timestamp=ts(sequence),
    )


HELLO_FLOW = """\
id: hello
namespace: demo.team
inputs:
  - id: user
    type: STRING
    defaults: world
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "Hello {{ inputs.user }}"
"""

BAD_FLOW = """\
id: broken
namespace: demo.team
tasks:
  - id: bad
    type: unknown
"""
