"""The KV store end to end: KVService through the typed client, the kv.* and state.* tasks on a
worker, and kv() rendered by the control plane: types, overwrite, TTL expiry, inheritance down
the namespace hierarchy and isolation between namespaces."""

from __future__ import annotations

import time

import pytest

from tests.integration.storage_support import by_task, run, storage_stack, wait_for_workers
from worker_sdk.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    with storage_stack(database_url, tmp_path_factory.mktemp("kv"), workers=1) as (server, client):
        wait_for_workers(client, count=1)
        yield server, client


def _state(execution) -> str:
    return execution.state.current.value


def _errors(execution) -> list:
    return [(t.task_id, t.error) for t in execution.task_runs if t.error]


def test_client_set_get_list_delete_with_types(stack):
    _, client = stack
    entry = client.kv_set("company.kvapi", "n", "42", kv_type="NUMBER")
    assert (entry.type, entry.value) == ("NUMBER", 42)
    assert client.kv_set("company.kvapi", "obj", {"a": [1, 2]}).type == "JSON"
    assert client.kv_set("company.kvapi", "when", "2024-01-02T03:04:05+01:00", kv_type="DATETIME").value == (
        "2024-01-02T02:04:05Z")
    assert client.kv_set("company.kvapi", "dur", "PT90S", kv_type="DURATION").value == "PT1M30S"
    with pytest.raises(InvalidArgumentError, match="not a valid NUMBER"):
        client.kv_set("company.kvapi", "bad", "abc", kv_type="NUMBER")
    with pytest.raises(InvalidArgumentError, match="invalid KV key"):
        client.kv_set("company.kvapi", "no spaces", 1)
    with pytest.raises(AlreadyExistsError):
        client.kv_set("company.kvapi", "n", 1, overwrite=False)
    assert client.kv_get("company.kvapi", "n").value == 42
    assert [e.key for e in client.kv_list("company.kvapi")] == ["dur", "n", "obj", "when"]
    assert [e.key for e in client.kv_list("company.kvapi", prefix="d")] == ["dur"]
    assert client.kv_delete("company.kvapi", "n") is True
    assert client.kv_delete("company.kvapi", "n") is False
    with pytest.raises(NotFoundError, match="The key 'n' does not exist in the namespace 'company.kvapi'"):
        client.kv_get("company.kvapi", "n")


def test_expired_keys_vanish(stack):
    _, client = stack
    client.kv_set("company.ttl", "short", "v", ttl_seconds=1.0)
    client.kv_set("company.ttl", "long", "v", ttl_seconds=3600)
    assert client.kv_get("company.ttl", "short").expires_at is not None
    time.sleep(1.3)
    with pytest.raises(NotFoundError):
        client.kv_get("company.ttl", "short")
    assert [e.key for e in client.kv_list("company.ttl")] == ["long"]
    client.kv_set("company.ttl", "short", "again", overwrite=False)  # an expired key may be set again
    assert client.kv_get("company.ttl", "short").value == "again"


KV_TASKS = """
id: kv-tasks
namespace: company.team.kvtasks
tasks:
  - id: set
    type: io.kestra.plugin.core.kv.Set
    key: color
    value: blue
  - id: set-json
    type: io.kestra.plugin.core.kv.Set
    key: cfg
    value: '{"field": "value", "n": 3}'
    kvType: JSON
  - id: set-again
    type: io.kestra.plugin.core.kv.Set
    key: color
    value: red
    overwrite: false
    allowFailure: true
  - id: get
    type: io.kestra.plugin.core.kv.Get
    key: color
  - id: keys
    type: io.kestra.plugin.core.kv.GetKeys
  - id: render
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('cfg').field }}-{{ kv('cfg').n + 1 }}-{{ kv('color') }}-{{ kv('inherited') }}-{{ kv('missing', errorOnMissing=false) ?? 'none' }}-{{ kv('missing').field ?? 'fallback' }}"
  - id: missing
    type: io.kestra.plugin.core.kv.Get
    key: nope
  - id: delete
    type: io.kestra.plugin.core.kv.Delete
    key: color
  - id: state-set
    type: io.kestra.plugin.core.state.Set
    data: {count: 1}
  - id: state-get
    type: io.kestra.plugin.core.state.Get
"""


def test_kv_tasks_and_kv_function_with_inheritance(stack):
    _, client = stack
    client.kv_set("company", "inherited", "from-root")  # an ancestor's key, read through kv()
    client.kv_set("company.team", "inherited", "from-parent")  # nearer: wins
    execution = run(client, KV_TASKS)
    assert _state(execution) == "WARNING", _errors(execution)  # set-again failed, allowed
    tasks = by_task(execution)
    assert "Key already exists" in tasks["set-again"].error
    assert tasks["get"].outputs == {"value": "blue"}
    assert tasks["keys"].outputs == {"keys": ["cfg", "color"]}
    assert tasks["render"].outputs["value"] == "value-4-blue-from-parent-none-fallback"
    assert tasks["missing"].outputs == {"value": None}
    assert tasks["delete"].outputs == {"deleted": True}
    assert tasks["state-get"].outputs["data"] == {"count": 1}
    with pytest.raises(NotFoundError):
        client.kv_get("company.team.kvtasks", "color")


