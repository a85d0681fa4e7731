"""Internal storage end to end: FILE inputs, files passed between tasks on two worker processes
that share no directory, read(), storage tasks, log.Fetch and namespace isolation; through the
gRPC API (typed client) with real workers."""

from __future__ import annotations

import hashlib

import pytest

from tests.integration.storage_support import by_task, run, storage_stack, wait_for_workers
from worker_sdk.errors import InvalidArgumentError, NotFoundError


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("storage"),
                       extra=("--module", "tests.integration.storage_custom_tasks")) as (server, client):
        wait_for_workers(client)
        yield server, client


def _state(execution) -> str:
    return execution.state.current.value


PASS_FILE = """
id: pass-file
namespace: tests.storage
tasks:
  - id: produce
    type: io.kestra.plugin.scripts.python.Script
    outputFiles: ["data.csv"]
    script: |
      import os
      with open("data.csv", "w") as f:
          f.write("a,b\\n1,2\\n")
      with open(os.path.join("{{ outputDir }}", "extra.txt"), "w") as f:
          f.write("from outputDir")
      print('::{"outputs": {"host": "%s"}}::' % os.getcwd())
  - id: consume
    type: io.kestra.plugin.scripts.shell.Commands
    workerGroup: {key: g1}
    inputFiles:
      in.csv: "{{ outputs.produce.outputFiles['data.csv'] }}"
    commands:
      - 'echo "::{\\"outputs\\": {\\"lines\\": $(wc -l < in.csv), \\"cwd\\": \\"$(pwd)\\"}}::"'
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ read(outputs.produce.outputFiles['data.csv']) }}|{{ read(outputs.produce.outputFiles['extra.txt']) }}"
"""


def test_a_file_written_on_one_worker_is_read_on_another(stack):
    server, client = stack
    execution = run(client, PASS_FILE)
    assert _state(execution) == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    files = tasks["produce"].outputs["outputFiles"]
    assert set(files) == {"data.csv", "extra.txt"}
    assert files["data.csv"] == (
        f"kestra:///tests/storage/pass-file/executions/{execution.id}/tasks/produce/{tasks['produce'].id}/data.csv"
    )
    assert tasks["consume"].outputs["vars"]["lines"] == 2
    # Two workers, two separate working directories: nothing was shared on disk.
    produced_in = tasks["produce"].outputs["vars"]["host"]
    consumed_in = tasks["consume"].outputs["vars"]["cwd"]
    assert "/worker-0/" in produced_in and "/worker-1/" in consumed_in
    assert tasks["read"].outputs["value"] == "a,b\n1,2\n|from outputDir"
    listed = client.list_execution_files(execution.id)
    assert sorted(f.uri.rsplit("/", 1)[-1] for f in listed) == ["data.csv", "extra.txt"]
    info = client.file_info(files["data.csv"])
    assert info.size == 8 and info.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()


FILE_INPUT = """
id: file-input
namespace: tests.storage
inputs:
  - id: f
    type: FILE
tasks:
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.f }}={{ read(inputs.f) }}"
  - id: size
    type: io.kestra.plugin.core.storage.Size
    from: "{{ inputs.f }}"
"""


def test_file_input_upload_then_download(stack, tmp_path):
    server, client = stack
    client.deploy_flow(FILE_INPUT)
    local = tmp_path / "hello.txt"
    local.write_text("hello file\n")
    uploaded = client.upload_input_file("tests.storage", "file-input", "f", local)
    assert uploaded.uri.startswith("kestra:///tests/storage/file-input/executions/")
    assert uploaded.uri.endswith("/inputs/f/hello.txt")
    assert uploaded.size == 11 and uploaded.sha256 == hashlib.sha256(b"hello file\n").hexdigest()
    execution = client.wait_execution(
        client.start_execution("tests.storage", "file-input", inputs={"f": uploaded.uri}).id, timeout=60)
    assert _state(execution) == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert by_task(execution)["show"].outputs["value"] == f"{uploaded.uri}=hello file\n"
    assert by_task(execution)["size"].outputs["size"] == 11
    target = tmp_path / "back.txt"
    client.download_file(uploaded.uri, target)
    assert target.read_text() == "hello file\n"
    with pytest.raises(NotFoundError):
        client.download_file(uploaded.uri + "-missing", tmp_path / "x")
    with pytest.raises(InvalidArgumentError, match="no FILE input"):
        client.upload_input_file("tests.storage", "file-input", "nope", local)


