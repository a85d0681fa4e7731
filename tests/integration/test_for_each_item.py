"""ForEachItem end to end through the gRPC API (typed client) with two real worker processes:
a file uploaded as a FILE input is split on a worker into batch files, one subflow execution
runs per batch (with and without ``wait``), a failing batch fails the ForEachItem with
``transmitFailed``, the outputs (``iterations``, the merged subflow outputs file) are read by a
later task, and user mistakes end with errors naming the task and the property."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.engine import for_each_item_runs
from tests.integration.harness import wait_until
from tests.integration.storage_support import by_task, storage_stack, wait_for_workers
from worker_sdk.client import KestrelClient
from worker_sdk.errors import RPCError

NS = "tests.foreachitem"


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("foreachitem")) as (server, client):
        wait_for_workers(client)
        for source in (CHILD, CHILD_SLOW, CHILD_LOG, CHILD_LONG):
            client.deploy_flow(source)
        yield server, client, tmp_path_factory.mktemp("files")


# A batch whose file holds the line "bad" fails; others return their content.
CHILD = f"""
id: child
namespace: {NS}
inputs:
  - id: items
    type: STRING
  - id: number
    type: INT
tasks:
  - id: check
    type: io.kestra.plugin.core.execution.Fail
    condition: "{{{{ read(inputs.items) contains 'bad' }}}}"
    errorMessage: bad batch {{{{ inputs.number }}}}
  - id: content
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ read(inputs.items) | trim }}}}"
outputs:
  - id: batch
    type: STRING
    value: "{{{{ inputs.number }}}}:{{{{ outputs.content.value }}}}"
"""

CHILD_SLOW = f"""
id: child-slow
namespace: {NS}
inputs:
  - id: items
    type: STRING
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT2S
  - id: content
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ read(inputs.items) | trim }}}}"
"""

CHILD_LOG = f"""
id: child-log
namespace: {NS}
inputs:
  - id: items
    type: STRING
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "{{{{ inputs.items }}}}"
"""

CHILD_LONG = f"""
id: child-long
namespace: {NS}
inputs:
  - id: items
    type: STRING
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT60S
"""


def _parent(flow_id: str, *, child: str = "child", rows: str = "3", wait: bool = True, transmit: bool = True,
            extra_inputs: str = "", items: str = "{{ inputs.file }}",
            after: str = "{{ outputs.each_items.iterations }}|{{ outputs.each_items.numberOfBatches }}") -> str:
    return f"""
