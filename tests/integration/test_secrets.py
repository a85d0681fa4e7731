"""``secret()`` from ``SECRET_<KEY>`` base64 environment variables, masked everywhere it could leak.

Seeds several secrets (one with ``{{``, quotes and a backslash, one on two lines), runs a flow
that returns, logs, echoes from a shell and fails with them, then looks for each secret (raw and
JSON-escaped) in every API response of the execution and in the stored log and error columns.
"""

from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa
from google.protobuf.json_format import MessageToJson

from tests.integration.harness import ServerThread, worker_process
from tests.integration.harness import test_settings as make_settings
from tests.integration.rpc import connect, state_name

SECRETS = {
    "API_TOKEN": "tok-12345-abcdef",
    "MULTI": "first secret line\nsecond secret line",
    "TRICKY": 'he said "{{ 7*7 }}" \\ and left',
}

FLOW = """
id: secrets
namespace: tests.secrets
tasks:
  - id: get
    type: io.kestra.plugin.core.debug.Return
    format: "{{ secret('api_token') }}"
  - id: length
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.get.value | length }}"
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "token={{ secret('api_token') }} multi={{ secret('multi') }} tricky={{ secret('TRICKY') }}"
  - id: shell
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - "echo token is {{ secret('api_token') }}"
  - id: label
    type: io.kestra.plugin.core.execution.Labels
    labels:
      token: "{{ secret('api_token') }}"
  - id: loop
    type: io.kestra.plugin.core.flow.ForEach
    values: ["{{ secret('api_token') }}"]
    tasks:
      - id: inner
        type: io.kestra.plugin.core.debug.Return
        format: "{{ {'t': secret('TRICKY')} | json }}"
  - id: fail
    type: io.kestra.plugin.core.execution.Fail
    errorMessage: "failing with {{ secret('tricky') }}"
"""


def _forms(value: str) -> list[str]:
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms.update(line for line in value.splitlines() if len(line) >= 4)
    return sorted(forms)


@pytest.fixture
def server(database_url, monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(f"SECRET_{key}", base64.b64encode(value.encode()).decode())
    srv = ServerThread(make_settings(database_url)).start()
    yield srv
    srv.stop()


def test_secrets_render_for_tasks_and_never_appear_in_logs_errors_or_api_responses(server, database_url):
    stubs = connect(server.address)
    try:
        stubs.deploy(FLOW)
        with worker_process(server.address):
            final = stubs.wait(stubs.start("tests.secrets", "secrets").id, timeout=60)
        logs = list(stubs.logs_stub_list(final.id))
    finally:
        stubs.close()

    runs = {tr.task_id: tr for tr in final.task_runs}
    assert state_name(final.state.current) == "FAILED"
    assert state_name(runs["shell"].state.current) == "SUCCESS"
    # The task got the real value: a later task computed its length from the stored output.
    assert json.loads(runs["length"].outputs_json)["value"] == str(len(SECRETS["API_TOKEN"]))
    # ... while the API shows it masked.
    assert json.loads(runs["get"].outputs_json)["value"] == "******"
    messages = [entry.message for entry in logs]
    assert any(m.startswith("token=****** multi=****** tricky=******") for m in messages), messages
    assert any("token is ******" in m for m in messages), messages
    assert "failing with ******" in runs["fail"].error
    assert {label.key: label.value for label in final.labels}["token"] == "******"
    assert runs["inner"].value == "******"  # the loop value
    assert json.loads(runs["inner"].outputs_json)["value"] == '{"t":"******"}'  # JSON inside JSON

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.text("SELECT message FROM logs"))]
        stored += [r[0] or "" for r in conn.execute(sa.text("SELECT error FROM task_runs"))]
        stored += [r[0] or "" for r in conn.execute(sa.text("SELECT error FROM executions"))]
    engine.dispose()
    api_text = MessageToJson(final) + "\n".join(messages)
    for value in SECRETS.values():
        for form in _forms(value):
            assert form not in api_text, f"secret form {form!r} leaked in an API response"
            assert not any(form in text for text in stored), f"secret form {form!r} stored unmasked"


def test_unknown_secret_fails_the_task_run_with_the_key(server):
    stubs = connect(server.address)
    try:
        stubs.deploy(
            "id: missing\nnamespace: tests.secrets\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n"
            "    message: \"{{ secret('NOPE') }}\"\n"
        )
        with worker_process(server.address):
            final = stubs.wait(stubs.start("tests.secrets", "missing").id, timeout=60)
    finally:
        stubs.close()
    assert state_name(final.state.current) == "FAILED"
    assert "Cannot find secret for key 'NOPE'." in final.task_runs[0].error