def test_kv_function_errors_on_missing_key_by_default(stack):
    _, client = stack
    source = """
id: kv-missing
namespace: company.kvmissing
tasks:
  - id: get
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('absent') }}"
"""
    execution = run(client, source)
    assert _state(execution) == "FAILED"
    assert "The key 'absent' does not exist in the namespace 'company.kvmissing'." in by_task(execution)["get"].error


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("{id: t, type: io.kestra.plugin.core.kv.Get, key: secret, namespace: other.team}",
         "Access to 'other.team' namespace is not allowed from 'company.thief'"),
        ("{id: t, type: io.kestra.plugin.core.kv.Set, key: secret, value: x, namespace: other.team}",
         "Access to 'other.team' namespace is not allowed from 'company.thief'"),
        ("{id: t, type: io.kestra.plugin.core.kv.Delete, key: secret, namespace: company.thief.child}",
         "Access to 'company.thief.child' namespace is not allowed from 'company.thief'"),
        ("{id: t, type: io.kestra.plugin.core.debug.Return, format: \"{{ kv('secret', 'other.team') }}\"}",
         "Access to 'other.team' namespace is not allowed from 'company.thief'"),
    ],
)
def test_another_namespace_store_is_refused(stack, task, expected):
    _, client = stack
    client.kv_set("other.team", "secret", "s3cr3t")
    client.kv_set("company.thief.child", "secret", "child")
    execution = run(client, f"id: thief\nnamespace: company.thief\ntasks:\n  - {task}\n")
    assert _state(execution) == "FAILED"
    assert expected in (by_task(execution)["t"].error or "")
    assert client.kv_get("other.team", "secret").value == "s3cr3t"
    assert client.kv_get("company.thief.child", "secret").value == "child"


def test_an_ancestor_store_may_be_named(stack):
    _, client = stack
    client.kv_set("company", "shared", 7)
    execution = run(client, """
id: ancestor
namespace: company.sub
tasks:
  - {id: t, type: io.kestra.plugin.core.kv.Get, key: shared, namespace: company}
  - {id: f, type: io.kestra.plugin.core.debug.Return, format: "{{ kv('shared', 'company') }}"}
""")
    assert _state(execution) == "SUCCESS", _errors(execution)
    assert by_task(execution)["t"].outputs == {"value": 7}
    assert by_task(execution)["f"].outputs == {"value": "7"}


def test_a_task_set_ttl_expires(stack):
    _, client = stack
    execution = run(client, """
id: ttl
namespace: company.ttltask
tasks:
  - {id: t, type: io.kestra.plugin.core.kv.Set, key: temp, value: x, ttl: PT1S}
""")
    assert _state(execution) == "SUCCESS", _errors(execution)
    assert client.kv_get("company.ttltask", "temp").value == "x"
    time.sleep(1.3)
    with pytest.raises(NotFoundError):
        client.kv_get("company.ttltask", "temp")


def test_required_kv_properties_are_checked_at_deploy(stack):
    _, client = stack
    with pytest.raises(InvalidArgumentError, match="property 'value' is required"):
        client.deploy_flow("id: bad\nnamespace: company\ntasks:\n  - {id: s, type: io.kestra.plugin.core.kv.Set, key: k}\n")


STATE = """
id: state-flow
namespace: company.state
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: ["a", "b"]
    tasks:
      - id: set
        type: io.kestra.plugin.core.state.Set
        data: {v: "{{ taskrun.value }}"}
      - id: get
        type: io.kestra.plugin.core.state.Get
  - id: shared-set
    type: io.kestra.plugin.core.state.Set
    namespace: true
    name: shared
    data: {x: 1}
  - id: shared-merge
    type: io.kestra.plugin.core.state.Set
    namespace: true
    name: shared
    data: {y: 2}
  - id: shared-get
    type: io.kestra.plugin.core.state.Get
    namespace: true
    name: shared
  - id: delete
    type: io.kestra.plugin.core.state.Delete
    namespace: true
    name: shared
  - id: after
    type: io.kestra.plugin.core.state.Get
    namespace: true
    name: shared
"""


def test_legacy_state_store(stack):
    _, client = stack
    execution = run(client, STATE)
    assert _state(execution) == "SUCCESS", _errors(execution)
    gets = {tr.value: tr.outputs for tr in execution.task_runs if tr.task_id == "get"}
    assert gets == {"a": {"data": {"v": "a"}, "count": 1}, "b": {"data": {"v": "b"}, "count": 1}}
    tasks = by_task(execution)
    assert tasks["shared-merge"].outputs["count"] == 2
    assert tasks["shared-get"].outputs["data"] == {"x": 1, "y": 2}
    assert tasks["delete"].outputs == {"deleted": True}
    assert tasks["after"].outputs == {"data": {}, "count": 0}
