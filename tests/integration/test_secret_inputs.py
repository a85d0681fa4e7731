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


CHILD = """
id: child
namespace: tests.secretinputs
inputs:
  - id: token
    type: STRING
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "child got {{ inputs.token }}"
  - id: size
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.token | length }}"
"""

PARENT = """
id: parent
namespace: tests.secretinputs
inputs:
  - id: password
    type: SECRET
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.secretinputs
    flowId: child
    inputs:
      token: "Bearer {{ inputs.password }}"
"""


def test_secret_passed_to_a_subflow_string_input_stays_encrypted_and_masked_in_the_child(database_url):
    server = ServerThread(make_settings(database_url)).start()
    stubs = connect(server.address)
    try:
        stubs.deploy(CHILD)
        stubs.deploy(PARENT)
        with worker_process(server.address):
            parent = stubs.wait(stubs.start("tests.secretinputs", "parent", inputs={"password": PASSWORD}).id)
        child_id = json.loads(next(tr for tr in parent.task_runs if tr.task_id == "call").outputs_json)["executionId"]
        child = stubs.get(child_id)
        messages = [e.message for e in stubs.logs_stub_list(child_id)]
    finally:
        stubs.close()
        server.stop()
    assert state_name(parent.state.current) == "SUCCESS" and state_name(child.state.current) == "SUCCESS"
    assert messages == ["child got ******"]  # the whole sealed value is masked in the child
    size = next(tr for tr in child.task_runs if tr.task_id == "size")
    assert json.loads(size.outputs_json) == {"value": str(len("Bearer " + PASSWORD))}  # decrypted for the task
    assert PASSWORD not in child.inputs_json
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT inputs FROM executions WHERE id = :id"), {"id": child_id}).scalar_one()
    engine.dispose()
    assert stored["token"].startswith("kestrel-aes256gcm:") and PASSWORD not in json.dumps(stored)
