"""Cross-namespace matrix: a client token scoped to ``company.team`` against every resource
(flows, executions, logs, KV, namespace files, execution and input files, triggers) and every
action, in its own namespace, a child, a sibling and the parent. Own and child: allowed (the
call ends however the servicer decides, never PERMISSION_DENIED); sibling and parent: refused
with PERMISSION_DENIED and nothing changed; listings are filtered to the scope."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.auth import store as token_store
from controlplane.auth.tokens import Role, covers
from kestrel.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    flow_pb2,
    flow_pb2_grpc,
    kv_pb2,
    kv_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    trigger_pb2,
    trigger_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from tests.conftest import fresh_database_url
from tests.integration.harness import ServerThread, wait_until
from tests.integration.harness import test_settings as settings_for

ADMIN = "kst_admin-bootstrap-token-for-the-matrix-0123456789"
SCOPE = "company.team"
ALLOWED = ("company.team", "company.team.child")
DENIED = ("company.other", "company")
NAMESPACES = ALLOWED + DENIED
FLOW = """
id: matrix
namespace: {ns}
description: "{rev}"
inputs:
  - id: f
    type: FILE
    required: false
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 3 * * *"
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
"""


class Api:
    """Generated stubs on one channel, each call sending one token."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        self.md = [("authorization", f"Bearer {token}")]
        self.flows = flow_pb2_grpc.FlowServiceStub(channel)
        self.executions = execution_pb2_grpc.ExecutionServiceStub(channel)
        self.logs = log_pb2_grpc.LogServiceStub(channel)
        self.kv = kv_pb2_grpc.KVServiceStub(channel)
        self.storage = storage_pb2_grpc.StorageServiceStub(channel)
        self.triggers = trigger_pb2_grpc.TriggerServiceStub(channel)
        self.workers = worker_pb2_grpc.WorkerServiceStub(channel)

    def __call__(self, method, request, timeout: float = 10.0):
        return method(request, metadata=self.md, timeout=timeout)

    def stream(self, method, request, timeout: float = 10.0) -> list:
        return list(method(request, metadata=self.md, timeout=timeout))

    def upload(self, header: storage_pb2.UploadFileHeader, data: bytes):
        parts = [storage_pb2.UploadFileRequest(header=header), storage_pb2.UploadFileRequest(chunk=data)]
        return self.storage.UploadFile(iter(parts), metadata=self.md, timeout=10).file


@dataclass
class Resources:
    """What the admin made in one namespace."""

    execution_id: str = ""
    task_run_id: str = ""
    ns_file_uri: str = ""
    input_file_uri: str = ""


@pytest.fixture(scope="module")
def world():
    gen = fresh_database_url()
    url = next(gen)
    srv = ServerThread(settings_for(url, auth_enabled=True, auth_cache_seconds=0, bootstrap_token=ADMIN,
                                    scheduler_enabled=False)).start()

    async def make_client_token():
        async with srv.cp.engine.begin() as conn:
            return (await token_store.create_token(conn, Role.CLIENT, SCOPE, "matrix"))[0]

    client_token = srv.run(make_client_token())
    channel = grpc.insecure_channel(srv.address)
    admin = Api(channel, ADMIN)
    res: dict[str, Resources] = {}
    for ns in NAMESPACES:
        r = res[ns] = Resources()
        admin(admin.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=FLOW.format(ns=ns, rev="1")))
        r.execution_id = admin(admin.executions.StartExecution, execution_pb2.StartExecutionRequest(
            namespace=ns, flow_id="matrix", labels=[common_pb2.Label(key="team", value="a")])).execution.id

        def paused(ns=ns, r=r):
            ex = admin(admin.executions.GetExecution, execution_pb2.GetExecutionRequest(id=r.execution_id)).execution
            return ex if ex.state.current == common_pb2.STATE_PAUSED and ex.task_runs else None

        r.task_run_id = wait_until(paused, what=f"{ns} execution paused").task_runs[0].id
        r.ns_file_uri = admin.upload(storage_pb2.UploadFileHeader(namespace=ns, namespace_file="a.txt"), b"hi").uri
        r.input_file_uri = admin.upload(storage_pb2.UploadFileHeader(namespace=ns, flow_id="matrix", input_id="f",
                                                                     file_name="in.txt"), b"in").uri
        admin(admin.kv.SetKV, kv_pb2.SetKVRequest(namespace=ns, key="k", value_json='"v"', overwrite=True))
    yield srv, Api(channel, client_token), admin, res
    channel.close()
    srv.stop()
    gen.close()


