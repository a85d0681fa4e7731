"""Task registry: which Python function runs which Kestra task type.

A custom task type is one decorated function::

    from worker_sdk import task, TaskContext

    @task("my.company.Hello")
    def hello(ctx: TaskContext, props: dict) -> dict | None:
        ctx.log.info("hello %s", props.get("name"))
        return {"greeting": f"hello {props.get('name')}"}

Functions may be ``async def`` too. Sync functions run in a thread of their own, so they may
block. Types are stored under their canonical Kestra name: registering or looking up a legacy
alias (see `LEGACY_ALIASES`) resolves to the canonical name. The control plane canonicalises type
names before dispatch, so a worker advertises canonical names only.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from worker_sdk.context import TaskContext, TaskResult
from worker_sdk.tasks import BUILTIN_TASKS, INLINE_TASKS

__all__ = [
    "LEGACY_ALIASES",
    "DuplicateTaskTypeError",
    "TaskDefinition",
    "TaskFunction",
    "TaskRegistry",
    "UnknownTaskTypeError",
    "canonical_type",
    "default_registry",
    "task",
]

TaskOutputs = Mapping[str, Any] | TaskResult | None
TaskFunction = Callable[[TaskContext, dict[str, Any]], TaskOutputs | Awaitable[TaskOutputs]]
"""``fn(ctx, props)`` returning outputs (a dict, a `TaskResult` or None), or a coroutine of them."""

F = TypeVar("F", bound=Callable[..., Any])

LEGACY_ALIASES: Mapping[str, str] = {
    "io.kestra.core.tasks.log.Log": "io.kestra.plugin.core.log.Log",
    "io.kestra.core.tasks.debugs.Return": "io.kestra.plugin.core.debug.Return",
    "io.kestra.core.tasks.debugs.Echo": "io.kestra.plugin.core.debug.Echo",
    "io.kestra.core.tasks.executions.Fail": "io.kestra.plugin.core.execution.Fail",
    # Bash is Kestra's deprecated predecessor of shell.Commands (same `commands` property).
    "io.kestra.core.tasks.scripts.Bash": "io.kestra.plugin.scripts.shell.Commands",
}
"""Legacy Kestra type name → canonical name, for the built-in runnable tasks.

Only the runnable tasks this SDK ships; the control plane owns the full alias catalogue.
"""


def canonical_type(type_name: str) -> str:
    """Returns the canonical name of a task type (legacy aliases resolved, others unchanged)."""
    name = type_name.strip()
    return LEGACY_ALIASES.get(name, name)


class DuplicateTaskTypeError(ValueError):
    """A task type (after alias resolution) is already registered."""


class UnknownTaskTypeError(LookupError):
    """No function is registered for a task type."""


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A registered task type.

    Attributes:
        type: Canonical type name.
        fn: The task function.
        is_async: True when ``fn`` is a coroutine function (run on the event loop, not a thread).
        inline: A sync ``fn`` that only computes or logs (microseconds, no I/O, no use of
            ``ctx.working_dir``): the worker calls it on its event loop instead of starting a
            thread, and does not create a working directory for it (``ctx.working_dir`` is a
            path that does not exist). Set for the built-ins in
            `worker_sdk.tasks.INLINE_TASKS` (Log, Return, Echo, OutputValues, Fail): a thread
            and a directory cost more than such a task (issue 10).
    """

    type: str
    fn: TaskFunction
    is_async: bool
    inline: bool = False


class TaskRegistry:
    """Maps task type names to task functions.

    Args:
        include_builtins: Start with the built-in runnable tasks (`worker_sdk.tasks`).
    """

    def __init__(self, *, include_builtins: bool = True) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        if include_builtins:
            for type_name, fn in BUILTIN_TASKS.items():
                self.register(type_name, fn, inline=type_name in INLINE_TASKS)

    def register(
        self, type_name: str, fn: TaskFunction, *, replace: bool = False, inline: bool = False
    ) -> TaskDefinition:
        """Registers ``fn`` for ``type_name`` (a legacy alias registers the canonical name).

        Args:
            type_name: Kestra type name, e.g. ``my.company.Hello``.
            fn: ``fn(ctx, props)``, sync or async.
            replace: Allow replacing an existing registration (e.g. a built-in).
            inline: See `TaskDefinition.inline` (ignored for an async ``fn``, which runs on
                the event loop anyway).

        Returns:
            The stored definition.

        Raises:
            ValueError: ``type_name`` is empty or ``fn`` is not callable.
            DuplicateTaskTypeError: The type is already registered and ``replace`` is false.
        """
        name = canonical_type(type_name)
        if not name:
            raise ValueError("task type name must not be empty")
        if not callable(fn):
            raise ValueError(f"task {name!r}: {fn!r} is not callable")
        existing = self._tasks.get(name)
        if existing is not None and not replace and existing.fn is not fn:
            raise DuplicateTaskTypeError(
                f"task type {name!r} is already registered to {_describe(existing.fn)}"
                " (pass replace=True to override it)"
            )
        is_async = _is_async(fn)
        definition = TaskDefinition(name, fn, is_async, inline and not is_async)
        self._tasks[name] = definition
        return definition

    def task(self, type_name: str, *, replace: bool = False) -> Callable[[F], F]:
        """Decorator form of `register`; returns the function unchanged.

        Raises:
            DuplicateTaskTypeError: As `register`.
        """

        def decorate(fn: F) -> F:
            self.register(type_name, fn, replace=replace)
            return fn

        return decorate

    def get(self, type_name: str) -> TaskDefinition:
        """Returns the definition for a type name or one of its aliases.

        Raises:
            UnknownTaskTypeError: Nothing is registered for it.
        """
        definition = self._tasks.get(canonical_type(type_name))
        if definition is None:
            raise UnknownTaskTypeError(f"no task registered for type {type_name!r}")
        return definition

    def task_types(self) -> list[str]:
        """The canonical names of every registered type, sorted (what the worker advertises)."""
        return sorted(self._tasks)

    def unregister(self, type_name: str) -> None:
        """Removes a type if present (mostly for tests)."""
        self._tasks.pop(canonical_type(type_name), None)

    def __contains__(self, type_name: object) -> bool:
        return isinstance(type_name, str) and canonical_type(type_name) in self._tasks

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _describe(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}"


default_registry = TaskRegistry()
"""The registry `task` writes to and `Worker` uses unless given another; holds the built-ins."""


def task(type_name: str, *, registry: TaskRegistry | None = None, replace: bool = False) -> Callable[[F], F]:
    """Registers the decorated function as the runner of a task type.

    Args:
        type_name: Kestra type name, e.g. ``my.company.Hello`` (legacy aliases resolve to canonical).
        registry: Target registry; default `default_registry`.
        replace: Allow overriding an existing registration (e.g. a built-in).

    Returns:
        A decorator that registers the function and returns it unchanged.

    Raises:
        DuplicateTaskTypeError: The type is already registered (raised when decorating).
    """
    return (registry or default_registry).task(type_name, replace=replace)
