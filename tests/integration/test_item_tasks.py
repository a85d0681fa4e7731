"""FilterItems and DeduplicateItems end to end through the gRPC API with real worker processes:
the worker streams a JSON-lines file and the control plane renders the per-item expression
(WorkerService.RenderItems) with the item's fields and the execution's variables."""

from __future__ import annotations

import json

import pytest

from tests.integration.storage_support import by_task, storage_stack, wait_for_workers

NS = "tests.items"
ITEMS = [
    {"id": 1, "name": "ada", "age": 36},
    {"id": 2, "name": "bob", "age": 17},
    {"id": 1, "name": "ada v2", "age": 37},
    {"id": 3, "name": "cyd", "age": None},
    {"id": 2, "name": "bob v2", "age": 18},
]


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("items")) as (server, client):
        wait_for_workers(client)
        yield client, tmp_path_factory.mktemp("files")


def _flow(flow_id: str, task: str) -> str:
    return f"""
id: {flow_id}
namespace: {NS}
inputs:
  - id: file
    type: FILE
  - id: minimum
    type: INT
    defaults: 18
tasks:
{task}
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ read(outputs.t.uri) }}}}"
"""


def _run(stack, flow_id: str, task: str, items=ITEMS):
    client, tmp = stack
    flow = client.deploy_flow(_flow(flow_id, task)).flow
    path = tmp / f"{flow_id}.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    uri = client.upload_input_file(NS, flow.id, "file", path).uri
    execution = client.start_execution(NS, flow.id, inputs={"file": uri})
    return client.wait_execution(execution.id, timeout=120)


def _kept(execution) -> list[dict]:
    return [json.loads(line) for line in by_task(execution)["read"].outputs["value"].splitlines()]


FILTER = """  - id: t
    type: io.kestra.plugin.core.storage.FilterItems
    from: "{{ inputs.file }}"
    filterCondition: "{{ age >= inputs.minimum }}"
"""


def test_filter_items_include_exclude_and_null_behaviour(stack):
    # The condition reads an item field and an input; a null age compares false.
    execution = _run(stack, "filter-include", FILTER)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert [i["name"] for i in _kept(execution)] == ["ada", "ada v2", "bob v2"]
    outputs = by_task(execution)["t"].outputs
    assert (outputs["processedItemsTotal"], outputs["droppedItemsTotal"]) == (5, 2)
    execution = _run(stack, "filter-exclude", FILTER + "    filterType: EXCLUDE\n")
    assert [i["name"] for i in _kept(execution)] == ["bob", "cyd"]
    # A condition that renders null: FAIL (default) names the property and the item's line,
    # EXCLUDE drops the item, INCLUDE keeps it.
    by_age = FILTER.replace("{{ age >= inputs.minimum }}", "{{ age }}")
    failed = _run(stack, "filter-fail", by_age)
    assert failed.state.current.value == "FAILED"
    error = by_task(failed)["t"].error
    assert "filterCondition" in error and "line 4" in error and "null" in error
    execution = _run(stack, "filter-null-exclude", by_age + "    errorOrNullBehavior: EXCLUDE\n")
    assert [i["name"] for i in _kept(execution)] == ["ada", "bob", "ada v2", "bob v2"]
    execution = _run(stack, "filter-null-include", by_age + "    errorOrNullBehavior: INCLUDE\n")
    assert len(_kept(execution)) == 5
    # A field no item has is an error for every item.
    failed = _run(stack, "filter-unknown", FILTER.replace("age >=", "agee >="))
    assert failed.state.current.value == "FAILED"
    assert "line 1" in by_task(failed)["t"].error and "agee" in by_task(failed)["t"].error


def test_deduplicate_items_keeps_the_last_item_of_each_key(stack):
    task = """  - id: t
    type: io.kestra.plugin.core.storage.DeduplicateItems
    from: "{{ inputs.file }}"
    expr: "{{ id }}"
"""
    execution = _run(stack, "dedup", task)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert [i["name"] for i in _kept(execution)] == ["ada v2", "cyd", "bob v2"]
    outputs = by_task(execution)["t"].outputs
    assert (outputs["processedItemsTotal"], outputs["droppedItemsTotal"], outputs["numKeys"]) == (5, 2, 3)
    # More items than one RenderItems batch: 1200 items on 7 keys.
    many = [{"id": n % 7, "n": n} for n in range(1200)]
    execution = _run(stack, "dedup-many", task.replace("{{ id }}", "{{ id }}-{{ flow.id }}"), many)
    assert execution.state.current.value == "SUCCESS", [(t.task_id, t.error) for t in execution.task_runs]
    assert [i["n"] for i in _kept(execution)] == list(range(1193, 1200))


def test_item_tasks_refuse_bad_properties_at_registration(stack):
    client, _ = stack
    with pytest.raises(Exception) as refused:
        client.deploy_flow(_flow("filter-bad", FILTER + "    filterType: SOMETIMES\n"))
    assert "task 't'" in str(refused.value) and "filterType" in str(refused.value)


def test_an_item_nested_too_deeply_fails_the_task_naming_the_item(stack):
    client, tmp = stack
    flow = client.deploy_flow(_flow("deep-item", """
  - id: t
    type: io.kestra.plugin.core.storage.FilterItems
    from: "{{ inputs.file }}"
    filterCondition: "{{ age >= inputs.minimum }}"
""")).flow
    path = tmp / "deep.jsonl"
    path.write_text(json.dumps({"age": 40}) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    uri = client.upload_input_file(NS, flow.id, "file", path).uri
    final = client.wait_execution(client.start_execution(NS, flow.id, inputs={"file": uri}).id, timeout=120)
    assert final.state.current.value == "FAILED"
    assert "item at line 2: the item is nested too deeply" in by_task(final)["t"].error