def test_a_file_input_must_belong_to_the_namespace(stack):
    server, client = stack
    client.deploy_flow(FILE_INPUT)
    with pytest.raises(InvalidArgumentError, match="must be one of namespace tests.storage"):
        client.start_execution("tests.storage", "file-input",
                               inputs={"f": "kestra:///other/ns/flow/executions/x/inputs/f/a.txt"})


PRODUCER = """
id: secret-producer
namespace: tenant.alpha
tasks:
  - id: write
    type: io.kestra.plugin.scripts.shell.Commands
    outputFiles: ["secret.txt"]
    commands: ["echo top-secret > secret.txt"]
"""

THIEF = """
id: thief
namespace: tenant.beta
inputs:
  - {id: uri, type: STRING}
tasks:
  - id: steal
    type: {type}
    {prop}: "{value}"
"""


@pytest.mark.parametrize(
    ("task_type", "prop", "value"),
    [
        ("io.kestra.plugin.core.debug.Return", "format", "{{ read(inputs.uri) }}"),
        ("io.kestra.plugin.core.storage.Size", "from", "{{ inputs.uri }}"),
        ("io.kestra.plugin.core.storage.Delete", "uri", "{{ inputs.uri }}"),
    ],
)
def test_another_namespace_cannot_reach_a_file_by_uri(stack, tmp_path, task_type, prop, value):
    server, client = stack
    produced = run(client, PRODUCER)
    assert _state(produced) == "SUCCESS"
    uri = by_task(produced)["write"].outputs["outputFiles"]["secret.txt"]
    source = THIEF.replace("{type}", task_type).replace("{prop}", prop).replace("{value}", value)
    stolen = run(client, source, inputs={"uri": uri})
    assert _state(stolen) == "FAILED"
    error = by_task(stolen)["steal"].error or ""
    assert "tenant.alpha" in error and ("may not read" in error or "access refused" in error), error
    client.download_file(uri, tmp_path / "still-there.txt")  # the file was neither read nor deleted
    assert (tmp_path / "still-there.txt").read_text() == "top-secret\n"


STORAGE_TASKS = """
id: storage-tasks
namespace: tests.storage
tasks:
  - id: make
    type: io.kestra.plugin.scripts.shell.Commands
    outputFiles: ["*.txt"]
    commands:
      - printf 'l1\\nl2\\nl3\\n' > a.txt
      - printf 'l4\\nl5\\n' > b.txt
  - id: concat
    type: io.kestra.plugin.core.storage.Concat
    files:
      - "{{ outputs.make.outputFiles['a.txt'] }}"
      - "{{ outputs.make.outputFiles['b.txt'] }}"
  - id: split
    type: io.kestra.plugin.core.storage.Split
    from: "{{ outputs.concat.uri }}"
    lines: 2
  - id: reverse
    type: io.kestra.plugin.core.storage.Reverse
    from: "{{ outputs.concat.uri }}"
  - id: size
    type: io.kestra.plugin.core.storage.Size
    from: "{{ outputs.concat.uri }}"
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ read(outputs.split.uris[2]) }}|{{ read(outputs.reverse.uri) }}"
  - id: delete
    type: io.kestra.plugin.core.storage.Delete
    uri: "{{ outputs.make.outputFiles['a.txt'] }}"
  - id: fetch
    type: io.kestra.plugin.core.log.Fetch
    tasksId: [make]
    level: INFO
  - id: purge
    type: io.kestra.plugin.core.storage.PurgeCurrentExecutionFiles
"""


def test_storage_tasks_and_log_fetch(stack):
    server, client = stack
    execution = run(client, STORAGE_TASKS)
    assert _state(execution) == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    assert len(tasks["split"].outputs["uris"]) == 3
    assert tasks["size"].outputs["size"] == 15
    assert tasks["show"].outputs["value"] == "l5\n|l5\nl4\nl3\nl2\nl1\n"
    assert tasks["delete"].outputs["deleted"] is True
    assert tasks["fetch"].outputs["size"] == 0  # `make` logs nothing at INFO (printf writes files)
    purged = tasks["purge"].outputs["uris"]
    assert tasks["concat"].outputs["uri"] in purged and tasks["fetch"].outputs["uri"] in purged
    assert client.list_execution_files(execution.id) == []


