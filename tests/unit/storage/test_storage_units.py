"""Pure parts of internal storage and the KV store: URIs, access rules, KV types, the local
backend's staged writes, and the script tasks' path markers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controlplane.errors import InvalidArgumentError
from controlplane.kv import ancestors, check_key, check_reach, typed_value
from controlplane.storage import uris
from controlplane.storage.backend import LocalStorage, StorageNotFoundError
from controlplane.storage.service import PermissionDeniedError, Scope, StoredFile, allowed
from worker_sdk.tasks import scripts


def test_task_file_uri_follows_kestra_layout():
    assert uris.task_file_uri("company.team", "flow", "EX", "t", "TR", "out/a b.csv") == (
        "kestra:///company/team/flow/executions/EX/tasks/t/TR/out/a%20b.csv")
    assert uris.input_file_uri("ns", "f", "up-1", "data", "x.txt") == "kestra:///ns/f/executions/up-1/inputs/data/x.txt"


@pytest.mark.parametrize("name", ["", ".", "..", "a/../b", "a//b", "/abs", "x\x00", "a\\b", "x" * 256, "ab/" * 400 + "c"])
def test_bad_file_names_are_refused(name):
    with pytest.raises(InvalidArgumentError, match="file_name"):
        uris.check_file_name(name)


@pytest.mark.parametrize("uri", ["http://x/y", "kestra://host/a", "kestra:///a/../b", "kestra:///a//b",
                                 "kestra:///a/%2e%2e/b", "kestra:///a/%00"])
def test_bad_uris_are_refused(uri):
    with pytest.raises(InvalidArgumentError):
        uris.storage_key(uri)


def test_canonical_uri_decodes_and_reencodes():
    assert uris.canonical_uri("kestra:///a/b%20c/d") == "kestra:///a/b%20c/d"
    assert uris.storage_key("kestra:///a/b%20c/d") == "a/b c/d"


def test_namespace_must_be_valid():
    with pytest.raises(InvalidArgumentError):
        uris.namespace_path("Bad/ns")


def test_worker_reach_is_its_execution_or_namespace():
    scope = Scope("a.b", "f", "E1", "t", "TR")
    mine = StoredFile("kestra:///a/b/f/x", "a.b", "f", "E1", "TR", 1, "0" * 64)
    same_ns = StoredFile("kestra:///a/b/g/x", "a.b", "g", "E2", "TR2", 1, "0" * 64)
    other = StoredFile("kestra:///a/c/f/x", "a.c", "f", "E3", "TR3", 1, "0" * 64)
    child = StoredFile("kestra:///a/b/c/f/x", "a.b.c", "f", "E4", "TR4", 1, "0" * 64)
    assert allowed(mine, scope) and allowed(same_ns, scope)
    assert not allowed(other, scope) and not allowed(child, scope)
    assert allowed(other, None)  # clients


def test_kv_reach_is_self_and_ancestors():
    check_reach("a.b", "a.b")
    check_reach("a", "a.b")
    check_reach("x", None)
    for target in ("a.b.c", "a.bc", "b"):
        with pytest.raises(PermissionDeniedError, match="is not allowed from 'a.b'"):
            check_reach(target, "a.b")
    assert ancestors("a.b.c") == ["a.b.c", "a.b", "a"]


@pytest.mark.parametrize(
    ("value", "kv_type", "expected"),
    [
        ("42", "NUMBER", ("NUMBER", 42)),
        ("4.5", "NUMBER", ("NUMBER", 4.5)),
        ("TRUE", "BOOLEAN", ("BOOLEAN", True)),
        ("2024-01-01T01:00:00+01:00", "DATETIME", ("DATETIME", "2024-01-01T00:00:00Z")),
        ("2024-02-03", "DATE", ("DATE", "2024-02-03")),
        ("PT2H", "DURATION", ("DURATION", "PT2H")),
        ('{"a": 1}', "JSON", ("JSON", {"a": 1})),
        (12, "STRING", ("STRING", "12")),
        ({"a": 1}, None, ("JSON", {"a": 1})),
        (True, None, ("BOOLEAN", True)),
    ],
)
def test_kv_types(value, kv_type, expected):
    assert typed_value(value, kv_type) == expected


@pytest.mark.parametrize(("value", "kv_type"), [("x", "NUMBER"), (True, "NUMBER"), ("yes", "BOOLEAN"),
                                                ("2024-13-01", "DATE"), ("nan", "NUMBER"), ("1", "BLOB")])
def test_kv_type_errors(value, kv_type):
    with pytest.raises(InvalidArgumentError):
        typed_value(value, kv_type)


def test_kv_keys():
    assert check_key("my-key.v1_x") == "my-key.v1_x"
    for bad in ("", "-x", "a b", "k" * 256):
        with pytest.raises(InvalidArgumentError):
            check_key(bad)


def test_local_backend_commits_atomically_and_aborts_cleanly(tmp_path: Path):
    backend = LocalStorage(tmp_path)

    async def scenario():
        writer = backend.writer("ns/f/file.bin")
        await writer.write(b"a" * 10)
        assert not (tmp_path / "ns/f/file.bin").exists()  # invisible until committed
        await writer.commit()
        chunks = [c async for c in backend.read("ns/f/file.bin", chunk_size=4)]
        assert chunks == [b"aaaa", b"aaaa", b"aa"]
        aborted = backend.writer("ns/f/file.bin")
        await aborted.write(b"zzz")
        await aborted.abort()
        assert backend.read_prefix_sync("ns/f/file.bin", 100) == b"a" * 10
        assert list((tmp_path / ".staging").iterdir()) == []
        assert await backend.delete("ns/f/file.bin") is True
        assert await backend.delete("ns/f/file.bin") is False
        with pytest.raises(StorageNotFoundError):
            [c async for c in backend.read("ns/f/file.bin")]

    asyncio.run(scenario())
    with pytest.raises(ValueError):
        backend.path_of("../outside")


def test_script_markers_are_replaced_everywhere(tmp_path: Path):
    props = {"commands": [f"cd {scripts.WORKING_DIR_MARKER}", f"ls {scripts.OUTPUT_DIR_MARKER}/x"],
             "env": {"OUT": scripts.OUTPUT_DIR_MARKER}, "n": 1}
    replaced = scripts._replace_markers(props, tmp_path, tmp_path / "outputs")
    assert replaced == {"commands": [f"cd {tmp_path}", f"ls {tmp_path}/outputs/x"],
                        "env": {"OUT": f"{tmp_path}/outputs"}, "n": 1}


def test_control_plane_renders_the_markers():
    from controlplane.expressions import render
    from controlplane.storage import render as storage_render

    assert render("{{ workingDir }}/a {{ outputDir }}", {}) == (
        f"{storage_render.WORKING_DIR_MARKER}/a {storage_render.OUTPUT_DIR_MARKER}")
    assert storage_render.WORKING_DIR_MARKER == scripts.WORKING_DIR_MARKER
    assert storage_render.OUTPUT_DIR_MARKER == scripts.OUTPUT_DIR_MARKER


def test_a_namespace_part_cannot_start_with_underscore_so_files_folders_stay_apart():
    """`brka._files` would map onto namespace `brka`'s namespace-file folder (`brka/_files`)."""
    import pytest as _pytest

    from controlplane.errors import FlowValidationError, InvalidArgumentError
    from controlplane.flows import parse_flow
    from controlplane.storage.uris import namespace_path

    with _pytest.raises(InvalidArgumentError):
        namespace_path("brka._files")
    with _pytest.raises(FlowValidationError, match="each starting with a letter or digit"):
        parse_flow("id: f\nnamespace: brka._files\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: x\n")
    assert namespace_path("company.team_a.b-2") == "company/team_a/b-2"
