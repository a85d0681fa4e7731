"""Internal storage on the S3 backend, against a local S3-compatible server (moto's server
mode, from PyPI): multipart uploads of a multi-part file, files passed between tasks, read(),
deletion; the same gRPC API and worker as the local-disk backend."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.integration.harness import ServerThread
from tests.integration.harness import test_settings as settings_for_test
from tests.integration.storage_support import by_task, wait_for_workers
from worker_sdk.client import KestrelClient

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

FLOW = """
id: s3-flow
namespace: tests.s3
inputs:
  - {id: f, type: FILE}
tasks:
  - id: copy
    type: io.kestra.plugin.scripts.shell.Commands
    inputFiles: {in.bin: "{{ inputs.f }}"}
    outputFiles: [out.bin, note.txt]
    commands: ["cp in.bin out.bin", "echo hello s3 > note.txt"]
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ read(outputs.copy.outputFiles['note.txt']) }}"
  - id: delete
    type: io.kestra.plugin.core.storage.Delete
    uri: "{{ outputs.copy.outputFiles['note.txt'] }}"
"""


@pytest.fixture(scope="module")
def s3_stack(database_url, tmp_path_factory):
    import subprocess
    import sys

    from tests.integration.harness import REPO

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    s3.start()
    host, port = s3.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="kestrel-test")
    server = ServerThread(settings_for_test(database_url, storage_backend="s3", s3_bucket="kestrel-test",
                                        s3_prefix="internal/", s3_endpoint_url=endpoint,
                                        data_dir=tmp_path_factory.mktemp("unused"))).start()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    worker = subprocess.Popen([sys.executable, "-m", "worker_sdk", "--server", server.address, "--concurrency", "2"],
                              env=env, cwd=tmp_path_factory.mktemp("worker"))
    kestrel = KestrelClient(server.address, timeout=30)
    try:
        wait_for_workers(kestrel, count=1)
        yield kestrel, client
    finally:
        kestrel.close()
        worker.terminate()
        worker.wait(15)
        server.stop()
        s3.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _keys(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="kestrel-test").get("Contents", []))


def test_files_go_through_s3(s3_stack, tmp_path):
    client, s3 = s3_stack
    client.deploy_flow(FLOW)
    data = tmp_path / "big.bin"
    data.write_bytes(os.urandom(20 * 1024 * 1024 + 123))  # 3 multipart parts of 8 MiB
    uploaded = client.upload_input_file("tests.s3", "s3-flow", "f", data)
    key = "internal/" + uploaded.uri.removeprefix("kestra:///")
    assert key in _keys(s3)
    assert s3.head_object(Bucket="kestrel-test", Key=key)["ContentLength"] == data.stat().st_size
    execution = client.wait_execution(client.start_execution("tests.s3", "s3-flow", inputs={"f": uploaded.uri}).id,
                                      timeout=120)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    assert tasks["read"].outputs["value"] == "hello s3\n"
    assert tasks["delete"].outputs["deleted"] is True
    out_uri = tasks["copy"].outputs["outputFiles"]["out.bin"]
    back = tmp_path / "back.bin"
    info = client.download_file(out_uri, back)
    assert info.sha256 == hashlib.sha256(data.read_bytes()).hexdigest() == hashlib.sha256(back.read_bytes()).hexdigest()
    note_key = "internal/" + tasks["copy"].outputs["outputFiles"]["note.txt"].removeprefix("kestra:///")
    assert note_key not in _keys(s3) and "internal/" + out_uri.removeprefix("kestra:///") in _keys(s3)
    assert s3.list_multipart_uploads(Bucket="kestrel-test").get("Uploads", []) == []