def test_log_fetch_counts_lines_of_the_execution(stack):
    server, client = stack
    source = """
id: fetch-logs
namespace: tests.storage
tasks:
  - {id: one, type: io.kestra.plugin.core.log.Log, message: first}
  - {id: two, type: io.kestra.plugin.core.log.Log, message: second}
  - {id: all, type: io.kestra.plugin.core.log.Fetch}
  - {id: only-one, type: io.kestra.plugin.core.log.Fetch, tasksId: [one]}
"""
    execution = run(client, source)
    assert _state(execution) == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    assert tasks["only-one"].outputs["size"] == 1
    assert tasks["all"].outputs["size"] >= 2


def test_log_fetch_reads_another_execution_of_its_namespace_only(stack):
    """Without authentication the server applies Kestra's Fetch rule on the task token: another
    execution of the same namespace is readable, one of another namespace is refused."""
    server, client = stack
    source = """
id: fetch-{name}
namespace: {ns}
inputs:
  - {{id: other, type: STRING}}
tasks:
  - {{id: fetch, type: io.kestra.plugin.core.log.Fetch, executionId: "{{{{ inputs.other }}}}"}}
"""
    logged = run(client, "id: logs-once\nnamespace: tests.storage\ntasks:\n"
                         "  - {id: say, type: io.kestra.plugin.core.log.Log, message: said}\n")
    same = run(client, source.format(name="same", ns="tests.storage"), inputs={"other": logged.id})
    assert _state(same) == "SUCCESS", [(t.task_id, t.error) for t in same.task_runs]
    assert by_task(same)["fetch"].outputs["size"] == 1
    elsewhere = run(client, source.format(name="elsewhere", ns="tests.elsewhere"), inputs={"other": logged.id})
    assert _state(elsewhere) == "FAILED"
    error = by_task(elsewhere)["fetch"].error
    assert "namespace 'tests.storage'" in error and "task 'fetch' of flow tests.elsewhere.fetch-elsewhere" in error, error

def test_sdk_file_and_kv_api_from_custom_tasks(stack):
    server, client = stack
    execution = run(client, """
id: sdk-api
namespace: tests.storage
tasks:
  - {id: write, type: io.kestrel.tests.WriteFile, content: "from a thread", name: note.txt}
  - {id: read, type: io.kestrel.tests.ReadFile, uri: "{{ outputs.write.uri }}"}
""")
    assert _state(execution) == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    tasks = by_task(execution)
    assert tasks["write"].outputs["uri"].endswith(f"/tasks/write/{tasks['write'].id}/note.txt")
    assert tasks["read"].outputs["text"] == "from a thread"
    assert tasks["read"].outputs["kv"] == "from a thread"
    assert client.kv_get("tests.storage", "last").value == "from a thread"


def _upload(stub, messages):
    return stub.UploadFile(iter(messages), timeout=30)


