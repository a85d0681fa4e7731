"""Built-in runnable tasks called directly with a hand-built TaskContext (no network)."""

from __future__ import annotations

import asyncio
import time

import pytest

from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks import BUILTIN_TASKS, debug, execution, flow, log, output


def records(ctx: TaskContext) -> list[tuple[str, str]]:
    return [(r.level, r.message) for r in ctx.log.records]


def test_log_single_message_defaults_to_info() -> None:
    ctx = TaskContext()
    assert log.log(ctx, {"message": "Hello Ada"}) is None
    assert records(ctx) == [("INFO", "Hello Ada")]


def test_log_list_logs_each_line_at_level() -> None:
    ctx = TaskContext()
    log.log(ctx, {"message": ["one", "two", 3], "level": "warn"})
    assert records(ctx) == [("WARN", "one"), ("WARN", "two"), ("WARN", "3")]


@pytest.mark.parametrize("level", ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"])
def test_log_every_level(level: str) -> None:
    ctx = TaskContext()
    log.log(ctx, {"message": "x", "level": level})
    assert records(ctx) == [(level, "x")]


def test_log_errors_name_the_property() -> None:
    with pytest.raises(TaskFailure, match="'message' is required"):
        log.log(TaskContext(), {})
    with pytest.raises(TaskFailure, match="'level'"):
        log.log(TaskContext(), {"message": "x", "level": "LOUD"})


def test_return_outputs_value() -> None:
    assert debug.return_(TaskContext(), {"format": "flow-with-outputs"}) == {"value": "flow-with-outputs"}
    assert debug.return_(TaskContext(), {}) == {"value": None}
    assert debug.return_(TaskContext(), {"format": None}) == {"value": ""}  # an expression rendering null


def test_echo_logs_format_at_level() -> None:
    ctx = TaskContext()
    assert debug.echo(ctx, {"format": "hi"}) is None
    debug.echo(ctx, {"format": "careful", "level": "ERROR"})
    assert records(ctx) == [("INFO", "hi"), ("ERROR", "careful")]


def test_output_values() -> None:
    values = {"a": "x", "n": 2, "nested": {"l": [1, True]}}
    assert output.output_values(TaskContext(), {"values": values}) == {"values": values}
    assert output.output_values(TaskContext(), {}) == {"values": {}}
    with pytest.raises(TaskFailure, match="'values' must be a map"):
        output.output_values(TaskContext(), {"values": [1]})


def test_fail_without_condition_always_fails() -> None:
    with pytest.raises(TaskFailure) as info:
        execution.fail(TaskContext(), {})
    assert info.value.message == "Task failure"
    with pytest.raises(TaskFailure, match="^custom$"):
        execution.fail(TaskContext(), {"errorMessage": "custom"})


@pytest.mark.parametrize("condition", ["true", True, "yes", "1", "FALSE", " ", 1, "0.0"])
def test_fail_truthy_condition_fails(condition: object) -> None:
    with pytest.raises(TaskFailure, match="boom"):
        execution.fail(TaskContext(), {"condition": condition, "errorMessage": "boom"})


@pytest.mark.parametrize("condition", ["false", False, "0", "-0", "", 0])
def test_fail_falsy_condition_succeeds(condition: object) -> None:
    assert execution.fail(TaskContext(), {"condition": condition, "errorMessage": "boom"}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1S", 1.0), ("PT0.25S", 0.25), ("PT1M30S", 90.0), ("PT2H", 7200.0), ("P1DT1S", 86401.0), (3, 3.0)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert flow.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "1S", "PT-1S", "-PT1S", "soon", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        flow.parse_duration(text)


async def test_sleep_waits_and_can_be_cancelled() -> None:
    started = time.monotonic()
    assert await flow.sleep(TaskContext(), {"duration": "PT0.1S"}) is None
    assert time.monotonic() - started >= 0.1
    task = asyncio.ensure_future(flow.sleep(TaskContext(), {"duration": "PT30S"}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(TaskFailure, match="'duration'"):
        await flow.sleep(TaskContext(), {"duration": "later"})


def test_builtin_catalogue_is_canonical() -> None:
    assert set(BUILTIN_TASKS) == {
        "io.kestra.plugin.core.log.Log",
        "io.kestra.plugin.core.debug.Return",
        "io.kestra.plugin.core.debug.Echo",
        "io.kestra.plugin.core.output.OutputValues",
        "io.kestra.plugin.core.execution.Fail",
        "io.kestra.plugin.core.flow.Sleep",
        "io.kestra.plugin.scripts.shell.Commands",
        *(f"io.kestra.plugin.scripts.{lang}.{kind}" for lang in ("shell", "python", "node")
          for kind in ("Commands", "Script")),
        "io.kestra.plugin.core.log.Fetch",
        *(f"io.kestra.plugin.core.kv.{n}" for n in ("Set", "Get", "GetKeys", "Delete")),
        *(f"io.kestra.plugin.core.state.{n}" for n in ("Set", "Get", "Delete")),
        *(f"io.kestra.plugin.core.storage.{n}" for n in ("LocalFiles", "Concat", "Split", "Reverse", "Size",
                                                         "Delete", "PurgeCurrentExecutionFiles")),
        *(f"io.kestra.plugin.core.namespace.{n}Files" for n in ("Upload", "Download", "Delete")),
        "io.kestra.plugin.core.http.Request",
        "io.kestra.plugin.core.http.Download",
        "io.kestra.plugin.core.flow.ForEachItem$ForEachItemSplit",
        "io.kestra.plugin.core.storage.FilterItems",
        "io.kestra.plugin.core.storage.DeduplicateItems",
    }
