"""Script tasks on a local process (Kestra's ``Process`` task runner):
``io.kestra.plugin.scripts.{shell,python,node}.{Commands,Script}``.

Kestra reference: ``AbstractExecScript``, ``ScriptService`` and ``FilesService`` in
kestra-io/plugin-scripts and Kestra core. The process itself (logging, the ``::{…}::`` stdout
protocol, exit codes, cancellation) is :mod:`worker_sdk.tasks.shell`; this module adds the files:

* ``{{ workingDir }}`` and ``{{ outputDir }}``: the control plane renders these two variables to
  the markers :data:`WORKING_DIR_MARKER` / :data:`OUTPUT_DIR_MARKER` (it cannot know the worker's
  paths); this module replaces the markers in every string property with the attempt's working
  directory and its ``outputs`` sub-directory (created empty).
* ``inputFiles``: a map (or its JSON text) of relative path → content; a content that is a
  ``kestra:///`` URI is downloaded from internal storage instead.
* ``outputFiles``: glob patterns relative to the working directory (``*.csv``, ``**/*.json``);
  matching files, and every file written under ``{{ outputDir }}``, are uploaded after a
  successful run and listed in the output ``outputFiles`` (relative path → ``kestra:///`` URI),
  e.g. ``{{ outputs.t.outputFiles['data.csv'] }}``.
* ``Script`` tasks write ``script`` to a file in the working directory and run it with the
  language's interpreter (``/bin/sh``, ``python``, ``node``); ``Commands`` tasks run
  ``commands`` as shell lines (``python main.py``…). ``beforeCommands``, ``env``,
  ``interpreter``, ``failFast`` and ``warningOnStdErr`` behave as in ``shell.Commands``.
* ``namespaceFiles`` (``enabled``, ``include``, ``exclude``): the namespace's files are
  downloaded into the working directory first (``inputFiles`` may then overwrite them).
* ``containerImage``, ``taskRunner`` (other than Process) and ``docker`` are accepted and
  ignored, with a WARN line: the script always runs as a local process.
* Metrics lines (``::{"metrics": [...]}::``) are consumed (not logged); Kestrel has no metrics
  store yet.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure, TaskResult
from worker_sdk.tasks import shell
from worker_sdk.tasks._props import required, string_list, to_text

WORKING_DIR_MARKER = "__KESTREL_WORKING_DIR__"
OUTPUT_DIR_MARKER = "__KESTREL_OUTPUT_DIR__"

_BASE = "io.kestra.plugin.scripts."
SHELL_COMMANDS = _BASE + "shell.Commands"
SHELL_SCRIPT = _BASE + "shell.Script"
PYTHON_COMMANDS = _BASE + "python.Commands"
PYTHON_SCRIPT = _BASE + "python.Script"
NODE_COMMANDS = _BASE + "node.Commands"
NODE_SCRIPT = _BASE + "node.Script"


def _replace_markers(value: Any, working_dir: Path, output_dir: Path) -> Any:
    if isinstance(value, str):
        return value.replace(WORKING_DIR_MARKER, str(working_dir)).replace(OUTPUT_DIR_MARKER, str(output_dir))
    if isinstance(value, Mapping):
        return {k: _replace_markers(v, working_dir, output_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_markers(v, working_dir, output_dir) for v in value]
    return value


def _relative(working_dir: Path, name: str, field: str) -> Path:
    """``working_dir / name``, refusing absolute paths and ``..`` escapes."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise TaskFailure(f"property '{field}': '{name}' must be a relative path inside the working directory")
    return working_dir / pure


async def write_input_files(ctx: TaskContext, value: Any) -> None:
    """Create ``inputFiles`` in the working directory (see the module docstring).

    Raises:
        TaskFailure: not a map, a bad path, or a URI that cannot be downloaded.
    """
    if value is None:
        return
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise TaskFailure("property 'inputFiles' must be a map of file name to content") from None
    if not isinstance(value, Mapping):
        raise TaskFailure(f"property 'inputFiles' must be a map of file name to content, got {type(value).__name__}")
    for name, content in value.items():
        target = _relative(ctx.working_dir, str(name), "inputFiles")
        target.parent.mkdir(parents=True, exist_ok=True)
        text = to_text(content)
        if text.startswith("kestra:///"):
            if ctx.storage is None:
                raise TaskFailure(f"inputFiles '{name}': no internal storage outside a worker")
            try:
                await ctx.storage.download(text, target)
            except Exception as exc:  # gRPC status (NOT_FOUND, PERMISSION_DENIED) or I/O
                raise TaskFailure(f"inputFiles '{name}': cannot download {text}: {_describe(exc)}") from None
        else:
            target.write_text(text, encoding="utf-8")


