"""Task ``logToFile: true`` (Kestra's LogToFileTest): each ended attempt's log lines are also a
file in internal storage, its URI on the attempt (``TaskRunAttempt.log_file``), downloadable."""

from __future__ import annotations

import time

from kestrel.v1 import storage_pb2, storage_pb2_grpc
from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

FLOW = """
id: log-to-file
namespace: tests.logtofile
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: Hello World!
    logToFile: true
  - id: quiet
    type: io.kestra.plugin.core.log.Log
    message: not in a file
"""


def _download(channel, uri: str) -> bytes:
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    data = b""
    for part in stub.DownloadFile(storage_pb2.DownloadFileRequest(uri=uri), timeout=10):
        if part.WhichOneof("part") == "chunk":
            data += part.chunk
    return data


def test_log_to_file_stores_the_attempts_lines_as_a_file(server):
    stubs = connect(server.address)
    try:
        stubs.deploy(FLOW)
        with worker_process(server.address):
            final = stubs.wait(stubs.start("tests.logtofile", "log-to-file").id, timeout=60)
        assert state_name(final.state.current) == "SUCCESS"
        deadline = time.monotonic() + 20  # the file is written just after the result commits
        runs = {tr.task_id: tr for tr in final.task_runs}
        while not runs["hello"].attempts[0].log_file and time.monotonic() < deadline:
            time.sleep(0.1)
            runs = {tr.task_id: tr for tr in stubs.get(final.id).task_runs}
        uri = runs["hello"].attempts[0].log_file
        assert uri.startswith("kestra:///tests/logtofile/log-to-file/executions/")
        assert uri.endswith(f"/tasks/hello/{runs['hello'].id}/attempt-1.log")
        lines = _download(stubs.channel, uri).decode().splitlines()
        assert len(lines) == 1 and " INFO Hello World!" in lines[0]
        assert runs["quiet"].attempts[0].log_file == ""
    finally:
        stubs.close()
