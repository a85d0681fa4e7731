"""API tokens end to end: every gRPC method (enumerated from the service descriptors) refuses a
missing, malformed, tampered, expired or revoked token with UNAUTHENTICATED; roles reach only
their methods; the `kestrel token` commands create, list and revoke tokens on the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from controlplane.auth import policy
from controlplane.auth import store as token_store
from controlplane.auth.tokens import Role
from controlplane.cli import app
from controlplane.store import tables as t
from tests.conftest import fresh_database_url
from tests.integration.authkit import all_methods, call, code_of
from tests.integration.harness import REPO, ServerThread, wait_until
from tests.integration.harness import test_settings as settings_for

ADMIN = "kst_admin-bootstrap-token-for-the-auth-tests-0123456789"
METHODS = all_methods()


@pytest.fixture(scope="module")
def auth_server():
    gen = fresh_database_url()
    url = next(gen)
    srv = ServerThread(settings_for(url, auth_enabled=True, auth_cache_seconds=0, bootstrap_token=ADMIN)).start()
    srv.database_url = url
    yield srv
    srv.stop()
    gen.close()


def _create(srv, role: Role, namespace: str = "", **kw) -> tuple[str, str]:
    async def go():
        async with srv.cp.engine.begin() as conn:
            return await token_store.create_token(conn, role, namespace, **kw)

    text, info = srv.run(go())
    return text, info.id


@pytest.fixture(scope="module")
def tokens(auth_server):
    out = {"admin": ADMIN}
    out["client"], _ = _create(auth_server, Role.CLIENT, "company.team", name="team")
    out["worker"], _ = _create(auth_server, Role.WORKER, name="w")
    out["expired"], expired_id = _create(auth_server, Role.ADMIN, name="expired", expires_in=timedelta(hours=1))
    out["revoked"], revoked_id = _create(auth_server, Role.ADMIN, name="revoked")

    async def age_and_revoke():
        async with auth_server.cp.engine.begin() as conn:
            await conn.execute(update(t.api_tokens).where(t.api_tokens.c.id == expired_id)
                               .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
            await token_store.revoke_token(conn, revoked_id)

    auth_server.run(age_and_revoke())
    return out


@pytest.fixture(scope="module")
def channel(auth_server):
    ch = grpc.insecure_channel(auth_server.address)
    yield ch
    ch.close()


def test_the_descriptors_list_every_service():
    services = {m.path.split("/")[1] for m in METHODS}
    assert len(services) == 7 and len(METHODS) >= 41, (services, len(METHODS))


def _bad_credentials(tokens):
    admin = tokens["admin"]
    tampered = admin[:-1] + ("A" if admin[-1] != "A" else "B")
    return {
        "missing": {"token": None},
        "empty bearer": {"raw_authorization": "Bearer "},
        "other scheme": {"raw_authorization": f"Basic {admin}"},
        "tampered": {"token": tampered},
        "truncated": {"token": admin[:20]},
        "huge": {"token": "k" * 5000},
        "expired": {"token": tokens["expired"]},
        "revoked": {"token": tokens["revoked"]},
    }


def test_every_method_refuses_a_missing_or_bad_token(channel, tokens):
    refused = 0
    for method in METHODS:
        for why, kw in _bad_credentials(tokens).items():
            code, details = code_of(call, channel, method, method.request_class(), **kw)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (str(method), why, code, details)
            assert tokens["admin"] not in details and tokens["expired"] not in details
            refused += 1
    assert refused == len(METHODS) * 8


def test_the_admin_token_passes_authentication_on_every_method(channel, tokens):
    """The same empty requests with a good token get past authentication (so the test above
    could fail); they end as the servicer decides, never INTERNAL."""
    for method in METHODS:
        code, details = code_of(call, channel, method, method.request_class(), token=tokens["admin"], timeout=15)
        assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                            grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (str(method), code, details)


@pytest.mark.parametrize("role", ["client", "worker"])
def test_each_role_reaches_only_its_methods(channel, tokens, role):
    denied = allowed = 0
    for method in METHODS:
        code, details = code_of(call, channel, method, method.request_class(), token=tokens[role], timeout=15)
        assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
            str(method), code, details)
        by_policy = code == grpc.StatusCode.PERMISSION_DENIED and "token may not call" in details
        assert by_policy == (not policy.allowed(Role(role), method.path)), (str(method), code, details)
        denied += by_policy
        allowed += not by_policy
    assert denied and allowed
    if role == "client":  # a client cannot act as a worker
        assert not policy.allowed(Role.CLIENT, "/kestrel.v1.WorkerService/PollTaskRuns")
    else:  # a worker cannot start or read executions
        assert not policy.allowed(Role.WORKER, "/kestrel.v1.ExecutionService/StartExecution")


def test_health_check_needs_no_token(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_token_commands_create_list_and_revoke(auth_server, channel):
    runner = CliRunner()
    url = auth_server.database_url
    created = runner.invoke(app, ["token", "create", "--role", "client", "--namespace", "company.team",
                                  "--expires-in", "2h", "--name", "cli", "--database-url", url])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("kst_")
    listed = runner.invoke(app, ["token", "ls", "-o", "json", "--database-url", url])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    mine = [r for r in rows if r["name"] == "cli"]
    assert len(mine) == 1 and mine[0]["role"] == "client" and mine[0]["namespace"] == "company.team"
    assert mine[0]["status"] == "active" and mine[0]["expires_at"] != "-"
    assert token not in listed.stdout  # never shown again
    list_flows = next(m for m in METHODS if m.path.endswith("FlowService/ListFlows"))
    assert code_of(call, channel, list_flows, list_flows.request_class(), token=token)[0] == grpc.StatusCode.OK
    revoked = runner.invoke(app, ["token", "revoke", mine[0]["id"], "--database-url", url])
    assert revoked.exit_code == 0, revoked.output
    assert code_of(call, channel, list_flows, list_flows.request_class(), token=token)[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    bad = runner.invoke(app, ["token", "create", "--role", "worker", "--namespace", "company.team",
                              "--database-url", url])
    assert bad.exit_code == 1 and "worker tokens cover every namespace" in bad.output
    assert runner.invoke(app, ["token", "create", "--expires-in", "soon", "--database-url", url]).exit_code == 2
    assert runner.invoke(app, ["token", "revoke", "nope", "--database-url", url]).exit_code == 1


def test_the_client_sends_the_token(auth_server, tokens):
    from worker_sdk.client import KestrelClient
    from worker_sdk.errors import UnauthenticatedError

    with KestrelClient(auth_server.address, token=tokens["client"]) as client:
        assert all(f.namespace.startswith("company.team") for f in client.list_flows())
    with KestrelClient(auth_server.address, token="kst_wrong-token-wrong-token-wrong-token") as client:
        with pytest.raises(UnauthenticatedError, match="unknown API token"):
            client.list_flows()


def _standalone(url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "controlplane.cli", "server", "standalone", "--database-url", url, "--port", "0",
            *extra]


def test_standalone_refuses_to_start_without_a_token_and_warns_with_no_auth(tmp_path):
    gen = fresh_database_url()
    url = next(gen)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}
    env.update(KESTREL_REDIS_PREFIX=f"kestrel-test-{uuid.uuid4().hex[:8]}", KESTREL_DATA_DIR=str(tmp_path / "data"),
               PYTHONPATH=str(REPO))
    try:
        refused = subprocess.run(_standalone(url), capture_output=True, text=True, timeout=120,
                                 env=env, cwd=tmp_path)
        assert refused.returncode == 1, refused.stderr[-2000:]
        assert "no usable API token" in refused.stderr and "--no-auth" in refused.stderr
        proc = subprocess.Popen(_standalone(url, "--no-auth"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "listening on" in line, line
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=60)
        assert "WARNING: AUTHENTICATION IS OFF (--no-auth)" in err
        # with a bootstrap token it starts with authentication on, and never logs the token
        token = "kst_bootstrap-from-the-environment-0123456789"
        proc = subprocess.Popen(_standalone(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(env, KESTREL_BOOTSTRAP_TOKEN=token), cwd=tmp_path)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "listening on" in line, line
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=60)
        assert "authentication on" in err and "bootstrap admin token stored" in err
        assert token not in err and "AUTHENTICATION IS OFF" not in err
    finally:
        gen.close()


def test_a_worker_token_acts_only_as_the_workers_it_registered(auth_server, channel, tokens):
    from kestrel.v1 import common_pb2, execution_pb2, flow_pb2, log_pb2, worker_pb2
    from tests.integration.test_auth_matrix import Api

    token_a, id_a = _create(auth_server, Role.WORKER, name="a")
    token_b, _ = _create(auth_server, Role.WORKER, name="b")
    a, b, admin = Api(channel, token_a), Api(channel, token_b), Api(channel, tokens["admin"])
    kind = "io.kestrel.tests.Owned"
    a(a.workers.RegisterWorker, worker_pb2.RegisterWorkerRequest(worker_id="wa", task_types=[kind], concurrency=1))
    admin(admin.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(
        source=f"id: owned\nnamespace: company.team\ntasks:\n  - id: t\n    type: {kind}\n"))
    execution = admin(admin.executions.StartExecution, execution_pb2.StartExecutionRequest(
        namespace="company.team", flow_id="owned")).execution
    denied = [
        lambda: b(b.workers.RegisterWorker, worker_pb2.RegisterWorkerRequest(worker_id="wa", task_types=[kind])),
        lambda: b(b.workers.PollTaskRuns, worker_pb2.PollTaskRunsRequest(worker_id="wa", wait_seconds=0.1)),
        lambda: b(b.workers.WorkerHeartbeat, worker_pb2.WorkerHeartbeatRequest(worker_id="wa")),
        lambda: b(b.workers.ShutdownWorker, worker_pb2.ShutdownWorkerRequest(worker_id="wa")),
    ]
    for fn in denied:
        code, details = code_of(fn)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "another API token" in details, (code, details)
    assignment = None
    for _ in range(50):
        got = a(a.workers.PollTaskRuns, worker_pb2.PollTaskRunsRequest(worker_id="wa", wait_seconds=1))
        if got.assignments:
            assignment = got.assignments[0]
            break
    assert assignment is not None and assignment.execution_id == execution.id
    task_token = assignment.task_token
    for fn in (  # B holds A's task token, yet cannot use it
        lambda: b(b.workers.RecordTaskRunHeartbeat, worker_pb2.RecordTaskRunHeartbeatRequest(task_token=task_token)),
        lambda: b(b.workers.CompleteTaskRun, worker_pb2.CompleteTaskRunRequest(task_token=task_token)),
        lambda: b(b.workers.FailTaskRun, worker_pb2.FailTaskRunRequest(task_token=task_token)),
        lambda: b(b.logs.AppendLogs, log_pb2.AppendLogsRequest(task_token=task_token, entries=[
            log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="forged")])),
    ):
        code, details = code_of(fn)
        assert code == grpc.StatusCode.PERMISSION_DENIED, (code, details)
    a(a.workers.CompleteTaskRun, worker_pb2.CompleteTaskRunRequest(task_token=task_token, outputs_json="{}"))
    wait_until(lambda: admin(admin.executions.GetExecution, execution_pb2.GetExecutionRequest(
        id=execution.id)).execution.state.current == common_pb2.STATE_SUCCESS, timeout=60, what="SUCCESS")
    # once A's token is revoked, B may take the worker id over
    async def revoke():
        async with auth_server.cp.engine.begin() as conn:
            await token_store.revoke_token(conn, id_a)

    auth_server.run(revoke())
    b(b.workers.RegisterWorker, worker_pb2.RegisterWorkerRequest(worker_id="wa", task_types=[kind], concurrency=1))
    b(b.workers.WorkerHeartbeat, worker_pb2.WorkerHeartbeatRequest(worker_id="wa"))


def test_a_worker_token_reads_only_the_logs_of_its_own_task_runs_execution(auth_server, channel, tokens):
    """ListLogs under a worker token (what log.Fetch calls): only with the task token of a task
    run leased to one of its workers, only that task run's execution, only while it runs."""
    from kestrel.v1 import common_pb2, execution_pb2, flow_pb2, log_pb2, worker_pb2
    from tests.integration.test_auth_matrix import Api

    token_a, _ = _create(auth_server, Role.WORKER, name="logs-a")
    token_b, _ = _create(auth_server, Role.WORKER, name="logs-b")
    a, b, admin = Api(channel, token_a), Api(channel, token_b), Api(channel, tokens["admin"])
    kind = "io.kestrel.tests.ReadsLogs"
    a(a.workers.RegisterWorker, worker_pb2.RegisterWorkerRequest(worker_id="wlogs", task_types=[kind], concurrency=1))
    admin(admin.flows.RegisterFlow, flow_pb2.RegisterFlowRequest(
        source=f"id: reads-logs\nnamespace: company.team\ntasks:\n  - id: t\n    type: {kind}\n"))
    started = [admin(admin.executions.StartExecution, execution_pb2.StartExecutionRequest(
        namespace="company.team", flow_id="reads-logs")).execution.id for _ in range(2)]

    def poll():
        got = a(a.workers.PollTaskRuns, worker_pb2.PollTaskRunsRequest(worker_id="wlogs", wait_seconds=1))
        return got.assignments[0] if got.assignments else None

    held = wait_until(poll, timeout=60, what="an assignment")
    own = held.execution_id
    other = next(e for e in started if e != own)
    task_token = held.task_token
    a(a.logs.AppendLogs, log_pb2.AppendLogsRequest(task_token=task_token, entries=[
        log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="mine")]))

    def list_logs(api, **kw):
        return api(api.logs.ListLogs, log_pb2.ListLogsRequest(**kw)).entries

    # its own execution: by default (no execution id) and by name
    assert [e.message for e in list_logs(a, task_token=task_token)] == ["mine"]
    assert [e.execution_id for e in list_logs(a, task_token=task_token, execution_id=own)] == [own]
    denied = {
        "another execution of the same namespace": (
            lambda: list_logs(a, task_token=task_token, execution_id=other), f"not of execution {other}"),
        "no task token": (lambda: list_logs(a, execution_id=own), "task_token: a worker token reads logs only"),
        "another worker token's task run": (lambda: list_logs(b, task_token=task_token), "another API token"),
        "GetExecution stays closed": (
            lambda: a(a.executions.GetExecution, execution_pb2.GetExecutionRequest(id=own)), "may not call"),
    }
    for why, (fn, expected) in denied.items():
        code, details = code_of(fn)
        assert code == grpc.StatusCode.PERMISSION_DENIED and expected in details, (why, code, details)
    a(a.workers.CompleteTaskRun, worker_pb2.CompleteTaskRunRequest(task_token=task_token, outputs_json="{}"))
    code, details = code_of(lambda: list_logs(a, task_token=task_token))  # no longer held
    assert code == grpc.StatusCode.NOT_FOUND and "stale" in details, (code, details)
    second = wait_until(poll, timeout=60, what="the second assignment")
    a(a.workers.CompleteTaskRun, worker_pb2.CompleteTaskRunRequest(task_token=second.task_token, outputs_json="{}"))


