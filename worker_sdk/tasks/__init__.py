"""Built-in runnable tasks, one module per Kestra package.

Each task is a plain function ``(ctx: TaskContext, props: Mapping) -> outputs``, the same shape
as a user's ``@task`` function; `BUILTIN_TASKS` maps canonical Kestra type names to them and is
what `worker_sdk.registry.TaskRegistry` installs by default. Properties arrive already rendered by
the control plane: no task here evaluates expressions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker_sdk.tasks import (
    debug,
    execution,
    flow,
    for_each_item,
    http,
    item_tasks,
    kv,
    log,
    namespace_files,
    output,
    scripts,
    storage_tasks,
)

BUILTIN_TASKS: Mapping[str, Callable[..., Any]] = {
    log.TYPE: log.log,
    debug.RETURN_TYPE: debug.return_,
    debug.ECHO_TYPE: debug.echo,
    output.TYPE: output.output_values,
    execution.TYPE: execution.fail,
    flow.TYPE: flow.sleep,
    # shell.Commands with inputFiles/outputFiles/{{ outputDir }} (worker_sdk.tasks.scripts wraps
    # worker_sdk.tasks.shell), and the other script tasks.
    **scripts.TASKS,
    **kv.TASKS,
    **storage_tasks.TASKS,
    **namespace_files.TASKS,
    **http.TASKS,
    **for_each_item.TASKS,
    **item_tasks.TASKS,
}
"""Canonical type name → task function, for every built-in runnable task."""

INLINE_TASKS: frozenset[str] = frozenset({log.TYPE, debug.RETURN_TYPE, debug.ECHO_TYPE, output.TYPE, execution.TYPE})
"""Built-ins that only compute or log: run on the worker's event loop, without a thread or a
working directory (`worker_sdk.registry.TaskDefinition.inline`)."""

__all__ = ["BUILTIN_TASKS", "INLINE_TASKS"]