id: {flow_id}
namespace: {NS}
inputs:
  - id: file
    type: FILE
{extra_inputs}
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEachItem
    items: "{items}"
    batch:
      rows: {rows}
    namespace: {NS}
    flowId: {child}
    wait: {str(wait).lower()}
    transmitFailed: {str(transmit).lower()}
    inputs:
      items: "{{{{ taskrun.items }}}}"
      {"number: '{{ taskrun.iteration }}'" if child == "child" else ""}
    errors:
      - id: on-error
        type: io.kestra.plugin.core.log.Log
        message: "batch failed"
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{after}"
"""


def _start(client: KestrelClient, tmp: Path, source: str, lines: list[str], inputs: dict | None = None):
    flow = client.deploy_flow(source).flow
    path = tmp / f"{flow.id}.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    uri = client.upload_input_file(flow.namespace, flow.id, "file", path).uri
    return client.start_execution(flow.namespace, flow.id, inputs={"file": uri, **(inputs or {})})


def _children(client: KestrelClient, flow_id: str, parent_id: str) -> list:
    found = [e for e in client.iter_executions(NS, flow_id)
             if e.labels.get("system.correlationId") == parent_id]
    return [client.get_execution(e.id) for e in found]


def _download(client: KestrelClient, uri: str, tmp: Path) -> str:
    dest = tmp / uri.rsplit("/", 1)[-1]
    client.download_file(uri, dest)
    return dest.read_text(encoding="utf-8")


def test_one_subflow_per_batch_waits_and_merges_outputs(stack):
    _, client, tmp = stack
    lines = [f"line-{i}" for i in range(10)]  # rows 3 -> 4 batches: 3, 3, 3, 1 lines
    started = _start(client, tmp, _parent("fei-wait"), lines)
    execution = client.wait_execution(started.id, timeout=120)
    runs = by_task(execution)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert [t.task_id for t in execution.task_runs] == ["each", "each_split", "each_items", "each_merge", "after"]
    items = runs["each_items"].outputs
    assert items == {"numberOfBatches": 4, "iterations": {"CREATED": 0, "RUNNING": 0, "SUCCESS": 4}}
    assert runs["after"].outputs["value"] == '{"CREATED":0,"RUNNING":0,"SUCCESS":4}|4'
    assert runs["each_split"].outputs["numberOfBatches"] == 4
    # The merged file: one JSON line per child's flow outputs, in batch order.
    merged = _download(client, runs["each_merge"].outputs["subflowOutputs"], tmp)
    assert [json.loads(line)["batch"] for line in merged.splitlines()] == [
        "1:line-0\nline-1\nline-2", "2:line-3\nline-4\nline-5", "3:line-6\nline-7\nline-8", "4:line-9"]
    # Each child got its own batch file (in the split task run's folder) and the correlation id.
    children = _children(client, "child", execution.id)
    assert len(children) == 4 and all(c.state.current.value == "SUCCESS" for c in children)
    batches = sorted(c.inputs["items"] for c in children)
    assert all(f"/executions/{execution.id}/tasks/each_split/" in uri for uri in batches)
    assert [_download(client, uri, tmp) for uri in batches] == [
        "line-0\nline-1\nline-2\n", "line-3\nline-4\nline-5\n", "line-6\nline-7\nline-8\n", "line-9\n"]


def test_without_wait_the_parent_ends_before_its_children(stack):
    _, client, tmp = stack
    started = _start(client, tmp, _parent("fei-nowait", child="child-slow", rows="2", wait=False),
                     [str(i) for i in range(6)])
    execution = client.wait_execution(started.id, timeout=120)
    runs = by_task(execution)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert runs["each_items"].outputs == {"numberOfBatches": 3, "iterations": {"RUNNING": 0, "SUCCESS": 3}}
    assert not runs["each_merge"].outputs  # nothing to merge without wait
    children = _children(client, "child-slow", execution.id)
    assert len(children) == 3
    assert any(not c.state.current.is_terminal for c in children)  # each sleeps 2 s; the parent did not wait
    wait_until(lambda: all(c.state.current.value == "SUCCESS" for c in _children(client, "child-slow", execution.id)),
               timeout=120, what="the children to finish")


def test_a_failing_batch_fails_the_for_each_item_with_transmit_failed(stack):
    _, client, tmp = stack
    lines = ["a", "b", "c", "bad", "e", "f", "g"]  # rows 3: batch 2 holds "bad"
    started = _start(client, tmp, _parent("fei-fail"), lines)
    execution = client.wait_execution(started.id, timeout=120)
    runs = by_task(execution)
    assert execution.state.current.value == "FAILED"
    assert runs["each_items"].state.current.value == "FAILED"
    assert runs["each_items"].outputs["iterations"] == {"CREATED": 0, "RUNNING": 0, "FAILED": 1, "SUCCESS": 2}
    assert runs["on-error"].state.current.value == "SUCCESS"  # the ForEachItem's own errors ran
    assert "each_merge" not in runs and "after" not in runs
    # Not transmitted: the same failure leaves the parent SUCCESS.
    started = _start(client, tmp, _parent("fei-fail-ignored", transmit=False), lines)
    execution = client.wait_execution(started.id, timeout=120)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert by_task(execution)["each_items"].outputs["iterations"]["FAILED"] == 1


def test_an_empty_file_starts_no_subflow(stack):
    _, client, tmp = stack
    started = _start(client, tmp, _parent("fei-empty", after="{{ outputs.each_items ?? 'no outputs' }}"), [])
    execution = client.wait_execution(started.id, timeout=120)
    runs = by_task(execution)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert not runs["each_items"].outputs  # Kestra's forEachItemEmptyItems: outputs null
    assert runs["after"].outputs["value"] == "no outputs"
    assert _children(client, "child", execution.id) == []


def test_mistakes_name_the_task_and_the_property(stack):
    _, client, tmp = stack
    # Caught at registration: a literal batch size of 0, items that cannot be a URI.
    with pytest.raises(RPCError) as refused:
        client.deploy_flow(_parent("fei-rows-zero", rows="0"))
    assert "task 'each'" in str(refused.value) and "batch.rows" in str(refused.value)
    with pytest.raises(RPCError) as refused:
        client.deploy_flow(_parent("fei-not-uri", items="data.csv"))
    assert "task 'each'" in str(refused.value) and "'items'" in str(refused.value)
    # Caught when rendered: a batch size from an input, items that are not a URI.
    rows_input = "  - id: rows\n    type: INT\n"
    started = _start(client, tmp, _parent("fei-rows-input", rows="'{{ inputs.rows }}'", extra_inputs=rows_input),
                     ["x"], {"rows": "0"})
    execution = client.wait_execution(started.id, timeout=120)
    assert execution.state.current.value == "FAILED"
    error = by_task(execution)["each"].error
    assert "task 'each'" in error and "'batch.rows'" in error and "0" in error
    text_input = "  - id: where\n    type: STRING\n"
    started = _start(client, tmp, _parent("fei-items-text", items="{{ inputs.where }}", extra_inputs=text_input),
                     ["x"], {"where": "/tmp/data.csv"})
    execution = client.wait_execution(started.id, timeout=120)
    error = by_task(execution)["each"].error
    assert execution.state.current.value == "FAILED"
    assert "task 'each'" in error and "'items'" in error and "kestra:///" in error and "/tmp/data.csv" in error
    # A subflow that does not exist fails the _items task run, naming it.
    started = _start(client, tmp, _parent("fei-no-child", child="no-such-child"), ["x"])
    execution = client.wait_execution(started.id, timeout=120)
    error = by_task(execution)["each_items"].error
    assert execution.state.current.value == "FAILED"
    assert "task 'each'" in error and "'flowId'" in error and f"{NS}.no-such-child" in error


def test_more_batches_than_one_executor_pass_starts(stack, monkeypatch):
    _, client, tmp = stack
    # The control plane runs in this process: 5 children per pass, so 12 batches take the first
    # advance and two executor sweeps (100 in production).
    monkeypatch.setattr(for_each_item_runs, "CHILDREN_PER_ADVANCE", 5)
    started = _start(client, tmp, _parent("fei-many", child="child-log", rows="1"), [str(i) for i in range(12)])
    execution = client.wait_execution(started.id, timeout=300)
    runs = by_task(execution)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert runs["each_items"].outputs == {"numberOfBatches": 12,
                                          "iterations": {"CREATED": 0, "RUNNING": 0, "SUCCESS": 12}}
    children = _children(client, "child-log", execution.id)
    assert sorted(c.inputs["items"].rsplit("/", 1)[-1] for c in children) == [f"{n:08d}.txt" for n in range(1, 13)]


def test_killing_the_parent_kills_its_children(stack):
    _, client, tmp = stack
    started = _start(client, tmp, _parent("fei-kill", child="child-long", rows="1"), ["a", "b", "c"])
    wait_until(lambda: sum(c.state.current.value == "RUNNING" for c in _children(client, "child-long", started.id)) == 3,
               timeout=120, what="3 running children")
    client.kill_execution(started.id)
    execution = client.wait_execution(started.id, timeout=120)
    assert execution.state.current.value == "KILLED"
    assert by_task(execution)["each_items"].state.current.value == "KILLED"
    wait_until(lambda: all(c.state.current.value == "KILLED" for c in _children(client, "child-long", started.id)),
               timeout=120, what="the children to be killed")
