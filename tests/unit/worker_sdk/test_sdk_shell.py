"""shell.Commands with real processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from worker_sdk.context import TaskContext, TaskFailure, TaskResult
from worker_sdk.tasks import shell


def lines(ctx: TaskContext, level: str | None = None) -> list[str]:
    return ctx.log.messages(level)


@pytest.fixture
def ctx(tmp_path: Path) -> TaskContext:
    return TaskContext(task_id="sh", working_dir=tmp_path)


async def test_stdout_info_stderr_warn_and_outputs(ctx: TaskContext) -> None:
    result = await shell.commands(ctx, {"commands": ["echo hello", "echo oops >&2", "echo bye"]})
    assert isinstance(result, TaskResult)
    assert result.outputs == {"exitCode": 0, "vars": {}}
    assert not result.warning  # warningOnStdErr defaults to false
    assert lines(ctx, "INFO") == ["hello", "bye"]
    assert lines(ctx, "WARN") == ["oops"]


async def test_warning_on_stderr_opt_in(ctx: TaskContext) -> None:
    result = await shell.commands(ctx, {"commands": ["echo oops >&2"], "warningOnStdErr": True})
    assert result.warning
    quiet = await shell.commands(ctx, {"commands": ["echo fine"], "warningOnStdErr": True})
    assert not quiet.warning


async def test_nonzero_exit_fails_with_outputs(ctx: TaskContext) -> None:
    with pytest.raises(TaskFailure) as info:
        await shell.commands(ctx, {"commands": ['echo \'::{"outputs":{"partial":1}}::\'', "exit 3"]})
    assert info.value.message == "Command failed with exit code 3"
    assert info.value.outputs == {"exitCode": 3, "vars": {"partial": 1}}


async def test_fail_fast_stops_at_first_failing_command(ctx: TaskContext) -> None:
    with pytest.raises(TaskFailure, match="exit code 1"):
        await shell.commands(ctx, {"commands": ["false", "echo after"]})
    assert "after" not in lines(ctx)
    result = await shell.commands(ctx, {"commands": ["false", "echo after"], "failFast": False})
    assert result.outputs["exitCode"] == 0 and "after" in lines(ctx)


async def test_output_protocol_lines_become_vars_not_logs(ctx: TaskContext) -> None:
    result = await shell.commands(
        ctx,
        {
            "commands": [
                'echo \'::{"outputs":{"test":"value","int":2,"bool":true,"float":3.65}}::\'',
                'echo \'::{"outputs":{"int":5}}::\' >&2',
                'echo \'::{"logs":[{"level":"ERROR","message":"structured"}]}::\'',
                'echo \'::{"metrics":[{"name":"count","type":"counter","value":1}]}::\'',
                "echo '::not json::'",
                "echo plain",
            ]
        },
    )
    assert result.outputs == {"exitCode": 0, "vars": {"test": "value", "int": 5, "bool": True, "float": 3.65}}
    assert lines(ctx, "INFO") == ["::not json::", "plain"]
    assert lines(ctx, "ERROR") == ["structured"]
    assert lines(ctx, "WARN") == []


async def test_env_before_commands_interpreter_and_working_dir(ctx: TaskContext) -> None:
    result = await shell.commands(
        ctx,
        {
            "beforeCommands": ["GREETING=hi"],
            "commands": ['echo "$GREETING $WHO $N"', "pwd", "touch made-here"],
            "env": {"WHO": "Ada", "N": 3, "SKIPPED": None},
            "interpreter": ["/bin/sh", "-c"],
        },
    )
    assert result.outputs["exitCode"] == 0
    assert lines(ctx, "INFO") == ["hi Ada 3", str(ctx.working_dir)]
    assert (ctx.working_dir / "made-here").exists()


async def test_streams_lines_while_running(ctx: TaskContext) -> None:
    task = asyncio.ensure_future(shell.commands(ctx, {"commands": ["echo first", "sleep 2", "echo second"]}))
    deadline = time.monotonic() + 1.5
    while "first" not in lines(ctx) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert lines(ctx) == ["first"] and not task.done()
    await task
    assert lines(ctx) == ["first", "second"]


async def test_long_lines_and_missing_trailing_newline(ctx: TaskContext) -> None:
    await shell.commands(ctx, {"commands": ["head -c 200000 /dev/zero | tr '\\0' a", "printf tail"]})
    logged = lines(ctx)
    assert logged[0] == "a" * 200000 + "tail"


def _alive(pid: int, settle_seconds: float = 2.0) -> bool:
    """Whether ``pid`` is still running; a process just sent SIGKILL gets ``settle_seconds`` to go
    (the kernel tears it down asynchronously after the pipes close)."""
    deadline = time.monotonic() + settle_seconds
    while _running(pid):
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.02)
    return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def _pid_of_sleep(ctx: TaskContext) -> int:
    pid_file = ctx.working_dir / "pid"
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "script did not start"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    return int(pid_file.read_text())


async def test_asyncio_cancel_kills_the_process_group_within_a_second(ctx: TaskContext) -> None:
    task = asyncio.ensure_future(shell.commands(ctx, {"commands": ["sleep 30 & echo $! > pid; wait"]}))
    pid = await _pid_of_sleep(ctx)
    assert _running(pid)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert not _alive(pid)


async def test_ctx_cancelled_kills_the_process(ctx: TaskContext) -> None:
    task = asyncio.ensure_future(shell.commands(ctx, {"commands": ["sleep 30 & echo $! > pid; wait"]}))
    pid = await _pid_of_sleep(ctx)
    started = time.monotonic()
    ctx.cancelled.set()
    with pytest.raises(TaskFailure, match="cancelled"):
        await task
    assert time.monotonic() - started < 1.0
    assert not _alive(pid)


async def test_background_process_left_behind_is_killed(ctx: TaskContext) -> None:
    started = time.monotonic()
    result = await shell.commands(ctx, {"commands": ["sleep 30 & echo $! > pid", "echo done"]})
    assert result.outputs["exitCode"] == 0
    assert time.monotonic() - started < shell.PIPE_DRAIN_SECONDS + 1.5
    assert not _alive(int((ctx.working_dir / "pid").read_text()))


async def test_bad_properties(ctx: TaskContext) -> None:
    with pytest.raises(TaskFailure, match="'commands' is required"):
        await shell.commands(ctx, {})
    with pytest.raises(TaskFailure, match="'commands' must not be empty"):
        await shell.commands(ctx, {"commands": []})
    with pytest.raises(TaskFailure, match="'env' must be a map"):
        await shell.commands(ctx, {"commands": ["true"], "env": ["A=1"]})
    with pytest.raises(TaskFailure, match="Cannot start interpreter"):
        await shell.commands(ctx, {"commands": ["true"], "interpreter": ["/no/such/shell", "-c"]})


def test_argv_and_exit_codes() -> None:
    assert shell.build_argv({"commands": ["a", "b"], "beforeCommands": ["x"]}) == [
        "/bin/sh",
        "-c",
        "set -e\nx\na\nb",
    ]
    assert shell.build_argv({"commands": "a", "failFast": False, "interpreter": ["bash", "-c"]}) == [
        "bash",
        "-c",
        "a",
    ]
    assert shell.exit_code(0) == 0 and shell.exit_code(2) == 2 and shell.exit_code(-9) == 137