def _ts(days: int) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(datetime.now(UTC) - timedelta(days=days))
    return out


def _key(ns: str) -> dict:
    return {"namespace": ns, "flow_id": "matrix", "trigger_id": "nightly"}


# (resource, action, call(api, ns, resources of ns)); listings are checked apart. Destructive
# actions come last so earlier cells still find their targets.
ACTIONS: list[tuple[str, str, Callable]] = [
    ("flow", "validate", lambda a, ns, r: a(a.flows.ValidateFlow, flow_pb2.ValidateFlowRequest(
        source=FLOW.format(ns=ns, rev="v")))),
    ("flow", "register", lambda a, ns, r: a(a.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(
        source=FLOW.format(ns=ns, rev="2")))),
    ("flow", "get", lambda a, ns, r: a(a.flows.GetFlow, flow_pb2.GetFlowRequest(namespace=ns, id="matrix"))),
    ("flow", "revisions", lambda a, ns, r: a(a.flows.ListFlowRevisions, flow_pb2.ListFlowRevisionsRequest(
        namespace=ns, id="matrix"))),
    ("execution", "start", lambda a, ns, r: a(a.executions.StartExecution, execution_pb2.StartExecutionRequest(
        namespace=ns, flow_id="matrix"))),
    ("execution", "get", lambda a, ns, r: a(a.executions.GetExecution, execution_pb2.GetExecutionRequest(
        id=r.execution_id))),
    ("execution", "watch", lambda a, ns, r: a.stream(a.executions.WatchExecution, execution_pb2.WatchExecutionRequest(
        id=r.execution_id), timeout=1.5)),
    ("execution", "labels", lambda a, ns, r: a(a.executions.SetExecutionLabels, execution_pb2.SetExecutionLabelsRequest(
        id=r.execution_id, labels=[common_pb2.Label(key="team", value="b")]))),
    ("execution", "replay", lambda a, ns, r: a(a.executions.ReplayExecution, execution_pb2.ReplayExecutionRequest(
        id=r.execution_id, task_run_id=r.task_run_id))),
    ("execution", "restart", lambda a, ns, r: a(a.executions.RestartExecution, execution_pb2.RestartExecutionRequest(
        id=r.execution_id))),
    ("execution", "resume", lambda a, ns, r: a(a.executions.ResumeExecution, execution_pb2.ResumeExecutionRequest(
        id=r.execution_id))),
    ("logs", "list", lambda a, ns, r: a(a.logs.ListLogs, log_pb2.ListLogsRequest(execution_id=r.execution_id))),
    ("logs", "tail", lambda a, ns, r: a.stream(a.logs.TailLogs, log_pb2.TailLogsRequest(
        execution_id=r.execution_id), timeout=1.5)),
    ("kv", "get", lambda a, ns, r: a(a.kv.GetKV, kv_pb2.GetKVRequest(namespace=ns, key="k"))),
    ("kv", "list", lambda a, ns, r: a(a.kv.ListKV, kv_pb2.ListKVRequest(namespace=ns))),
    ("kv", "set", lambda a, ns, r: a(a.kv.SetKV, kv_pb2.SetKVRequest(namespace=ns, key="k", value_json='"x"',
                                                                      overwrite=True))),
    ("namespace file", "list", lambda a, ns, r: a(a.storage.ListNamespaceFiles, storage_pb2.ListNamespaceFilesRequest(
        namespace=ns))),
    ("namespace file", "download", lambda a, ns, r: a.stream(a.storage.DownloadFile, storage_pb2.DownloadFileRequest(
        uri=r.ns_file_uri))),
    ("namespace file", "info", lambda a, ns, r: a(a.storage.GetFileInfo, storage_pb2.GetFileInfoRequest(
        uri=r.ns_file_uri))),
    ("namespace file", "upload", lambda a, ns, r: a.upload(storage_pb2.UploadFileHeader(
        namespace=ns, namespace_file="a.txt"), b"changed")),
    ("input file", "download", lambda a, ns, r: a.stream(a.storage.DownloadFile, storage_pb2.DownloadFileRequest(
        uri=r.input_file_uri))),
    ("input file", "upload", lambda a, ns, r: a.upload(storage_pb2.UploadFileHeader(
        namespace=ns, flow_id="matrix", input_id="f", file_name="x.txt"), b"x")),
    ("execution files", "list", lambda a, ns, r: a(a.storage.ListFiles, storage_pb2.ListFilesRequest(
        execution_id=r.execution_id))),
    ("trigger", "disable", lambda a, ns, r: a(a.triggers.SetTriggerEnabled, trigger_pb2.SetTriggerEnabledRequest(
        **_key(ns), enabled=False))),
    ("trigger", "backfill", lambda a, ns, r: a(a.triggers.StartBackfill, trigger_pb2.StartBackfillRequest(
        **_key(ns), start=_ts(2), end=_ts(1)))),
    ("trigger", "pause backfill", lambda a, ns, r: a(a.triggers.SetBackfillPaused, trigger_pb2.SetBackfillPausedRequest(
        **_key(ns), paused=True))),
    ("trigger", "delete backfill", lambda a, ns, r: a(a.triggers.DeleteBackfill, trigger_pb2.DeleteBackfillRequest(
        **_key(ns)))),
    ("execution", "kill", lambda a, ns, r: a(a.executions.KillExecution, execution_pb2.KillExecutionRequest(
        id=r.execution_id))),
    ("kv", "delete", lambda a, ns, r: a(a.kv.DeleteKV, kv_pb2.DeleteKVRequest(namespace=ns, key="k"))),
    ("namespace file", "delete", lambda a, ns, r: a(a.storage.DeleteFile, storage_pb2.DeleteFileRequest(
        uri=r.ns_file_uri))),
    ("flow", "delete", lambda a, ns, r: a(a.flows.DeleteFlow, flow_pb2.DeleteFlowRequest(namespace=ns, id="matrix"))),
]


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def test_listings_show_only_the_scope(world):
    _, client, _, _ = world
    for requested in ("", *NAMESPACES):
        flows = client(client.flows.ListFlows, flow_pb2.ListFlowsRequest(namespace=requested)).flows
        executions = client(client.executions.ListExecutions, execution_pb2.ListExecutionsRequest(
            namespace=requested)).executions
        triggers = client(client.triggers.ListTriggers, trigger_pb2.ListTriggersRequest(namespace=requested)).triggers
        for kind, items in (("flows", flows), ("executions", executions), ("triggers", triggers)):
            seen = {i.namespace for i in items}
            assert all(covers(SCOPE, ns) for ns in seen), (kind, requested, seen)
            expected = {ns for ns in ALLOWED if not requested or covers(requested, ns)}
            assert seen == expected, (kind, requested, seen, expected)


