"""http.Request and http.Download on a real worker against a local HTTP server (loopback):
methods, headers, JSON and form bodies, status handling, and a download streamed into internal
storage and read by a later task."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.storage_support import by_task, run, storage_stack, wait_for_workers

BIG = bytes(range(256)) * 12_000  # ~3 MB


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json", extra: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/json":
            self._send(200, json.dumps({"hello": "world", "ua": self.headers.get("X-Test")}).encode(),
                       extra={"X-Reply": "yes"})
        elif self.path == "/big.bin":
            self._send(200, BIG, "application/octet-stream")
        elif self.path == "/empty":
            self._send(200, b"", "text/plain")
        elif self.path.startswith("/status/"):
            self._send(int(self.path.rsplit("/", 1)[1]), b"status")
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(201, json.dumps({"got": body.decode(), "type": self.headers.get("Content-Type")}).encode())


@pytest.fixture(scope="module")
def web():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("http"), workers=1) as (server, client):
        wait_for_workers(client, count=1)
        yield server, client


def test_requests_and_a_download(stack, web):
    _, client = stack
    execution = run(client, f"""
id: http
namespace: tests.http
tasks:
  - id: get
    type: io.kestra.plugin.core.http.Request
    uri: {web}/json
    headers: {{X-Test: kestrel}}
  - id: post
    type: io.kestra.plugin.fs.http.Request
    uri: {web}/echo
    method: POST
    body: {{a: 1}}
  - id: form
    type: io.kestra.plugin.core.http.Request
    uri: {web}/echo
    method: POST
    formData: {{x: "1", y: two}}
  - id: allowed
    type: io.kestra.plugin.core.http.Request
    uri: {web}/status/404
    options: {{allowFailed: true}}
  - id: download
    type: io.kestra.plugin.core.http.Download
    uri: {web}/big.bin
  - id: size
    type: io.kestra.plugin.core.storage.Size
    from: "{{{{ outputs.download.uri }}}}"
  - id: use
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ fromJson(outputs.get.body).hello }}}} {{{{ fromJson(outputs.get.body).ua }}}} {{{{ outputs.get.headers['x-reply'][0] }}}}"
""")
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    assert tasks["get"].outputs["code"] == 200
    assert tasks["use"].outputs["value"] == "world kestrel yes"
    assert json.loads(tasks["post"].outputs["body"]) == {"got": '{"a": 1}', "type": "application/json"}
    assert json.loads(tasks["form"].outputs["body"])["got"] == "x=1&y=two"
    assert tasks["allowed"].outputs["code"] == 404
    assert tasks["download"].outputs["length"] == len(BIG)
    assert tasks["download"].outputs["uri"].endswith("/big.bin")
    assert tasks["size"].outputs["size"] == len(BIG)
    info = client.file_info(tasks["download"].outputs["uri"])
    assert info.sha256 == hashlib.sha256(BIG).hexdigest()


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("{id: t, type: io.kestra.plugin.core.http.Request, uri: 'WEB/status/500'}",
         "Failed http request with response code '500'"),
        ("{id: t, type: io.kestra.plugin.core.http.Request, uri: 'WEB/json', options: {allowedResponseCodes: [201]}}",
         "Failed http request with response code '200'"),
        ("{id: t, type: io.kestra.plugin.core.http.Download, uri: 'WEB/empty'}", "empty body"),
        ("{id: t, type: io.kestra.plugin.core.http.Request, uri: 'ftp://example.invalid/x'}", "must be an http(s) URL"),
    ],
)
def test_failures(stack, web, task, expected):
    _, client = stack
    execution = run(client, "id: httpfail\nnamespace: tests.http\ntasks:\n  - " + task.replace("WEB", web) + "\n")
    assert execution.state.current.value == "FAILED"
    assert expected in (by_task(execution)["t"].error or "")
