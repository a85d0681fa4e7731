"""SECRET inputs: stored encrypted, decrypted for tasks, masked in logs, never echoed in errors,
refused when the control plane has no encryption key (Kestra's SECRET input type)."""

from __future__ import annotations

import json

import grpc
import pytest
import sqlalchemy as sa

from kestrel.v1 import execution_pb2
from tests.integration.harness import ServerThread, worker_process
from tests.integration.harness import test_settings as make_settings
from tests.integration.rpc import connect, state_name

FLOW = """
id: secret-input
namespace: tests.secretinputs
inputs:
  - id: password
    type: SECRET
    validator: "[a-z0-9-]{8,}"
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "This is my secret: {{ inputs.password }}"
  - id: length
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.password | length }}"
  - id: echo
    type: io.kestra.plugin.core.debug.Return
    format: "echo {{ inputs.password }}"
outputs:
  - id: leaked
    type: STRING
    value: "{{ inputs.password }}"
"""
PASSWORD = "hunter2-correct-horse"


def test_secret_input_is_encrypted_at_rest_decrypted_for_tasks_and_masked_in_logs(database_url):
    server = ServerThread(make_settings(database_url)).start()
    stubs = connect(server.address)
    try:
        stubs.deploy(FLOW)
        with worker_process(server.address):
            final = stubs.wait(stubs.start("tests.secretinputs", "secret-input", inputs={"password": PASSWORD}).id)
        messages = [e.message for e in stubs.logs_stub_list(final.id)]
        with pytest.raises(grpc.RpcError) as refused:
            stubs.start("tests.secretinputs", "secret-input", inputs={"password": "Short Secret!"})
    finally:
        stubs.close()
        server.stop()
    assert state_name(final.state.current) == "SUCCESS"
    assert messages == ["This is my secret: ******"]
    length = next(tr for tr in final.task_runs if tr.task_id == "length")
    assert json.loads(length.outputs_json) == {"value": str(len(PASSWORD))}
    echo = next(tr for tr in final.task_runs if tr.task_id == "echo")
    assert json.loads(echo.outputs_json) == {"value": "echo ******"}  # API responses mask SECRET inputs
    assert json.loads(final.outputs_json) == {"leaked": "******"}
    stored_inputs = json.loads(final.inputs_json)["password"]
    assert stored_inputs.startswith("kestrel-aes256gcm:") and PASSWORD not in final.inputs_json
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "it must match the pattern" in refused.value.details() and "Short Secret!" not in refused.value.details()
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        raw = [json.dumps(r[0]) for r in conn.execute(sa.text("SELECT inputs FROM executions"))]
        raw += [r[0] for r in conn.execute(sa.text("SELECT message FROM logs"))]
    engine.dispose()
    assert not any(PASSWORD in text for text in raw)


def test_secret_inputs_are_refused_without_an_encryption_key(database_url):
    server = ServerThread(make_settings(database_url, encryption_key=None)).start()
    stubs = connect(server.address)
    try:
        stubs.deploy(FLOW)
        with pytest.raises(grpc.RpcError) as refused:
            stubs.executions.StartExecution(execution_pb2.StartExecutionRequest(
                namespace="tests.secretinputs", flow_id="secret-input", inputs_json=json.dumps({"password": PASSWORD})),
                timeout=10)
    finally:
        stubs.close()
        server.stop()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SECRET inputs need an encryption key" in refused.value.details()
    assert PASSWORD not in refused.value.details()