def _describe(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        return str(details())
    return f"{type(exc).__name__}: {exc}"


async def upload_output_files(ctx: TaskContext, patterns: Any, output_dir: Path) -> dict[str, str]:
    """Upload the files matching ``patterns`` (globs relative to the working directory) and every
    file under ``output_dir``; returns relative path → URI.

    Raises:
        TaskFailure: a bad pattern, or an upload refused.
    """
    found: dict[str, Path] = {}
    for pattern in string_list(patterns or [], "outputFiles"):
        if not pattern or PurePosixPath(pattern).is_absolute() or ".." in PurePosixPath(pattern).parts:
            raise TaskFailure(f"property 'outputFiles': '{pattern}' must be a relative glob pattern")
        for path in sorted(ctx.working_dir.glob(pattern)):
            if path.is_file() and not path.is_relative_to(output_dir):
                found[path.relative_to(ctx.working_dir).as_posix()] = path
    if output_dir.is_dir():
        for path in sorted(output_dir.rglob("*")):
            if path.is_file():
                found[path.relative_to(output_dir).as_posix()] = path
    if found and ctx.storage is None:
        raise TaskFailure("outputFiles: no internal storage outside a worker")
    uris: dict[str, str] = {}
    for name, path in found.items():
        try:
            uris[name] = await ctx.storage.upload(path, name)
        except Exception as exc:
            raise TaskFailure(f"outputFiles '{name}': upload failed: {_describe(exc)}") from None
    return uris


def namespace_file_path(namespace: str, uri: str) -> str:
    """The path of a namespace file under its namespace's files (``scripts/etl.py``)."""
    from urllib.parse import unquote

    prefix = "kestra:///" + namespace.replace(".", "/") + "/_files/"
    return unquote(uri[len(prefix):]) if uri.startswith(prefix) else unquote(uri.rsplit("/", 1)[-1])


def _patterns(value: Any, name: str) -> list[str]:
    return string_list(value, name) if value is not None else []


async def copy_namespace_files(ctx: TaskContext, spec: Any) -> list[str]:
    """Kestra's ``namespaceFiles``: with ``enabled`` true, download the namespace's files into
    the working directory (keeping their paths), filtered by ``include``/``exclude`` glob
    patterns (``fnmatch``: ``*`` also matches ``/``). Returns the paths copied.

    Raises:
        TaskFailure: a malformed spec or a failed download.
    """
    import fnmatch

    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise TaskFailure("property 'namespaceFiles' must be a map with 'enabled', 'include', 'exclude'")
    enabled = spec.get("enabled", True)
    if enabled in (False, "false"):
        return []
    include = _patterns(spec.get("include"), "namespaceFiles.include")
    exclude = _patterns(spec.get("exclude"), "namespaceFiles.exclude")
    if ctx.storage is None:
        raise TaskFailure("namespaceFiles: no internal storage outside a worker")
    try:
        files = await ctx.storage.list_namespace_files()
    except Exception as exc:
        raise TaskFailure(f"namespaceFiles: cannot list the namespace files: {_describe(exc)}") from None
    copied = []
    for info in files:
        path = namespace_file_path(ctx.namespace, info.uri)
        if include and not any(fnmatch.fnmatch(path, p) for p in include):
            continue
        if any(fnmatch.fnmatch(path, p) for p in exclude):
            continue
        target = _relative(ctx.working_dir, path, "namespaceFiles")
        try:
            await ctx.storage.download(info.uri, target)
        except Exception as exc:
            raise TaskFailure(f"namespaceFiles: cannot download {path}: {_describe(exc)}") from None
        copied.append(path)
    return copied


def _python() -> str:
    return "python" if shutil.which("python") else ("python3" if shutil.which("python3") else sys.executable)


def _warn_ignored(ctx: TaskContext, props: Mapping[str, Any]) -> None:
    for name in ("containerImage", "docker"):
        if props.get(name) is not None:
            ctx.log.warn(f"property '{name}' is ignored: Kestrel runs scripts as local processes")
    runner = props.get("taskRunner")
    if isinstance(runner, Mapping) and not str(runner.get("type", "")).endswith("runner.Process"):
        ctx.log.warn(f"taskRunner '{runner.get('type')}' is not available: the script runs as a local process")


async def run_script(ctx: TaskContext, props: Mapping[str, Any],
                     commands_of: Callable[[Mapping[str, Any], Path], list[str]]) -> TaskResult:
    """Prepare files, run ``commands_of(props, working_dir)`` through :func:`shell.commands`,
    then upload output files into the outputs (``outputFiles``).

    Raises:
        TaskFailure: bad properties, a failed process (outputs kept), or a file transfer error.
    """
    output_dir = ctx.working_dir / "outputs"
    output_dir.mkdir(parents=True, exist_ok=True)
    props = _replace_markers(dict(props), ctx.working_dir, output_dir)
    _warn_ignored(ctx, props)
    await copy_namespace_files(ctx, props.get("namespaceFiles"))
    await write_input_files(ctx, props.get("inputFiles"))
    shell_props = {k: props[k] for k in ("beforeCommands", "env", "interpreter", "failFast", "warningOnStdErr")
                   if k in props}
    shell_props["commands"] = commands_of(props, ctx.working_dir)
    result = await shell.commands(ctx, shell_props)
    outputs = dict(result.outputs or {})
    files = await upload_output_files(ctx, props.get("outputFiles"), output_dir)
    if files or props.get("outputFiles") is not None:
        outputs["outputFiles"] = files
    return TaskResult(outputs=outputs, warning=result.warning)


def _commands(props: Mapping[str, Any], working_dir: Path) -> list[str]:
    cmds = string_list(required(props, "commands"), "commands")
    if not cmds:
        raise TaskFailure("property 'commands' must not be empty")
    return cmds


def _script_file(props: Mapping[str, Any], working_dir: Path, suffix: str) -> Path:
    script = required(props, "script")
    if not isinstance(script, str) or not script.strip():
        raise TaskFailure("property 'script' must be non-empty text")
    path = working_dir / f"script-{uuid.uuid4().hex[:8]}{suffix}"
    path.write_text(script, encoding="utf-8")
    return path


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


async def shell_commands(ctx: TaskContext, props: Mapping[str, Any]) -> TaskResult:
    """``shell.Commands``: ``commands`` as shell lines (see :mod:`worker_sdk.tasks.shell`)."""
    return await run_script(ctx, props, _commands)


async def shell_script(ctx: TaskContext, props: Mapping[str, Any]) -> TaskResult:
    """``shell.Script``: ``script`` written to a file and run by ``/bin/sh``."""
    return await run_script(ctx, props, lambda p, wd: [f"/bin/sh {_quote(_script_file(p, wd, '.sh'))}"])


def _with_python_path(props: Mapping[str, Any]) -> dict[str, Any]:
    """Python scripts see the worker's interpreter directory first on PATH when the host has no
    ``python`` of its own, so ``python`` resolves."""
    out = dict(props)
    if shutil.which("python") is None:
        env = dict(out.get("env") or {})
        env.setdefault("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        out["env"] = env
    return out


async def python_commands(ctx: TaskContext, props: Mapping[str, Any]) -> TaskResult:
    """``python.Commands``: shell lines such as ``python main.py``."""
    return await run_script(ctx, _with_python_path(props), _commands)


async def python_script(ctx: TaskContext, props: Mapping[str, Any]) -> TaskResult:
    """``python.Script``: ``script`` written to a ``.py`` file and run by ``python``."""
    return await run_script(ctx, props, lambda p, wd: [f"{_python()} {_quote(_script_file(p, wd, '.py'))}"])


async def node_commands(ctx: TaskContext, props: Mapping[str, Any]) -> TaskResult:
    """``node.Commands``: shell lines such as ``node main.js``."""
    return await run_script(ctx, props, _commands)


async def node_script(ctx: TaskContext, props: Mapping[str, Any]) -> TaskResult:
    """``node.Script``: ``script`` written to a ``.js`` file and run by ``node``."""
    return await run_script(ctx, props, lambda p, wd: [f"node {_quote(_script_file(p, wd, '.js'))}"])


TASKS: Mapping[str, Callable[..., Any]] = {
    SHELL_COMMANDS: shell_commands,
    SHELL_SCRIPT: shell_script,
    PYTHON_COMMANDS: python_commands,
    PYTHON_SCRIPT: python_script,
    NODE_COMMANDS: node_commands,
    NODE_SCRIPT: node_script,
}
"""Type name → task function for the script tasks."""