FETCH_OWN = """
id: fetch-own-logs
namespace: company.team
tasks:
  - {id: hello, type: io.kestra.plugin.core.log.Log, message: hello-under-auth}
  - {id: fetch, type: io.kestra.plugin.core.log.Fetch}
"""

FETCH_OTHER = """
id: fetch-other-logs
namespace: company.team
inputs:
  - {id: other, type: STRING}
tasks:
  - {id: fetch, type: io.kestra.plugin.core.log.Fetch, executionId: "{{ inputs.other }}"}
"""


def test_log_fetch_runs_on_a_worker_with_a_worker_token(auth_server):
    """log.Fetch on a real worker holding a worker token: its own execution's logs are read; another
    execution's (same namespace) are refused with a message naming the task and the rule."""
    from tests.integration.harness import worker_process
    from worker_sdk.client import KestrelClient
    from worker_sdk.connection import Connection
    from worker_sdk.types import State

    worker_token, _ = _create(auth_server, Role.WORKER, name="fetcher")
    with worker_process(auth_server.address, "--token", worker_token, concurrency=2), \
            KestrelClient(auth_server.address, connection=Connection(token=ADMIN), timeout=30) as client:
        flow = client.deploy_flow(FETCH_OWN).flow
        own = client.wait_execution(client.start_execution(flow.namespace, flow.id).id, timeout=120)
        fetch = {tr.task_id: tr for tr in own.task_runs}["fetch"]
        assert own.state.current == State.SUCCESS, [(tr.task_id, tr.error) for tr in own.task_runs]
        assert fetch.outputs["size"] >= 1, fetch.outputs
        flow = client.deploy_flow(FETCH_OTHER).flow
        other = client.wait_execution(client.start_execution(flow.namespace, flow.id,
                                                             inputs={"other": own.id}).id, timeout=120)
        assert other.state.current == State.FAILED, other
        error = {tr.task_id: tr for tr in other.task_runs}["fetch"].error
        assert "executionId" in error and "own execution" in error and "task 'fetch'" in error, error