def test_cross_namespace_matrix(world):
    srv, client, admin, res = world
    before = {ns: _snapshot(admin, res[ns], ns) for ns in DENIED}
    cells = refused = 0
    failures = []
    for resource, action, fn in ACTIONS:
        for ns in NAMESPACES:
            code, details = _code(lambda fn=fn, ns=ns: fn(client, ns, res[ns]))
            cells += 1
            if ns in DENIED:
                if code != grpc.StatusCode.PERMISSION_DENIED:
                    failures.append(f"{resource} {action} in {ns}: expected PERMISSION_DENIED, got {code} {details}")
                refused += 1
            elif code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                          grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                failures.append(f"{resource} {action} in {ns}: expected allowed, got {code} {details}")
    assert not failures, "\n".join(failures)
    assert cells == len(ACTIONS) * len(NAMESPACES) and refused == len(ACTIONS) * len(DENIED)
    for ns in DENIED:  # nothing the refused calls aimed at changed
        assert _snapshot(admin, res[ns], ns) == before[ns], ns
    # and the allowed ones did act (so the matrix can tell the two apart)
    own = res["company.team"]
    ex = admin(admin.executions.GetExecution, execution_pb2.GetExecutionRequest(id=own.execution_id)).execution
    assert ex.state.current in (common_pb2.STATE_KILLED, common_pb2.STATE_KILLING, common_pb2.STATE_RUNNING,
                                common_pb2.STATE_SUCCESS), ex.state.current
    assert admin(admin.flows.GetFlow, flow_pb2.GetFlowRequest(namespace="company.team", id="matrix")).flow.deleted


