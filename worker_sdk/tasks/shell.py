"""``io.kestra.plugin.scripts.shell.Commands``: runs shell commands as a local process.

Kestra reference: ``io.kestra.plugin.scripts.shell.Commands`` / ``AbstractExecScript`` in
kestra-io/plugin-scripts and ``DefaultLogConsumer`` / ``PluginUtilsService.parseOut`` in Kestra core.

Behaviour:

* The script is ``set -e`` (when ``failFast``, the default), then ``beforeCommands``, then
  ``commands``, joined with newlines and passed as the last argument of ``interpreter``
  (default ``["/bin/sh", "-c"]``). It runs in the attempt's working directory, in a process
  group of its own, with the worker's environment plus ``env``; stdin is empty.
* Each stdout line is logged at INFO and each stderr line at WARN while the process runs.
* A line ``::{"outputs": {...}}::`` (on either stream) merges those values into the output
  ``vars`` and is not logged; ``::{"logs": [{"level": ..., "message": ...}]}::`` logs those lines;
  ``metrics`` are ignored (no metrics API yet). A ``::...::`` line that is not valid JSON is
  logged as plain text.
* Exit code 0 → outputs ``{"exitCode": 0, "vars": {...}}``. Otherwise the task run fails with
  "Command failed with exit code N", keeping those outputs. A process killed by signal S reports
  exit code 128 + S, as shells do.
* ``warningOnStdErr``: when true, any stderr line makes the task run end in WARNING. Kestra
  defaulted it to true until 0.23, then deprecated it and stopped changing the state; we follow
  current Kestra and default to **false**.
* Cancellation (asyncio cancel or ``ctx.cancelled``) sends SIGTERM to the process group, then
  SIGKILL after `KILL_GRACE_SECONDS`. When the main process exits, leftover background processes
  still holding its output pipes get `PIPE_DRAIN_SECONDS` and are then killed.
* ``taskRunner``, ``containerImage`` and ``docker`` are not supported: the commands always run
  as a local process. The file properties (``inputFiles``, ``outputFiles``, ``{{ outputDir }}``)
  are handled around this function by :mod:`worker_sdk.tasks.scripts`, which is what the worker
  registers for this type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import Callable, Mapping
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure, TaskResult, normalize_level
from worker_sdk.tasks._props import boolean, required, string_list, to_text

TYPE = "io.kestra.plugin.scripts.shell.Commands"
DEFAULT_INTERPRETER = ("/bin/sh", "-c")
STDOUT_LEVEL = "INFO"
STDERR_LEVEL = "WARN"
KILL_GRACE_SECONDS = 2.0
PIPE_DRAIN_SECONDS = 1.0
_POLL_SECONDS = 0.05
_READ_CHUNK = 64 * 1024
_MAX_LINE = 256 * 1024
_OUTPUT_LINE = re.compile(r"^::(\{.*\})::$", re.DOTALL)


async def commands(ctx: TaskContext, props: Mapping[str, Any]) -> TaskResult:
    """Runs the commands; see the module docstring for the full behaviour.

    Properties:
        commands (list[str]): Required, non-empty.
        beforeCommands (list[str]): Run first, in the same script.
        interpreter (list[str]): Default ``["/bin/sh", "-c"]``.
        env (dict[str, str]): Extra environment variables (non-strings are JSON-encoded).
        failFast (bool): Prepend ``set -e`` (default true).
        warningOnStdErr (bool): End in WARNING when anything was written to stderr (default false).

    Returns:
        `TaskResult` with outputs ``{"exitCode": int, "vars": dict}``.

    Raises:
        TaskFailure: Bad properties, the interpreter cannot be started, a non-zero exit code
            (with the outputs attached), or cancellation through ``ctx.cancelled``.
        asyncio.CancelledError: The task was cancelled through asyncio (the process is killed first).
    """
    argv = build_argv(props)
    env = build_env(props.get("env"))
    warning_on_stderr = boolean(props, "warningOnStdErr", False)

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ctx.working_dir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # own process group, so cancellation can kill all of it
        )
    except OSError as exc:
        raise TaskFailure(f"Cannot start interpreter {argv[0]!r}: {exc.strerror or exc}") from None

    consumer = _LineConsumer(ctx)
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        asyncio.create_task(_read_lines(proc.stdout, lambda line: consumer.accept(line, stderr=False))),
        asyncio.create_task(_read_lines(proc.stderr, lambda line: consumer.accept(line, stderr=True))),
    ]
    try:
        if not await _exited_or_cancelled(proc, ctx):
            await _terminate(proc)
            await asyncio.wait(readers, timeout=PIPE_DRAIN_SECONDS)
            raise TaskFailure("Task was cancelled", outputs=consumer.outputs(None))
        _, still_reading = await asyncio.wait(readers, timeout=PIPE_DRAIN_SECONDS)
        if still_reading:  # background children keep the pipes open: end them
            _killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait(readers, timeout=PIPE_DRAIN_SECONDS)
    except asyncio.CancelledError:
        await asyncio.shield(_terminate(proc))
        raise
    finally:
        for reader in readers:
            reader.cancel()
        with contextlib.suppress(TimeoutError):  # lets asyncio close the transport
            await asyncio.wait_for(proc.wait(), timeout=PIPE_DRAIN_SECONDS)

    code = exit_code(proc.returncode)
    outputs = consumer.outputs(code)
    if code != 0:
        raise TaskFailure(f"Command failed with exit code {code}", outputs=outputs)
    return TaskResult(outputs=outputs, warning=warning_on_stderr and consumer.stderr_lines > 0)


def build_argv(props: Mapping[str, Any]) -> list[str]:
    """Builds the process argv from ``interpreter``, ``failFast``, ``beforeCommands`` and ``commands``.

    Raises:
        TaskFailure: ``commands`` missing or empty, or ``interpreter`` empty.
    """
    cmds = string_list(required(props, "commands"), "commands")
    if not cmds:
        raise TaskFailure("property 'commands' must not be empty")
    before = string_list(props.get("beforeCommands") or [], "beforeCommands")
    interpreter = string_list(props.get("interpreter") or list(DEFAULT_INTERPRETER), "interpreter")
    if not interpreter:
        raise TaskFailure("property 'interpreter' must not be empty")
    prelude = ["set -e"] if boolean(props, "failFast", True) else []
    return [*interpreter, "\n".join([*prelude, *before, *cmds])]


def build_env(extra: Any) -> dict[str, str]:
    """The worker's environment plus ``extra`` (null values skipped, non-strings JSON-encoded).

    Raises:
        TaskFailure: ``extra`` is not a map.
    """
    env = dict(os.environ)
    if extra is None:
        return env
    if not isinstance(extra, Mapping):
        raise TaskFailure(f"property 'env' must be a map, got {type(extra).__name__}")
    for key, value in extra.items():
        if value is not None:
            env[str(key)] = to_text(value)
    return env


def exit_code(returncode: int | None) -> int:
    """Maps a `subprocess` return code to a shell-style exit code (signal S → 128 + S)."""
    if returncode is None:
        return -1
    return returncode if returncode >= 0 else 128 - returncode


class _LineConsumer:
    """Turns output lines into log lines and collected ``vars`` (Kestra's ``DefaultLogConsumer``)."""

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx
        self.vars: dict[str, Any] = {}
        self.stderr_lines = 0

    def accept(self, line: str, *, stderr: bool) -> None:
        if stderr:
            self.stderr_lines += 1
        if self._parse_special(line):
            return
        self._ctx.log.log(STDERR_LEVEL if stderr else STDOUT_LEVEL, line)

    def _parse_special(self, line: str) -> bool:
        match = _OUTPUT_LINE.match(line.strip())
        if match is None:
            return False
        try:
            payload = json.loads(match.group(1))
        except ValueError:
            return False
        if not isinstance(payload, dict):
            return False
        outputs = payload.get("outputs")
        if isinstance(outputs, dict):
            self.vars.update(outputs)
        logs = payload.get("logs")
        if isinstance(logs, list):
            for entry in logs:
                if isinstance(entry, dict) and "message" in entry:
                    try:
                        level = normalize_level(entry.get("level") or "INFO")
                    except ValueError:
                        level = "INFO"
                    self._ctx.log.log(level, to_text(entry["message"]))
        return True

    def outputs(self, code: int | None) -> dict[str, Any]:
        result: dict[str, Any] = {"vars": dict(self.vars)}
        if code is not None:
            result["exitCode"] = code
        return result


async def _read_lines(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    """Feeds every line of ``stream`` (without its line ending) to ``on_line``; very long lines
    are cut every `_MAX_LINE` bytes. Bytes are decoded as UTF-8 with replacement."""
    buffer = b""
    while True:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            on_line(_decode(raw))
        while len(buffer) > _MAX_LINE:
            on_line(_decode(buffer[:_MAX_LINE]))
            buffer = buffer[_MAX_LINE:]
    if buffer:
        on_line(_decode(buffer))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


async def _exited_or_cancelled(proc: asyncio.subprocess.Process, ctx: TaskContext) -> bool:
    """Waits until the main process exits (True) or ``ctx.cancelled`` is set (False).

    Polls ``returncode``: `asyncio.subprocess.Process.wait` also waits for the output pipes to
    close, which a background child can keep open long after the main process is gone.
    """
    while proc.returncode is None:
        if ctx.cancelled.is_set():
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the process group, SIGKILL after `KILL_GRACE_SECONDS`."""
    if proc.returncode is None:
        _killpg(proc.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_GRACE_SECONDS
        while proc.returncode is None and loop.time() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
    _killpg(proc.pid, signal.SIGKILL)  # also any child that ignored SIGTERM or outlived the shell


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
