"""Task registry: decorator, aliases, duplicates."""

from __future__ import annotations

import pytest

from worker_sdk import TaskContext, task
from worker_sdk.registry import (
    DuplicateTaskTypeError,
    TaskRegistry,
    UnknownTaskTypeError,
    canonical_type,
    default_registry,
)
from worker_sdk.tasks import debug


def test_decorator_registers_and_returns_the_function() -> None:
    registry = TaskRegistry(include_builtins=False)

    @registry.task("my.company.Hello")
    def hello(ctx: TaskContext, props: dict) -> dict:
        return {"greeting": f"hello {props['name']}"}

    definition = registry.get("my.company.Hello")
    assert definition.fn is hello and definition.type == "my.company.Hello" and not definition.is_async
    assert hello(TaskContext(), {"name": "Ada"}) == {"greeting": "hello Ada"}
    assert registry.task_types() == ["my.company.Hello"]
    assert "my.company.Hello" in registry and len(registry) == 1


def test_async_functions_are_detected() -> None:
    registry = TaskRegistry(include_builtins=False)

    @registry.task("my.Async")
    async def run(ctx: TaskContext, props: dict) -> None:
        return None

    class Callable:
        async def __call__(self, ctx: TaskContext, props: dict) -> None:
            return None

    registry.register("my.AsyncObject", Callable())
    assert registry.get("my.Async").is_async
    assert registry.get("my.AsyncObject").is_async


def test_module_level_task_uses_the_default_registry() -> None:
    @task("io.kestrel.tests.unit.Registered")
    def registered(ctx: TaskContext, props: dict) -> None:
        return None

    try:
        assert default_registry.get("io.kestrel.tests.unit.Registered").fn is registered
    finally:
        default_registry.unregister("io.kestrel.tests.unit.Registered")


def test_default_registry_holds_the_builtins_under_canonical_names() -> None:
    types = TaskRegistry().task_types()
    assert "io.kestra.plugin.core.log.Log" in types
    assert "io.kestra.plugin.scripts.shell.Commands" in types
    assert not any(t.startswith("io.kestra.core.tasks.") for t in types)


@pytest.mark.parametrize(
    ("legacy", "canonical"),
    [
        ("io.kestra.core.tasks.log.Log", "io.kestra.plugin.core.log.Log"),
        ("io.kestra.core.tasks.debugs.Return", "io.kestra.plugin.core.debug.Return"),
        ("io.kestra.core.tasks.debugs.Echo", "io.kestra.plugin.core.debug.Echo"),
        ("io.kestra.core.tasks.executions.Fail", "io.kestra.plugin.core.execution.Fail"),
        ("io.kestra.core.tasks.scripts.Bash", "io.kestra.plugin.scripts.shell.Commands"),
    ],
)
def test_legacy_aliases_resolve(legacy: str, canonical: str) -> None:
    registry = TaskRegistry()
    assert canonical_type(legacy) == canonical
    assert registry.get(legacy) is registry.get(canonical)
    assert legacy in registry


def test_registering_an_alias_registers_the_canonical_name() -> None:
    registry = TaskRegistry(include_builtins=False)
    registry.register("io.kestra.core.tasks.debugs.Return", debug.return_)
    assert registry.task_types() == ["io.kestra.plugin.core.debug.Return"]


def test_duplicate_registration_is_an_error_unless_replace() -> None:
    registry = TaskRegistry()

    def mine(ctx: TaskContext, props: dict) -> None:
        return None

    with pytest.raises(
        DuplicateTaskTypeError, match=r"io\.kestra\.plugin\.core\.log\.Log.*already registered"
    ):
        registry.register("io.kestra.plugin.core.log.Log", mine)
    with pytest.raises(DuplicateTaskTypeError):  # an alias of a registered type is a duplicate too
        registry.register("io.kestra.core.tasks.log.Log", mine)
    registry.register("io.kestra.plugin.core.log.Log", mine, replace=True)
    assert registry.get("io.kestra.core.tasks.log.Log").fn is mine


def test_registering_the_same_function_twice_is_harmless() -> None:
    registry = TaskRegistry(include_builtins=False)

    def same(ctx: TaskContext, props: dict) -> None:
        return None

    registry.register("my.Same", same)
    registry.register("my.Same", same)  # e.g. the module was imported twice
    assert len(registry) == 1


def test_unknown_type_and_bad_registrations() -> None:
    registry = TaskRegistry(include_builtins=False)
    with pytest.raises(UnknownTaskTypeError, match="my.Missing"):
        registry.get("my.Missing")
    with pytest.raises(ValueError, match="empty"):
        registry.register("  ", lambda ctx, props: None)
    with pytest.raises(ValueError, match="not callable"):
        registry.register("my.Bad", "nope")  # type: ignore[arg-type]
