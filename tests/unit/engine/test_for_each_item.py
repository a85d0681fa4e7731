"""ForEachItem's pure parts: the parser's expansion, registration checks, batch parsing, the
iterations output and final state, and the worker's record splitter."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.engine.flowables.for_each_item import items_final_state, iterations, parse_batch
from controlplane.engine.plan import FlowableError
from controlplane.errors import FlowValidationError
from controlplane.flows import check_task_types, parse_flow
from controlplane.flows.for_each_item import ITEMS_TYPE, MERGE_TYPE, SPLIT_TYPE
from controlplane.model import State
from worker_sdk.tasks.for_each_item import records

FLOW = """
id: parent
namespace: t
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEachItem
    items: "{{ inputs.file }}"
    batch: {rows: 4}
    namespace: t
    flowId: child
    inputs:
      items: "{{ taskrun.items }}"
"""


def test_the_parser_expands_the_three_hidden_tasks() -> None:
    each = parse_flow(FLOW).tasks[0]
    assert [(t.id, t.type) for t in each.tasks] == [
        ("each_split", SPLIT_TYPE), ("each_items", ITEMS_TYPE), ("each_merge", MERGE_TYPE)]
    assert each.tasks[0].properties == {"items": "{{ inputs.file }}", "batch": {"rows": 4}}
    assert each.tasks[1].properties["inputs"] == {"items": "{{ taskrun.items }}"}
    assert check_task_types(parse_flow(FLOW)) == []


def test_a_task_id_that_a_hidden_task_takes_is_refused() -> None:
    with pytest.raises(FlowValidationError, match="duplicate task id 'each_items'"):
        parse_flow(FLOW + "  - id: each_items\n    type: io.kestra.plugin.core.log.Log\n    message: x\n")


@pytest.mark.parametrize(("batch", "error"), [
    ("{rows: 0}", "'batch.rows' must be an integer >= 1"),
    ("{rows: 2, bytes: 10}", "only one of rows, bytes, partitions"),
    ("{lines: 2}", "'batch.lines' is unknown"),
    ("{bytes: lots}", "'batch.bytes' must be a size"),
])
def test_literal_batch_mistakes_are_refused_at_registration(batch: str, error: str) -> None:
    issues = check_task_types(parse_flow(FLOW.replace("{rows: 4}", batch)))
    assert any(error in i.message and "task 'each'" in i.message for i in issues), issues


def test_parse_batch() -> None:
    assert parse_batch(None, "t") == {"rows": 1, "separator": "\n"}
    assert parse_batch({"rows": "3"}, "t") == {"rows": 3, "separator": "\n"}
    assert parse_batch({"bytes": "10MB", "separator": ";"}, "t") == {"bytes": 10 * 1024**2, "separator": ";"}
    assert parse_batch({"partitions": 2}, "t") == {"partitions": 2, "separator": "\n"}
    with pytest.raises(FlowableError, match="'batch.separator' must not be empty"):
        parse_batch({"rows": 1, "separator": ""}, "t")


def test_iterations_and_final_state() -> None:
    counts = {"SUCCESS": 2, "RUNNING": 1, "CREATED": 1, "FAILED": 1}
    assert iterations(counts, 7, True) == {"CREATED": 3, "RUNNING": 1, "FAILED": 1, "SUCCESS": 2}
    assert iterations(counts, 7, False) == {"RUNNING": 0, "SUCCESS": 7}
    assert items_final_state({"SUCCESS": 2, "FAILED": 1}, True) is State.FAILED
    assert items_final_state({"SUCCESS": 2, "FAILED": 1}, False) is State.SUCCESS
    assert items_final_state({"SUCCESS": 2, "WARNING": 1}, True) is State.WARNING
    assert items_final_state({"SUCCESS": 2}, True) is State.SUCCESS


def test_records_stream_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "f"
    lines = [("x" * 700_000 + str(i)).encode() for i in range(4)]  # longer than half a 1 MiB chunk
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert list(records(path, b"\n")) == lines
    path.write_bytes(b"a;;b;c")  # no trailing separator; an empty record is kept
    assert list(records(path, b";")) == [b"a", b"", b"b", b"c"]
