"""The Kestra conformance corpus through parse_flow.

Reads the corpus from ``$KESTREL_CONFORMANCE_DIR`` (default ``<repo>/../shared/conformance/kestra``);
the corpus is never copied into the repository. Without it these tests are skipped.

- Every flow of ``flows/`` (Kestra's valid test flows) must parse; exceptions would be listed in
  ``VALID_EXCEPTIONS`` with the reason (there are none).
- ``extra/invalids/`` flows that Kestra refuses for parse-level rules must be refused, with the
  reason named; the ones that need a later feature are listed in ``INVALIDS_FOR_LATER``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controlplane.errors import FlowValidationError
from controlplane.flows import CORE_TASK_TYPES, canonical_type, check_task_types, parse_flow

REPO = Path(__file__).resolve().parents[3]
CORPUS = Path(os.environ.get("KESTREL_CONFORMANCE_DIR", REPO.parent / "shared" / "conformance" / "kestra"))

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "flows").is_dir(),
    reason=f"Kestra conformance corpus not found at {CORPUS} (set KESTREL_CONFORMANCE_DIR)",
)


def _files(folder: str) -> list[Path]:
    directory = CORPUS / folder
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))


VALID_FLOWS = _files("flows")
INVALID_FLOWS = _files("extra/invalids")

#: Valid corpus flows parse_flow refuses, with the reason. Empty: all of them parse.
VALID_EXCEPTIONS: dict[str, str] = {}

#: Invalid corpus flow -> text that must appear in the FlowValidationError (Kestra's reason).
INVALIDS_REFUSED: dict[str, list[str]] = {
    "dag-cyclicdependency.yaml": ["dag: Cyclic dependency detected: task1, task2"],
    "dag-notexist-task.yaml": ["dag: Not existing task id in dependency: taskX"],
    "duplicate-inputs.yaml": ["duplicate input id 'first_input'"],
    "duplicate-key.yaml": ['duplicate key "variables.tf"'],
    "duplicate-parallel.yaml": ["duplicate task id 't3'"],
    "duplicate.yaml": [
        "'listeners' (deprecated in Kestra) is not supported",
        "duplicate task id 'date'",
        "duplicate trigger id 'trigger'",
    ],
    "empty.yaml": ["'tasks' is required"],
    "inputs-bad-type.yaml": ["invalid type 'FOO'", "not a valid input id"],
    "inputs-bad-validator-syntax.yaml": ["'validator' is not a valid regular expression"],
    "inputs-validation.yaml": [
        "no `defaults` can be set for inputs of type 'FILE'",
        "`itemType` cannot be `ARRAY`",
    ],
    "inputs.yaml": ["input 'wrong one': 'type' is required"],
    "invalid-parallel.yaml": [
        "'' is not a valid flow id",
        "'' is not a valid namespace",
        "task 'para2': 'tasks' must not be empty",
        "task 'para3': 'tasks' must not be empty",
        "task 'para4': 'tasks' must not be empty",
    ],
    "invalid-property.yaml": ["unknown property 'invalid' for type io.kestra.plugin.core.debug.Return"],
    # Kestra refuses its unknown task types; parse_flow refuses the deprecated listeners first, and
    # check_task_types refuses the types (see test_invalid_task_types_are_unknown).
    "invalid-task.yaml": ["'listeners' (deprecated in Kestra) is not supported"],
    "invalid.yaml": [
        "'my#flow' is not a valid flow id",
        "'MY$NAMESPACE' is not a valid namespace",
        "'id' is required",
    ],
    "listener.yaml": ["'listeners' (deprecated in Kestra) is not supported"],
    "recursive-flow.yaml": ["Recursive call to flow [io.kestra.tests.recursive-flow]"],
    "switch-invalid.yaml": ["No task defined, neither cases or default have any tasks"],
    "system-labels.yaml": [
        "System labels can only be set by Kestra itself, offending label: system.label=system_key",
        "System labels can only be set by Kestra itself, offending label: system.id=id",
    ],
    "workingdirectory-invalid.yaml": [
        "Only runnable tasks are allowed as children of a WorkingDirectory task"
    ],
    "workingdirectory-no-tasks.yaml": ["'tasks' must not be empty"],
}

#: Invalid corpus flows parse_flow accepts for now, with the feature that will refuse them.
INVALIDS_FOR_LATER: dict[str, str] = {
    "worker-group.yaml": (
        "Kestra OSS refuses workerGroup (an Enterprise feature); Kestrel keeps workerGroup.key in "
        "Task.worker_group for its own worker routing, decided by a later issue"
    ),
}


@needs_corpus
@pytest.mark.parametrize("path", VALID_FLOWS, ids=[p.name for p in VALID_FLOWS])
def test_valid_corpus_flow_parses(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    if path.name in VALID_EXCEPTIONS:
        with pytest.raises(FlowValidationError):
            parse_flow(source)
        return
    flow = parse_flow(source)
    assert flow.id and flow.namespace and flow.tasks
    assert flow.source == source


@needs_corpus
def test_valid_corpus_count() -> None:
    parsed = 0
    for path in VALID_FLOWS:
        try:
            parse_flow(path.read_text(encoding="utf-8"))
            parsed += 1
        except FlowValidationError:
            assert path.name in VALID_EXCEPTIONS, path.name
    assert parsed == len(VALID_FLOWS) - len(VALID_EXCEPTIONS)
    assert parsed >= 181


@needs_corpus
@pytest.mark.parametrize("path", INVALID_FLOWS, ids=[p.name for p in INVALID_FLOWS])
def test_invalid_corpus_flow(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    if path.name in INVALIDS_FOR_LATER:
        parse_flow(source)
        return
    assert path.name in INVALIDS_REFUSED, f"new invalid corpus flow {path.name}: classify it"
    with pytest.raises(FlowValidationError) as info:
        parse_flow(source)
    message = str(info.value)
    for expected in INVALIDS_REFUSED[path.name]:
        assert expected in message
    assert all(issue.line > 0 for issue in info.value.issues), message


@needs_corpus
def test_every_invalid_is_classified() -> None:
    names = {p.name for p in INVALID_FLOWS}
    assert names == set(INVALIDS_REFUSED) | set(INVALIDS_FOR_LATER)


@needs_corpus
def test_invalid_task_types_are_unknown() -> None:
    source = (CORPUS / "extra" / "invalids" / "invalid-task.yaml").read_text(encoding="utf-8")
    without_listeners = source.split("listeners:")[0] + "tasks:" + source.split("\ntasks:", 1)[1]
    flow = parse_flow(without_listeners)
    messages = [i.message for i in check_task_types(flow, ())]
    assert len(messages) == 2
    assert "unknown task type 'io.kestra.plugin.core.debug.MissingTwo'" in messages[0]
    assert "unknown task type 'io.kestra.plugin.core.debug.MissingThree'" in messages[1]


@needs_corpus
def test_catalogue_knows_every_non_test_type_of_the_corpus() -> None:
    manifest = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    test_only = {t for entry in manifest for t in entry.get("test_only_types") or ()}
    aliases = {k: v for entry in manifest for k, v in (entry.get("legacy_aliases") or {}).items()}
    for legacy, canonical in aliases.items():
        assert canonical_type(legacy) == canonical
    for path in VALID_FLOWS:
        flow = parse_flow(path.read_text(encoding="utf-8"))
        for task in flow.walk():
            if task.written_type in test_only:
                continue
            assert task.type in CORE_TASK_TYPES, f"{path.name}: {task.id} has type {task.type}"