def _snapshot(admin: Api, r: Resources, ns: str) -> dict:
    ex = admin(admin.executions.GetExecution, execution_pb2.GetExecutionRequest(id=r.execution_id)).execution
    revisions = admin(admin.flows.ListFlowRevisions, flow_pb2.ListFlowRevisionsRequest(namespace=ns, id="matrix"))
    kv = admin(admin.kv.GetKV, kv_pb2.GetKVRequest(namespace=ns, key="k")).entry
    ns_file = b"".join(m.chunk for m in admin.stream(admin.storage.DownloadFile, storage_pb2.DownloadFileRequest(
        uri=r.ns_file_uri)))
    trigger = [t for t in admin(admin.triggers.ListTriggers, trigger_pb2.ListTriggersRequest(namespace=ns)).triggers
               if t.namespace == ns][0]
    executions = admin(admin.executions.ListExecutions, execution_pb2.ListExecutionsRequest(namespace=ns)).executions
    return {
        "state": ex.state.current, "labels": [(lb.key, lb.value) for lb in ex.labels],
        "executions": sorted(e.id for e in executions if e.namespace == ns),
        "revisions": len(revisions.flows), "kv": json.loads(kv.value_json), "file": ns_file,
        "trigger": (trigger.enabled, trigger.HasField("backfill")),
    }


def test_a_worker_token_reaches_files_and_kv_only_with_a_task_token(world):
    srv, _, admin, res = world

    async def make():
        async with srv.cp.engine.begin() as conn:
            return (await token_store.create_token(conn, Role.WORKER, "", "w"))[0]

    worker = Api(grpc.insecure_channel(srv.address), srv.run(make()))
    uri = res["company.other"].ns_file_uri
    for fn in (lambda: worker.stream(worker.storage.DownloadFile, storage_pb2.DownloadFileRequest(uri=uri)),
               lambda: worker(worker.kv.GetKV, kv_pb2.GetKVRequest(namespace="company.other", key="k")),
               lambda: worker.upload(storage_pb2.UploadFileHeader(namespace="company.other", namespace_file="b"), b"")):
        code, details = _code(fn)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "task token" in details, (code, details)
    # the worker protocol itself is open to it, and a forged task token is refused
    code, _ = _code(lambda: worker(worker.workers.CompleteTaskRun, worker_pb2.CompleteTaskRunRequest(
        task_token="forged.token")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


REACHING = {
    "subflow in a sibling": """
  - id: sf
    type: io.kestra.plugin.core.flow.Subflow
    namespace: company.other
    flowId: matrix""",
    "subflow namespace computed at run time": """
  - id: sf
    type: io.kestra.plugin.core.flow.Subflow
    namespace: "{{ 'company.other' }}"
    flowId: matrix""",
    "ForEachItem into the parent": """
  - id: each
    type: io.kestra.plugin.core.flow.ForEachItem
    items: "kestra:///company/team/x.txt"
    batch:
      rows: 1
    namespace: company
    flowId: matrix""",
}
UNCONFINED_TRIGGER = """
triggers:
  - id: spy
    type: io.kestra.plugin.core.trigger.Flow
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionStatus
        in: [SUCCESS]
"""


@pytest.mark.parametrize("case", [*REACHING, "unconfined Flow trigger"])
def test_a_scoped_token_cannot_deploy_a_flow_that_reaches_outside_its_scope(world, case):
    _, client, admin, _ = world
    tasks = REACHING.get(case, "\n  - id: log\n    type: io.kestra.plugin.core.log.Log\n    message: hi")
    flow_id = "reach-" + case.replace(" ", "-").lower()
    source = f"id: {flow_id}\nnamespace: company.team\ntasks:{tasks}\n" + (UNCONFINED_TRIGGER if case not in REACHING else "")
    with pytest.raises(grpc.RpcError) as refused:
        client(client.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=source))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value.details()
    assert "reaches outside it" in refused.value.details()
    with pytest.raises(grpc.RpcError) as missing:  # nothing was stored
        admin(admin.flows.GetFlow, flow_pb2.GetFlowRequest(namespace="company.team", id=flow_id))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    admin(admin.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=source))  # an admin may


def test_a_scoped_token_may_deploy_subflows_and_confined_triggers_inside_its_scope(world):
    _, client, _, _ = world
    source = """id: inside
namespace: company.team
tasks:
  - id: sf
    type: io.kestra.plugin.core.flow.Subflow
    namespace: company.team.child
    flowId: matrix
    wait: false
triggers:
  - id: listen
    type: io.kestra.plugin.core.trigger.Flow
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionFlow
        namespace: company.team
        flowId: matrix
"""
    client(client.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(source=source))
