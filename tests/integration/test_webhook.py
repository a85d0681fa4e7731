"""Webhook triggers over real HTTP (uvicorn on a free port inside the control plane)."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.integration.harness import ServerThread, worker_process
from tests.integration.harness import test_settings as settings_for
from worker_sdk.client import KestrelClient

HOOKED = """
id: hooked
namespace: tests.webhook
inputs:
  - id: who
    type: STRING
    defaults: nobody
tasks:
  - id: echo
    type: io.kestra.plugin.core.debug.Return
    format: "{{ trigger.body.name }}|{{ trigger.parameters.x[0] }}|{{ trigger.headers['x-token'][0] }}|{{ inputs.who }}"
outputs:
  - id: echoed
    type: STRING
    value: "{{ outputs.echo.value }}"
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: s3cr3t-key
    inputs:
      who: "{{ trigger.body.name }}"
  - id: waiting
    type: io.kestra.plugin.core.trigger.Webhook
    key: wait-key
    wait: true
    returnOutputs: true
"""


@pytest.fixture(scope="module")
def stack(database_url):
    srv = ServerThread(settings_for(database_url, http_port=0, webhook_max_body_bytes=4096)).start()
    with KestrelClient(srv.address, timeout=30) as client, worker_process(srv.address, concurrency=8):
        client.deploy_flow(HOOKED)
        yield srv, client, f"http://127.0.0.1:{srv.cp.http_port}/api/v1/executions/webhook"
    srv.stop()


def test_right_key_starts_the_flow_with_body_headers_and_parameters(stack):
    _, client, base = stack
    resp = httpx.post(f"{base}/tests.webhook/hooked/s3cr3t-key?x=1&x=2", json={"name": "Ada"},
                      headers={"X-Token": "t0"})
    assert resp.status_code == 200, resp.text
    execution = client.wait_execution(resp.json()["id"], timeout=60)
    assert execution.state.current.value == "SUCCESS"
    assert execution.task_runs[0].outputs["value"] == "Ada|1|t0|Ada"


def test_tenant_path_of_newer_kestra_works_too(stack):
    _, client, base = stack
    resp = httpx.post(base.replace("/api/v1/", "/api/v1/main/") + "/tests.webhook/hooked/s3cr3t-key?x=3",
                      json={"name": "T"}, headers={"X-Token": "m"})
    assert resp.status_code == 200, resp.text
    assert client.wait_execution(resp.json()["id"], timeout=60).task_runs[0].outputs["value"] == "T|3|m|T"


def test_wrong_key_and_unknown_flow_are_the_same_404(stack):
    _, _, base = stack
    wrong = httpx.post(f"{base}/tests.webhook/hooked/nope", json={})
    unknown = httpx.post(f"{base}/tests.webhook/missing/s3cr3t-key", json={})
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json() == {"message": "Not Found"}


def test_oversized_body_is_413(stack):
    _, _, base = stack
    resp = httpx.post(f"{base}/tests.webhook/hooked/s3cr3t-key", content=b"x" * 5000)
    assert resp.status_code == 413


def test_wait_returns_the_flow_outputs(stack):
    _, _, base = stack
    resp = httpx.put(f"{base}/tests.webhook/hooked/wait-key?x=9", json={"name": "W"}, headers={"X-Token": "w"},
                     timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "SUCCESS"
    assert resp.json()["outputs"] == {"echoed": "W|9|w|nobody"}


def test_concurrent_calls_each_start_one_execution(stack):
    _, client, base = stack
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: httpx.post(f"{base}/tests.webhook/hooked/s3cr3t-key?x={i}",
                                                     json={"name": f"n{i}"}, headers={"X-Token": "c"}, timeout=30),
                                range(16)))
    ids = [a.json()["id"] for a in answers]
    assert all(a.status_code == 200 for a in answers) and len(set(ids)) == 16
    values = sorted(client.wait_execution(i, timeout=60).task_runs[0].outputs["value"] for i in ids)
    assert values == sorted(f"n{i}|{i}|c|n{i}" for i in range(16))


def test_hostile_json_bodies_start_the_flow_instead_of_a_500(stack):
    _, _, base = stack
    for body in (b'{"name": "x\\u0000y"}', b'{"name": "\\ud800"}'):
        resp = httpx.post(f"{base}/tests.webhook/hooked/s3cr3t-key", content=body,
                          headers={"content-type": "application/json"})
        assert resp.status_code == 200, (body[:30], resp.status_code, resp.text[:200])
    # nested too deeply to be JSON: the body stays text, so `trigger.body.name` is missing: a 400
    deep = httpx.post(f"{base}/tests.webhook/hooked/s3cr3t-key", content=b"[" * 2000 + b"]" * 2000,
                      headers={"content-type": "application/json"})
    assert deep.status_code == 400 and "name" in deep.text