def test_upload_protocol_errors_store_nothing(stack, tmp_path):
    import grpc

    from kestrel.v1 import storage_pb2, storage_pb2_grpc

    server, client = stack
    client.deploy_flow(FILE_INPUT)
    root = server.settings.data_dir
    before = sorted(p for p in root.rglob("*") if p.is_file())
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 8 << 20)])
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    header = storage_pb2.UploadFileHeader(namespace="tests.storage", flow_id="file-input", input_id="f",
                                          file_name="x.bin")
    cases = [
        ([storage_pb2.UploadFileRequest(chunk=b"no header")], "header"),
        ([storage_pb2.UploadFileRequest(header=header), storage_pb2.UploadFileRequest(chunk=b"x" * (1 << 20 + 1))],
         "at most 1048576 bytes"),
        ([storage_pb2.UploadFileRequest(header=storage_pb2.UploadFileHeader(
            namespace="tests.storage", flow_id="file-input", input_id="f", file_name="x.bin",
            expected_sha256="0" * 64)), storage_pb2.UploadFileRequest(chunk=b"data")], "nothing was stored"),
        ([storage_pb2.UploadFileRequest(header=storage_pb2.UploadFileHeader(task_token="forged.token",
                                                                            file_name="x.bin"))],
         "invalid task token"),
        ([storage_pb2.UploadFileRequest(header=storage_pb2.UploadFileHeader(
            namespace="tests.storage", flow_id="file-input", input_id="f", file_name="../escape"))],
         "not a valid file name"),
    ]
    for messages, fragment in cases:
        with pytest.raises(grpc.RpcError) as info:
            _upload(stub, messages)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert fragment in info.value.details()

    def interrupted():
        yield storage_pb2.UploadFileRequest(header=header)
        yield storage_pb2.UploadFileRequest(chunk=b"partial")
        raise RuntimeError("client crashed mid-upload")

    with pytest.raises(grpc.RpcError):
        stub.UploadFile(interrupted(), timeout=30)
    channel.close()
    import time

    time.sleep(0.5)
    after = sorted(p for p in root.rglob("*") if p.is_file())
    assert after == before  # no file and no staging leftovers


def test_task_token_reach_over_raw_grpc(stack, tmp_path):
    """A hand-driven worker: its token writes into its task run's folder, is refused another
    namespace's file (PERMISSION_DENIED), and once the attempt is over it can no longer write
    files or KV (NOT_FOUND) while reads still work."""
    import grpc

    from kestrel.v1 import kv_pb2, kv_pb2_grpc, storage_pb2, storage_pb2_grpc, worker_pb2
    from tests.integration.rpc import connect

    server, client = stack
    produced = run(client, PRODUCER)
    foreign = by_task(produced)["write"].outputs["outputFiles"]["secret.txt"]
    stubs = connect(server.address)
    storage = storage_pb2_grpc.StorageServiceStub(stubs.channel)
    kv = kv_pb2_grpc.KVServiceStub(stubs.channel)
    worker_id = stubs.register_worker(["io.kestrel.tests.HandDriven"], worker_group="hand")
    stubs.deploy("id: hand\nnamespace: tests.hand\ntasks:\n"
                 "  - {id: h, type: io.kestrel.tests.HandDriven, workerGroup: {key: hand}}\n")
    execution = stubs.start("tests.hand", "hand")
    assignment = stubs.poll(worker_id, wait=10)[0]
    token = assignment.task_token

    def upload(name: str, data: bytes):
        return storage.UploadFile(iter([
            storage_pb2.UploadFileRequest(header=storage_pb2.UploadFileHeader(task_token=token, file_name=name)),
            storage_pb2.UploadFileRequest(chunk=data)]), timeout=10)

    stored = upload("a.txt", b"abc").file
    assert stored.uri == (f"kestra:///tests/hand/hand/executions/{execution.id}/tasks/h/"
                          f"{assignment.task_run_id}/a.txt")
    assert (stored.size, stored.execution_id, stored.task_run_id) == (3, execution.id, assignment.task_run_id)
    with pytest.raises(grpc.RpcError) as denied:
        list(storage.DownloadFile(storage_pb2.DownloadFileRequest(uri=foreign, task_token=token), timeout=10))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as denied:
        storage.DeleteFile(storage_pb2.DeleteFileRequest(uri=foreign, task_token=token), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    kv.SetKV(kv_pb2.SetKVRequest(key="k", value_json='"v"', overwrite=True, task_token=token), timeout=10)

    stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=token, outputs_json="{}"), timeout=10)
    assert stubs.wait(execution.id).state.current  # finished
    with pytest.raises(grpc.RpcError) as stale:
        upload("late.txt", b"late")
    assert stale.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as stale:
        kv.SetKV(kv_pb2.SetKVRequest(key="k", value_json='"late"', overwrite=True, task_token=token), timeout=10)
    assert stale.value.code() == grpc.StatusCode.NOT_FOUND
    chunks = list(storage.DownloadFile(storage_pb2.DownloadFileRequest(uri=stored.uri, task_token=token), timeout=10))
    assert b"".join(c.chunk for c in chunks[1:]) == b"abc"
    assert client.kv_get("tests.hand", "k").value == "v"
    stubs.close()
