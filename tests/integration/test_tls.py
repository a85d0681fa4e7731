"""TLS and mutual TLS end to end: certificates made with ``cryptography``, a control plane with
``tls_cert``/``tls_key`` (and ``tls_client_ca``), a real worker process connecting with its
certificate and a worker token, and a flow run to SUCCESS through the client."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from controlplane.auth import store as token_store
from controlplane.auth.tokens import Role
from controlplane.cli import app
from tests.conftest import fresh_database_url
from tests.integration.authkit import make_pki
from tests.integration.harness import REPO, ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as settings_for
from worker_sdk.client import KestrelClient
from worker_sdk.connection import Connection
from worker_sdk.errors import UnauthenticatedError, UnavailableError
from worker_sdk.types import State

ADMIN = "kst_admin-bootstrap-token-for-the-tls-tests-0123456789"
FLOW = """
id: hello-tls
namespace: company.team
tasks:
  - id: greet
    type: io.kestra.plugin.core.log.Log
    message: "hello over {{ 'mutual TLS' }}"
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def database():
    gen = fresh_database_url()
    yield next(gen)
    gen.close()


@pytest.fixture(scope="module")
def mtls_server(database, pki):
    srv = ServerThread(settings_for(database, auth_enabled=True, bootstrap_token=ADMIN, tls_cert=pki.server_cert,
                                    tls_key=pki.server_key, tls_client_ca=pki.ca)).start()
    yield srv
    srv.stop()


def _worker_token(srv) -> str:
    async def go():
        async with srv.cp.engine.begin() as conn:
            return (await token_store.create_token(conn, Role.WORKER, "", "tls-worker"))[0]

    return srv.run(go())


def test_a_worker_with_its_certificate_runs_a_task_over_mutual_tls(mtls_server, pki):
    token = _worker_token(mtls_server)
    conn = Connection(token=ADMIN, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    with worker_process(mtls_server.address, "--token", token, "--tls-ca", str(pki.ca), "--tls-cert",
                        str(pki.client_cert), "--tls-key", str(pki.client_key), concurrency=2), \
            KestrelClient(mtls_server.address, connection=conn, timeout=30) as client:
        flow = client.deploy_flow(FLOW).flow
        execution = client.start_execution(flow.namespace, flow.id)
        final = client.wait_execution(execution.id, timeout=120)
        assert final.state.current == State.SUCCESS, final
        assert any("hello over mutual TLS" in e.message for e in client.list_logs(execution.id))


@pytest.mark.parametrize("why", ["plaintext", "no client certificate", "certificate of another CA", "wrong server CA"])
def test_mutual_tls_refuses_a_client_without_a_good_certificate(mtls_server, pki, why):
    conn = {
        "plaintext": Connection(token=ADMIN),
        "no client certificate": Connection(token=ADMIN, tls_ca=pki.ca),
        "certificate of another CA": Connection(token=ADMIN, tls_ca=pki.ca, tls_cert=pki.rogue_cert,
                                                tls_key=pki.rogue_key),
        "wrong server CA": Connection(token=ADMIN, tls_ca=pki.other_ca, tls_cert=pki.client_cert,
                                      tls_key=pki.client_key),
    }[why]
    with KestrelClient(mtls_server.address, connection=conn, timeout=10) as client, \
            pytest.raises(UnavailableError):
        client.list_flows()


def test_a_good_certificate_still_needs_a_token(mtls_server, pki):
    conn = Connection(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    with KestrelClient(mtls_server.address, connection=conn, timeout=10) as client, \
            pytest.raises(UnauthenticatedError):
        client.list_flows()


def test_server_tls_without_client_certificates(database, pki):
    srv = ServerThread(settings_for(database, auth_enabled=True, bootstrap_token=ADMIN, tls_cert=pki.server_cert,
                                    tls_key=pki.server_key)).start()
    try:
        with KestrelClient(srv.address, connection=Connection(token=ADMIN, tls_ca=pki.ca), timeout=10) as client:
            client.list_flows()
        with KestrelClient(srv.address, connection=Connection(token=ADMIN), timeout=10) as client, \
                pytest.raises(UnavailableError):
            client.list_flows()
        # the CLI's global options reach the same settings
        result = CliRunner().invoke(app, ["--token", ADMIN, "--tls-ca", str(pki.ca), "flow", "list",
                                          "--server", srv.address])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(app, ["--token", "kst_not-a-token-not-a-token-not-a-token", "--tls-ca",
                                          str(pki.ca), "flow", "list", "--server", srv.address])
        assert result.exit_code == 1 and "unknown API token" in result.output
        assert "kst_not-a-token" not in result.output
    finally:
        srv.stop()


def test_bad_tls_files_are_named(tmp_path):
    from controlplane.auth.tls import server_credentials
    from controlplane.errors import InvalidArgumentError

    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    with pytest.raises(InvalidArgumentError, match="--tls-(cert|key)"):
        server_credentials(not_pem, not_pem, None)
    with pytest.raises(InvalidArgumentError, match="--tls-client-ca"):
        server_credentials(None, None, not_pem)
    with pytest.raises(ValueError, match="--tls-ca"):
        Connection(tls_ca=tmp_path / "missing.pem").credentials()


NODE = shutil.which("node")
NODE_SDK = REPO / "worker_sdk" / "node"


@pytest.mark.skipif(NODE is None or not (NODE_SDK / "node_modules" / "@grpc" / "grpc-js").is_dir(),
                    reason="needs node and `npm ci --prefix worker_sdk/node`")
def test_a_node_worker_runs_a_task_over_mutual_tls(mtls_server, pki):
    token = _worker_token(mtls_server)
    env = dict(os.environ, KESTREL_TOKEN=token, KESTREL_TLS_CA=str(pki.ca), KESTREL_TLS_CERT=str(pki.client_cert),
               KESTREL_TLS_KEY=str(pki.client_key))
    proc = subprocess.Popen([NODE, str(REPO / "examples" / "node-worker" / "worker.js"), "--server",
                             mtls_server.address], env=env, cwd=REPO)
    conn = Connection(token=ADMIN, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    try:  # the flow's Log task runs on a Python worker, which reads the same variables
        with worker_process(mtls_server.address, concurrency=2, env=env), \
                KestrelClient(mtls_server.address, connection=conn, timeout=30) as client:
            wait_until(lambda: any("com.acme.node.WordCount" in w.task_types and w.state == "ACTIVE"
                                   for w in client.list_workers()), timeout=60, what="the Node worker registered")
            flow = client.deploy_flow((REPO / "examples" / "node-worker" / "word-count.flow").read_text()).flow
            execution = client.start_execution(flow.namespace, flow.id)
            final = client.wait_execution(execution.id, timeout=120)
            assert final.state.current == State.SUCCESS, final
            assert final.task_runs[0].outputs["words"] == 12
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_key_of_another_certificate_is_named(pki):
    from controlplane.auth.tls import server_credentials
    from controlplane.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="--tls-key: this key does not belong to the certificate"):
        server_credentials(pki.server_cert, pki.client_key, None)
    assert server_credentials(pki.server_cert, pki.server_key, None) is not None
