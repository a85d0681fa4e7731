"""The ``kestrel`` command line.

Server commands start processes (``kestrel server local|standalone``, ``kestrel worker``,
``kestrel db migrate``); client commands (``kestrel flow …``, ``kestrel execution …``) talk to a
running control plane through :class:`worker_sdk.client.KestrelClient`, at ``--server HOST:PORT``
(env ``KESTREL_SERVER``, default ``127.0.0.1:6570``).

Exit codes: 0 success; 1 a failure reported by the server, an unreachable server, an invalid
flow, or an execution that did not end SUCCESS/WARNING (``run --wait``); 2 a usage error
(bad option, malformed ``KEY=VALUE``, an unsupported ``@file`` input); 130 interrupted.
Errors print one ``error: <message>`` line on stderr, without a traceback.

Heavy modules (the control plane, the worker, the database layer) are imported inside the command
that needs them, so client commands start fast and work without a database driver.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from worker_sdk.client import DEFAULT_SERVER, KestrelClient
from worker_sdk.connection import Connection
from worker_sdk.errors import KestrelError, NotFoundError, UnavailableError
from worker_sdk.types import Execution, LogEntry, LogLevel, State, ValidationIssue, ValidationResult

__all__ = [
    "FileInputNotSupportedError",
    "app",
    "collect_flow_files",
    "format_duration",
    "format_log_line",
    "parse_inputs",
    "parse_key_value",
    "parse_labels",
]

app = typer.Typer(
    name="kestrel",
    help="Kestrel: run Kestra-style YAML flows.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold database URLs with passwords
)
server_app = typer.Typer(help="Run a control plane.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
flow_app = typer.Typer(help="Validate, deploy and inspect flows.", no_args_is_help=True)
execution_app = typer.Typer(help="Start, watch and inspect executions.", no_args_is_help=True)
app.add_typer(server_app, name="server")
app.add_typer(db_app, name="db")
app.add_typer(flow_app, name="flow")
app.add_typer(execution_app, name="execution")
kv_app = typer.Typer(help="Read and write the namespace key-value store.", no_args_is_help=True)
app.add_typer(kv_app, name="kv")
namespace_app = typer.Typer(help="Namespace-level resources.", no_args_is_help=True)
namespace_files_app = typer.Typer(help="Namespace files (read(), script namespaceFiles).", no_args_is_help=True)
namespace_app.add_typer(namespace_files_app, name="files")
app.add_typer(namespace_app, name="namespace")
trigger_app = typer.Typer(help="List, enable and disable flow triggers.", no_args_is_help=True)
app.add_typer(trigger_app, name="trigger")
token_app = typer.Typer(
    help="Manage API tokens (on the database directly: run where KESTREL_DATABASE_URL reaches Postgres).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")

# Rich resolves sys.stdout / sys.stderr at each write, so these follow redirections (and tests).
# No markup: names, labels and messages are printed as given, never parsed for [style] tags.
_out = Console(highlight=False, markup=False)
_err = Console(stderr=True, highlight=False, markup=False)
# Off a terminal rich assumes 80 columns; piped tables get room instead of wrapping.
_piped = Console(highlight=False, markup=False, width=240)

_FILE_INPUT_MESSAGE = "FILE inputs need internal storage, not available in this version"
_STATE_STYLES = {
    State.SUCCESS: "green",
    State.WARNING: "yellow",
    State.FAILED: "red",
    State.KILLED: "red",
    State.KILLING: "red",
    State.CANCELLED: "red",
    State.RUNNING: "blue",
    State.RETRYING: "magenta",
    State.PAUSED: "cyan",
}


class OutputFormat(StrEnum):
    """How client commands print their result."""

    text = "text"
    json = "json"


#: Choices of ``--state`` and ``--level``: the client's enums without their UNSPECIFIED member.
StateName = StrEnum("StateName", {s.name: s.value for s in State if s is not State.UNSPECIFIED})
LevelName = StrEnum("LevelName", {lv.name: lv.value for lv in LogLevel if lv is not LogLevel.UNSPECIFIED})


ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="KESTREL_SERVER",
        metavar="HOST:PORT",
        help="Address of the Kestrel control plane.",
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        envvar="KESTREL_TIMEOUT",
        min=0.001,
        help="Deadline of each API call, in seconds (does not limit --wait or --follow).",
    ),
]
OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", case_sensitive=False, help="text for people, json for scripts."),
]


# -- pure helpers (tested directly) ---------------------------------------------------------


class FileInputNotSupportedError(Exception):
    """A ``KEY=@path`` input was given; FILE inputs need the storage service (not built yet)."""

    def __init__(self, key: str, path: str) -> None:
        super().__init__(f"input {key!r} (@{path}): {_FILE_INPUT_MESSAGE}")
        self.key = key
        self.path = path


def parse_key_value(text: str, option: str = "--input") -> tuple[str, str]:
    """Splits ``KEY=VALUE`` at the first ``=``.

    Args:
        text: The option's value, e.g. ``user=Ada`` or ``expr=a=b`` (value ``a=b``).
        option: Option name for the error message.

    Returns:
        ``(key, value)``; the key is stripped of surrounding blanks, the value is kept as is
        (it may be empty).

    Raises:
        typer.BadParameter: No ``=``, or an empty key (exit code 2).
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint=f"'{option}'")
    return key, value


def parse_inputs(values: Iterable[str]) -> dict[str, str]:
    """Turns repeated ``--input KEY=VALUE`` options into the inputs sent to the server.

    Values stay strings: the server coerces them to each input's declared type, as Kestra does
    for form inputs. A repeated key keeps its last value. ``KEY=@path`` means "upload this file"
    (Kestra's FILE inputs); ``KEY=@@text`` sends the literal ``@text``.

    Args:
        values: The raw option values.

    Returns:
        Input id -> string value.

    Raises:
        typer.BadParameter: A value is not ``KEY=VALUE``.
        FileInputNotSupportedError: A ``KEY=@path`` value: FILE inputs need internal storage,
            which this version does not have.
    """
    inputs: dict[str, str] = {}
    for text in values:
        key, value = parse_key_value(text, "--input")
        if value.startswith("@@"):
            value = value[1:]
        elif value.startswith("@"):
            raise FileInputNotSupportedError(key, value[1:])
        inputs[key] = value
    return inputs


def split_file_inputs(values: Iterable[str]) -> tuple[dict[str, str], dict[str, Path]]:
    """Like :func:`parse_inputs`, but ``KEY=@path`` values are returned apart, as files to
    upload for FILE inputs (``kestrel execution run … --input f=@data.csv``).

    Returns:
        (input id -> string value, input id -> local file path).

    Raises:
        typer.BadParameter: A value is not ``KEY=VALUE``, or a ``@path`` is not a readable file.
    """
    plain: list[str] = []
    files: dict[str, Path] = {}
    for text in values:
        key, value = parse_key_value(text, "--input")
        if value.startswith("@") and not value.startswith("@@"):
            path = Path(value[1:]).expanduser()
            if not path.is_file():
                raise typer.BadParameter(f"input {key!r}: no such file {str(path)!r}", param_hint="'--input'")
            files[key] = path
        else:
            plain.append(text)
    inputs = parse_inputs(plain)
    for key in files:
        inputs.pop(key, None)
    return inputs, files


def parse_labels(values: Iterable[str], option: str = "--label") -> dict[str, str]:
    """Turns repeated ``--label k=v`` options into a dict (a repeated key keeps its last value).

    Raises:
        typer.BadParameter: A value is not ``KEY=VALUE``.
    """
    return dict(parse_key_value(v, option) for v in values)


def collect_flow_files(paths: Iterable[Path]) -> list[Path]:
    """Expands the paths given to ``flow validate|deploy``.

    A file is taken as is; a directory contributes every ``*.yml`` / ``*.yaml`` under it,
    recursively, in sorted order. Duplicates are dropped, the first occurrence kept.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml")))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def format_duration(value: timedelta | None) -> str:
    """``1.234s``, ``2m03s``, ``1h02m03s``; ``-`` for ``None``."""
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.3f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_log_line(entry: LogEntry) -> str:
    """One log line as ``kestrel execution logs`` prints it: ``timestamp level taskId message``."""
    stamp = _iso(entry.timestamp)
    return f"{stamp} {entry.level.value:<5} {entry.task_id or '-'} {entry.message}"


# -- error handling -------------------------------------------------------------------------


#: Token and TLS files of client commands, from the global options (``kestrel --token …``).
_connection: Connection | None = None


def _conn() -> Connection:
    """The client connection settings: global options, else ``KESTREL_TOKEN``/``KESTREL_TLS_*``."""
    return _connection if _connection is not None else Connection.from_env()


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _client(server: str, timeout: float) -> Iterator[KestrelClient]:
    """A client whose errors end the command with ``error: …`` on stderr and exit code 1."""
    try:
        client = KestrelClient(server, timeout=timeout, connection=_conn())
    except ValueError as err:  # an empty address or a bad timeout
        _fail(str(err), 2)
    try:
        with client:
            yield client
    except KestrelError as err:
        _fail(str(err))


def _import(module: str, attr: str) -> Any:
    """Imports ``module.attr`` on demand; a missing module is one clean error line."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as err:
        _fail(f"cannot load {module}.{attr}: {err}")


@contextmanager
def _process_errors() -> Iterator[None]:
    """Error handling of long-running commands (servers, workers, migrations): the control
    plane's own typed errors (e.g. a data dir or port in use) print one line, not a traceback."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    from controlplane.errors import KestrelError as ControlPlaneError

    try:
        yield
    except (KestrelError, ControlPlaneError) as err:
        _fail(str(err))
    except OperationalError as err:
        reason = " ".join(str(err.orig or err).split())
        _fail(f"cannot use the database: {reason} (check --database-url / KESTREL_DATABASE_URL)")
    except (ArgumentError, NoSuchModuleError) as err:
        _fail(f"database URL not usable ({err}); expected postgresql+psycopg://USER@HOST:PORT/DB")
    except ModuleNotFoundError as err:
        _fail(f"Python module '{err.name}' is missing: a database driver named in the URL (expected "
              "postgresql+psycopg://USER@HOST:PORT/DB) or an incomplete install (pip install -e .)")
    except ValidationError as err:
        from controlplane.config import describe

        _fail(describe(err))
    except OSError as err:  # e.g. an address that cannot be bound
        _fail(str(err))
    except ValueError as err:  # e.g. an unreadable TLS file
        _fail(str(err))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


# -- version --------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        from controlplane import __version__

        typer.echo(f"kestrel {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="KESTREL_TOKEN", show_envvar=True, show_default=False,
                     help="API token sent by client commands, workers and the dashboard (never printed)."),
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option("--tls-ca", envvar="KESTREL_TLS_CA", metavar="PEM",
                                  help="CA that signed the server's certificate (turns TLS on).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", envvar="KESTREL_TLS_CERT", metavar="PEM",
                                  help="Client certificate for mutual TLS (with --tls-key).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", envvar="KESTREL_TLS_KEY", metavar="PEM", help="Key of --tls-cert.")
    ] = None,
) -> None:
    """Kestrel: run Kestra-style YAML flows on a gRPC control plane and workers.

    Client commands, `kestrel worker` and `kestrel dashboard` authenticate with --token (or
    KESTREL_TOKEN) and speak TLS with --tls-ca [--tls-cert --tls-key] (or KESTREL_TLS_*), given
    before the command: `kestrel --token $T flow list`.
    """
    global _connection
    _connection = Connection.from_env(token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)


# -- server, db, worker ---------------------------------------------------------------------


@server_app.command("local")
def server_local(
    port: Annotated[int, typer.Option(help="gRPC port to listen on.", min=0, max=65535)] = 6570,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where Postgres, Redis and files keep their data.")
    ] = Path(".kestrel"),
    workers: Annotated[int, typer.Option(help="Local worker processes to start.", min=0)] = 2,
    flows: Annotated[
        Path | None,
        typer.Option(help="Deploy every flow under this directory at start.", exists=True, file_okay=False),
    ] = None,
    dashboard: Annotated[
        bool, typer.Option("--dashboard/--no-dashboard", help="Also serve the web dashboard.")
    ] = True,
    dashboard_port: Annotated[
        int, typer.Option("--dashboard-port", help="HTTP port of the dashboard.", min=1, max=65535)
    ] = 8501,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Port of the Prometheus /metrics endpoint \\[default: none].",
                     min=0, max=65535),
    ] = None,
    auth: Annotated[
        bool, typer.Option("--auth/--no-auth", help="Require API tokens; the admin token is kept in "
                           "<data dir>/admin.token and given to the local workers and dashboard \\[default: off].")
    ] = False,
) -> None:
    """Run everything on this machine: embedded Postgres and Redis, the control plane, workers
    and the dashboard (http://127.0.0.1:8501 unless --no-dashboard).

    Data survives a restart with the same --data-dir.
    """
    run_local = _import("controlplane.local", "run_local")
    if metrics_port:  # the local stack's Settings read KESTREL_* variables
        os.environ["KESTREL_METRICS_PORT"] = str(metrics_port)
    extra: dict[str, Any] = {}  # run_local serves the dashboard on 8501 unless told otherwise
    if not dashboard:
        extra["dashboard_port"] = None
    elif dashboard_port != 8501:
        extra["dashboard_port"] = dashboard_port
    with _process_errors():
        if auth:
            extra["auth"] = True
        run_local(port=port, data_dir=data_dir, workers=workers, flows_dir=flows, **extra)


@server_app.command("standalone")
def server_standalone(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="SQLAlchemy URL of Postgres \\[default: $KESTREL_DATABASE_URL or the built-in default].",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            metavar="URL",
            help="Redis URL \\[default: $KESTREL_REDIS_URL or the built-in default].",
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="gRPC port \\[default: $KESTREL_PORT or 6570].", min=0, max=65535)
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind \\[default: $KESTREL_HOST or 127.0.0.1].")
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option("--http-port", help="HTTP port for Webhook triggers \\[default: $KESTREL_HTTP_PORT, else none].",
                     min=0, max=65535),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Port of the Prometheus /metrics endpoint "
                     "\\[default: $KESTREL_METRICS_PORT, else none].", min=0, max=65535),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", envvar="KESTREL_NO_AUTH",
                     help="Serve every call WITHOUT an API token (a loud warning is logged). Without it the server "
                     "refuses to start unless the database holds a usable token (`kestrel token create`) or "
                     "KESTREL_BOOTSTRAP_TOKEN is set."),
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", envvar="KESTREL_TLS_CERT", metavar="PEM",
                                  help="Server certificate chain (turns TLS on, with --tls-key).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", envvar="KESTREL_TLS_KEY", metavar="PEM", help="Key of --tls-cert.")
    ] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option("--tls-client-ca", envvar="KESTREL_TLS_CLIENT_CA", metavar="PEM",
                                  help="Require client certificates signed by this CA (mutual TLS).")
    ] = None,
) -> None:
    """Run one control-plane replica on an external Postgres and Redis.

    Authentication is on: every call needs an API token (see `kestrel token create`), unless
    --no-auth. Every setting can also come from KESTREL_* environment variables; flags win.
    """
    settings = _settings(database_url=database_url, redis_url=redis_url, port=port, host=host, http_port=http_port,
                         metrics_port=metrics_port, auth_enabled=not no_auth, tls_cert=tls_cert, tls_key=tls_key,
                         tls_client_ca=tls_client_ca)
    run_standalone = _import("controlplane.server", "run_standalone")
    with _process_errors():
        run_standalone(settings)


@db_app.command("migrate")
def db_migrate(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="SQLAlchemy URL of Postgres \\[default: $KESTREL_DATABASE_URL or the built-in default].",
        ),
    ] = None,
) -> None:
    """Apply the database migrations (the servers also do this when they start)."""
    url = _settings(database_url=database_url).database_url
    upgrade = _import("controlplane.store.migrations", "upgrade")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    shown = make_url(url).render_as_string(hide_password=True)
    with _process_errors():
        try:
            upgrade(url)
        except SQLAlchemyError as err:
            detail = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            _fail(f"cannot migrate the database at {shown}: {detail}")
    typer.echo(f"database at {shown} is up to date")


@app.command("worker")
def worker(
    server: ServerOption = DEFAULT_SERVER,
    concurrency: Annotated[int, typer.Option(help="Task runs executed at once.", min=1)] = 4,
    group: Annotated[
        str | None, typer.Option("--group", metavar="NAME", help="Worker group (Kestra workerGroup.key).")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", metavar="KEY=VALUE", help="Worker label; repeatable.")
    ] = None,
    module: Annotated[
        list[str] | None,
        typer.Option(
            "--module", metavar="MODULE", help="Import this module to register custom tasks; repeatable."
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", show_default=False,
                                 help="API token of the worker \\[default: kestrel --token, else $KESTREL_TOKEN].")
    ] = None,
    tls_ca: Annotated[Path | None, typer.Option("--tls-ca", metavar="PEM", help="CA of the server certificate.")] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", metavar="PEM", help="Worker certificate for mutual TLS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", metavar="PEM", help="Key of --tls-cert.")] = None,
) -> None:
    """Run a worker that long-polls the control plane for task runs."""
    import dataclasses

    overrides = {"token": token, "tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key}
    connection = dataclasses.replace(_conn(), **{k: v for k, v in overrides.items() if v is not None})
    labels = parse_labels(label or [])
    run_worker = _import("worker_sdk.worker", "run_worker")
    with _process_errors():
        run_worker(
            server=server,
            concurrency=concurrency,
            worker_group=group or "",
            labels=labels,
            modules=list(module or []),
            connection=connection,
        )


@app.command("workers")
def workers_list(
    state: Annotated[str, typer.Option(help="Only ACTIVE, STOPPED or DEAD workers.")] = "",
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List the workers the control plane knows: state, host, SDK, load, last heartbeat."""
    with _client(server, timeout) as client:
        workers = client.list_workers(state.upper())
    if not workers:
        _err.print("no workers" + (f" in state {state.upper()}" if state else ""))
        return
    table = Table(box=None, header_style="bold")
    for name in ("ID", "STATE", "HOST", "SDK", "GROUP", "RUNNING", "LAST HEARTBEAT", "TASK TYPES"):
        table.add_column(name, no_wrap=name in ("ID", "STATE"))
    now = datetime.now(UTC)
    for w in workers:
        seen = f"{(now - w.last_heartbeat_at).total_seconds():.0f} s ago" if w.last_heartbeat_at else ""
        table.add_row(
            Text(w.id), w.state, Text(w.hostname), Text(w.sdk), Text(w.worker_group),
            f"{w.running_task_runs}/{w.concurrency}", seen, Text(_short_types(w.task_types)),
        )
    _print_table(table)


def _short_types(task_types: list[str], limit: int = 3) -> str:
    """``Log, Return, Fail +12``: the last dotted part of the first few task types."""
    names = [t.rsplit(".", 1)[-1] for t in task_types]
    more = f" +{len(names) - limit}" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@app.command("dashboard")
def dashboard(
    server: ServerOption = DEFAULT_SERVER,
    port: Annotated[int, typer.Option(help="HTTP port of the dashboard.", min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option(help="Interface the dashboard binds.")] = "127.0.0.1",
) -> None:
    """Serve the web dashboard (Streamlit) of a control plane; it talks to it over gRPC only."""
    run_dashboard = _import("dashboard.launcher", "run_dashboard")
    os.environ.update(_conn().env())  # the dashboard process reads KESTREL_TOKEN / KESTREL_TLS_*
    typer.echo(f"Kestrel dashboard on http://{host}:{port} for the control plane at {server}", err=True)
    raise typer.Exit(run_dashboard(server, port, host))


def _settings(**overrides: Any) -> Any:
    """``controlplane.config.Settings`` from the environment, with non-``None`` flags on top."""
    from pydantic import ValidationError

    from controlplane.config import Settings, describe

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        _fail(describe(err), 2)


# -- flow -----------------------------------------------------------------------------------

FlowPaths = Annotated[
    list[Path],
    typer.Argument(metavar="PATH", help="Flow files, or directories searched for *.yml/*.yaml.", exists=True),
]


def _read_sources(paths: Sequence[Path]) -> list[Path]:
    files = collect_flow_files(paths)
    if not files:
        _fail("no flow files (*.yml, *.yaml) found in " + ", ".join(str(p) for p in paths))
    return files


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        typer.echo(f"error: {path}: cannot read: {err}", err=True)
        return None


@flow_app.command("validate")
def flow_validate(
    paths: FlowPaths,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Validate here, without a server (custom task types registered by workers are unknown).",
        ),
    ] = False,
    lenient: Annotated[
        bool,
        typer.Option(
            "--lenient-expressions",
            help="Accept expression errors (syntax, unknown task/input/variable) and literal errors (duplicate "
            "SLA ids, a Subflow scheduleDate that is not a date-time) as warnings, as Kestra does.",
        ),
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Check flows without storing them; print each problem as FILE:LINE:COL: error: message [field].

    Asks the server (which knows the task types its workers registered); with --local, checks
    with the built-in parser and catalogue only. Exits 1 when any flow is invalid.
    """
    files = _read_sources(paths)
    invalid = 0
    with contextlib.ExitStack() as stack:
        validate = _validate_locally if local else stack.enter_context(_client(server, timeout)).validate_flow
        for path in files:
            source = _read(path)
            if source is None:
                invalid += 1
                continue
            result = validate(source, lenient_expressions=lenient)
            for issue in result.errors:
                typer.echo(_issue_line(path, "error", issue.line, issue.column, issue.path, issue.message))
            for issue in result.warnings:
                typer.echo(_issue_line(path, "warning", issue.line, issue.column, issue.path, issue.message))
            if result.valid:
                name = f"{result.namespace}.{result.id}" if result.namespace and result.id else "flow"
                typer.echo(f"{path}: ok ({name})")
            else:
                invalid += 1
    if invalid:
        typer.echo(f"{invalid} of {len(files)} flow file(s) invalid", err=True)
        raise typer.Exit(1)


def _validate_locally(source: str, *, lenient_expressions: bool = False) -> ValidationResult:
    """Validate with the control plane's parser, catalogue and expression checks, in this process."""
    from controlplane.errors import FlowValidationError
    from controlplane.flows import check_task_types, parse_flow
    from controlplane.flows.features import not_applied_warnings
    from controlplane.flows.literal_checks import check_literals
    from controlplane.flows.static_checks import check_expressions, lenient_warning

    def issue(i: Any) -> ValidationIssue:
        return ValidationIssue(path=i.path, message=i.message, line=i.line or None, column=i.column or None)

    try:
        flow = parse_flow(source)
    except FlowValidationError as err:
        return ValidationResult(valid=False, errors=[issue(i) for i in err.issues])
    errors = check_task_types(flow, ())
    expression_errors, expression_warnings = check_expressions(flow)
    expression_errors += check_literals(flow)
    if lenient_expressions:
        expression_warnings = [lenient_warning(i) for i in expression_errors] + expression_warnings
    else:
        errors = sorted(errors + expression_errors, key=lambda i: i.line)
    return ValidationResult(
        valid=not errors,
        errors=[issue(i) for i in errors],
        warnings=[issue(i) for i in not_applied_warnings(flow) + expression_warnings],
        namespace=flow.namespace,
        id=flow.id,
    )


def _issue_line(path: Path, kind: str, line: int | None, column: int | None, field: str, message: str) -> str:
    where = str(path)
    if line:
        where += f":{line}" + (f":{column}" if column else "")
    suffix = f" [{field}]" if field else ""
    return f"{where}: {kind}: {message}{suffix}"


@flow_app.command("deploy")
def flow_deploy(
    paths: FlowPaths,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
    lenient: Annotated[
        bool,
        typer.Option(
            "--lenient-expressions",
            help="Accept expression errors (syntax, unknown task/input/variable) and literal errors (duplicate "
            "SLA ids, a Subflow scheduleDate that is not a date-time) as warnings, as Kestra does.",
        ),
    ] = False,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Store nothing: check each flow on the server, print its diff against the latest revision "
            "and the next 5 fire times of every schedule that changes.",
        ),
    ] = False,
) -> None:
    """Store flows as new revisions (a source identical to the latest revision stores nothing).

    Every file is tried; exits 1 if any failed (with --plan: if any is invalid).
    """
    files = _read_sources(paths)
    failed = 0
    with _client(server, timeout) as client:
        for path in files:
            source = _read(path)
            if source is None:
                failed += 1
                continue
            if plan:
                failed += 0 if _plan_one(client, path, source, lenient) else 1
                continue
            try:
                flow, created, warnings = client.deploy_flow(source, lenient_expressions=lenient)
            except UnavailableError:
                raise  # no point trying the other files
            except KestrelError as err:
                failed += 1
                typer.echo(f"error: {path}: {err}", err=True)
                continue
            status = "created" if created else "unchanged"
            typer.echo(f"{flow.uid} revision {flow.revision} ({status})")
            for warning in warnings:
                where = f":{warning.line}" if warning.line else ""
                typer.echo(f"warning: {path}{where}: {warning.message}", err=True)
    if failed:
        typer.echo(f"{failed} of {len(files)} flow file(s) not deployed", err=True)
        raise typer.Exit(1)


def _plan_one(client: KestrelClient, path: Path, source: str, lenient: bool) -> bool:
    """``flow deploy --plan`` for one file: validation by the server, the diff against the latest
    revision, and the next 5 fire times of each schedule trigger that is new or changed. Returns
    whether the flow is valid. Nothing is stored."""
    import difflib

    from controlplane.flows import parse_flow
    from controlplane.scheduler.triggers import definitions

    result = client.validate_flow(source, lenient_expressions=lenient)
    for issue in result.errors:
        typer.echo(_issue_line(path, "error", issue.line, issue.column, issue.path, issue.message))
    for issue in result.warnings:
        typer.echo(_issue_line(path, "warning", issue.line, issue.column, issue.path, issue.message))
    if not result.valid:
        return False
    flow = parse_flow(source)
    try:
        current = client.get_flow(flow.namespace, flow.id)
        old_source, label = current.source, f"revision {current.revision}"
    except NotFoundError:
        old_source, label = "", "new flow"
    if old_source == source:
        typer.echo(f"{flow.namespace}.{flow.id}: unchanged ({label}); nothing would be stored")
        return True
    typer.echo(f"{flow.namespace}.{flow.id}: {label} -> a new revision would be stored")
    diff = difflib.unified_diff(old_source.splitlines(), source.splitlines(), f"{label}", str(path), lineterm="")
    for line in diff:
        typer.echo(line)
    old_signatures: dict[str, str] = {}
    if old_source:
        with contextlib.suppress(Exception):  # an old revision this version can no longer read
            old_signatures = {d.id: d.signature for d in definitions(parse_flow(old_source))}
    now = datetime.now(UTC)
    for d in definitions(flow):
        if d.kind != "schedule" or old_signatures.get(d.id) == d.signature:
            continue
        times, instant = [], now
        for _ in range(5):
            instant = d.next_after(instant)
            if instant is None:
                break
            times.append(instant.isoformat().replace("+00:00", "Z"))
        state = " (disabled)" if d.disabled or flow.disabled else ""
        change = "changed" if d.id in old_signatures else "new"
        typer.echo(f"schedule '{d.id}' ({change}){state}: next fire times " + (", ".join(times) or "none"))
    return True


@flow_app.command("list")
def flow_list(
    namespace: Annotated[str, typer.Option(help="Namespace prefix (company matches company.team).")] = "",
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List the latest revision of each flow."""
    with _client(server, timeout) as client:
        flows = client.list_flows(namespace)
    if not flows:
        _err.print("no flows" + (f" under namespace {namespace}" if namespace else ""))
        return
    table = Table(box=None, header_style="bold")
    for name in ("NAMESPACE", "ID", "REVISION", "TASKS", "INPUTS", "LABELS", "DISABLED"):
        table.add_column(name, no_wrap=name in ("NAMESPACE", "ID"))
    for f in flows:
        table.add_row(
            Text(f.namespace),
            Text(f.id),
            str(f.revision),
            str(f.task_count),
            Text(", ".join(i.id for i in f.inputs)),
            Text(", ".join(f"{k}={v}" for k, v in f.labels.items())),
            "yes" if f.disabled else "",
        )
    _print_table(table)


@flow_app.command("get")
def flow_get(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE", help="The flow's namespace.")],
    flow_id: Annotated[str, typer.Argument(metavar="ID", help="The flow's id.")],
    revision: Annotated[int, typer.Option(help="Revision to show; 0 for the latest.", min=0)] = 0,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Print a flow's YAML source as registered (revision number on stderr)."""
    with _client(server, timeout) as client:
        flow = client.get_flow(namespace, flow_id, revision)
    _err.print(f"# {flow.uid} revision {flow.revision}")
    typer.echo(flow.source, nl=not flow.source.endswith("\n"))


# -- execution ------------------------------------------------------------------------------


@execution_app.command("run")
def execution_run(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE", help="The flow's namespace.")],
    flow_id: Annotated[str, typer.Argument(metavar="FLOW_ID", help="The flow's id.")],
    input_values: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="KEY=VALUE",
            help="Flow input; repeatable. Sent as text, the server converts it to the declared type. "
            "KEY=@path uploads a local file for a FILE input; KEY=@@x sends the literal @x.",
        ),
    ] = None,
    label_values: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", metavar="KEY=VALUE", help="Execution label; repeatable."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the end; exit 0 only for SUCCESS or WARNING.")
    ] = False,
    output: OutputOption = OutputFormat.text,
    revision: Annotated[int, typer.Option(help="Flow revision to run; 0 for the latest.", min=0)] = 0,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Start an execution of a flow; print its id, or with --wait its outcome."""
    inputs, files = split_file_inputs(input_values or [])
    labels = parse_labels(label_values or [])
    with _client(server, timeout) as client:
        for key, path in files.items():
            inputs[key] = client.upload_input_file(namespace, flow_id, key, path).uri
        execution = client.start_execution(
            namespace, flow_id, inputs=inputs, labels=labels, revision=revision
        )
        for name in sorted(n for n in inputs if n.split(".")[0] not in execution.inputs):
            # Kestra ignores inputs the flow does not declare; a typo would go unnoticed.
            _err.print(f"warning: input '{name}' is not declared by {namespace}.{flow_id}; it was ignored")
        if not wait:
            if output is OutputFormat.json:
                _print_json(execution.to_kestra_json())
            else:
                typer.echo(execution.id)
            return
        if output is OutputFormat.text:
            _err.print(f"execution {execution.id} of {execution.namespace}.{execution.flow_id} started")
        try:
            execution = _wait(client, execution)
        except KeyboardInterrupt:
            _fail(f"stopped waiting; execution {execution.id} goes on", 130)
    if output is OutputFormat.json:
        _print_json(execution.to_kestra_json())
    else:
        _print_execution(execution)
    if not execution.state.current.is_successful:
        raise typer.Exit(1)


def _wait(client: KestrelClient, execution: Execution) -> Execution:
    """Watches until terminal, with a transient progress line when stderr is a terminal."""
    if not _err.is_terminal:
        return client.wait_execution(execution.id)
    with _err.status(f"{execution.state.current} …") as status:
        for current in client.watch_execution(execution.id):
            done = sum(1 for t in current.task_runs if t.state.current.is_terminal)
            status.update(f"{current.state.current} · {done}/{len(current.task_runs)} task runs done")
            if current.is_terminal:
                return current
    return client.wait_execution(execution.id)  # stream closed early: fall back to re-watching


@execution_app.command("get")
def execution_get(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.")],
    output: OutputOption = OutputFormat.text,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Show an execution with its task runs."""
    with _client(server, timeout) as client:
        execution = client.get_execution(execution_id)
    if output is OutputFormat.json:
        _print_json(execution.to_kestra_json())
    else:
        _print_execution(execution)


@execution_app.command("logs")
def execution_logs(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the execution ends.")
    ] = False,
    level: Annotated[
        LevelName | None, typer.Option(case_sensitive=False, help="Only lines at or above this level.")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Print an execution's log lines: timestamp level taskId message."""
    min_level = LogLevel(level.value) if level else None
    with _client(server, timeout) as client:
        if follow:
            try:
                for entry in client.tail_logs(execution_id, min_level=min_level):
                    typer.echo(format_log_line(entry))
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
        else:
            for entry in client.list_logs(execution_id, min_level=min_level):
                typer.echo(format_log_line(entry))


@execution_app.command("list")
def execution_list(
    namespace: Annotated[str, typer.Option(help="Namespace prefix.")] = "",
    flow: Annotated[str, typer.Option("--flow", metavar="ID", help="Only this flow's executions.")] = "",
    state: Annotated[
        list[StateName] | None,
        typer.Option("--state", case_sensitive=False, help="Only executions in this state; repeatable."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Most executions to show, newest first.", min=1)] = 50,
    output: OutputOption = OutputFormat.text,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List executions, newest first."""
    states = [s.value for s in state or []]
    with _client(server, timeout) as client:
        executions: list[Execution] = []
        for execution in client.iter_executions(namespace, flow, states, page_size=min(limit, 500)):
            executions.append(execution)
            if len(executions) >= limit:
                break
    if output is OutputFormat.json:
        _print_json([e.to_kestra_json() for e in executions])
        return
    if not executions:
        _err.print("no executions")
        return
    table = Table(box=None, header_style="bold")
    for name in ("ID", "NAMESPACE", "FLOW", "REV", "STATE", "STARTED", "DURATION"):
        table.add_column(name, no_wrap=True)
    for e in executions:
        table.add_row(
            Text(e.id),
            Text(e.namespace),
            Text(e.flow_id),
            str(e.flow_revision),
            _state_text(e.state.current),
            _iso(e.start_date or e.state.start_date),
            format_duration(e.duration),
        )
    _print_table(table)


@execution_app.command("kill")
def execution_kill(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Kill an execution: pending task runs are killed, running ones asked to stop."""
    with _client(server, timeout) as client:
        execution = client.kill_execution(execution_id)
    typer.echo(f"{execution.id} {execution.state.current}")


@execution_app.command("resume")
def execution_resume(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id (PAUSED).")],
    input_values: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", metavar="KEY=VALUE",
                     help="An onResume input of the Pause task; repeatable, converted by the server."),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Resume a paused execution, answering its Pause task's onResume inputs."""
    try:
        inputs = parse_inputs(input_values or [])
    except FileInputNotSupportedError as err:
        _fail(str(err), 2)
    with _client(server, timeout) as client:
        execution = client.resume_execution(execution_id, inputs)
    typer.echo(f"{execution.id} {execution.state.current}")


@execution_app.command("restart")
def execution_restart(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id (FAILED or KILLED).")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Restart a failed or killed execution in place: its failed task runs run again."""
    with _client(server, timeout) as client:
        execution = client.restart_execution(execution_id)
    typer.echo(f"{execution.id} {execution.state.current}")


@execution_app.command("replay")
def execution_replay(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id (terminated).")],
    task_run_id: Annotated[str, typer.Option("--task-run", metavar="TASK_RUN_ID",
                                             help="Replay from this task run (see `execution get`).")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Replay an execution from one of its task runs as a new execution; print the new id."""
    with _client(server, timeout) as client:
        execution = client.replay_execution(execution_id, task_run_id)
    typer.echo(f"{execution.id} {execution.state.current}")


@execution_app.command("labels")
def execution_labels(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.")],
    label_values: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", metavar="KEY=VALUE", help="Label; repeatable. Replaces all labels."),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Replace an execution's labels (system.* labels are kept)."""
    labels = parse_labels(label_values or [])
    with _client(server, timeout) as client:
        execution = client.set_execution_labels(execution_id, labels)
    for key, value in sorted(execution.labels.items()):
        typer.echo(f"{key}={value}")


# -- rendering ------------------------------------------------------------------------------


@execution_app.command("files")
def execution_files(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.")],
    output: OutputOption = OutputFormat.text,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List the files an execution's task runs wrote to internal storage (URI, size, sha256)."""
    with _client(server, timeout) as client:
        files = client.list_execution_files(execution_id)
    if output is OutputFormat.json:
        _print_json([{"uri": f.uri, "size": f.size, "sha256": f.sha256, "taskRunId": f.task_run_id} for f in files])
        return
    for f in files:
        typer.echo(f"{f.uri}\t{f.size}\t{f.sha256}")


@execution_app.command("download")
def execution_download(
    uri: Annotated[str, typer.Argument(metavar="URI", help="kestra:/// URI of the file.")],
    out: Annotated[Path, typer.Option("--output-file", "-o", help="Where to write it (file path).")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Download one internal-storage file (streamed; its sha256 is checked)."""
    with _client(server, timeout) as client:
        try:
            info = client.download_file(uri, out)
        except OSError as err:
            _fail(str(err))
    typer.echo(f"{out} {info.size} bytes sha256 {info.sha256}")


def _kv_value(value: str, kv_type: str | None) -> Any:
    """A CLI value: JSON when it parses (numbers, booleans, maps) unless typed STRING."""
    if kv_type is not None and kv_type.upper() == "STRING":
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


@kv_app.command("set")
def kv_set(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    key: Annotated[str, typer.Argument(metavar="KEY")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="JSON when it parses, else text.")],
    kv_type: Annotated[str | None, typer.Option("--type", help="STRING, NUMBER, BOOLEAN, DATETIME, DATE, "
                                                "DURATION or JSON (default: from the value).")] = None,
    ttl: Annotated[float, typer.Option("--ttl", help="Seconds to live; 0 = never expires.", min=0)] = 0.0,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite")] = True,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Store a value in a namespace's KV store."""
    with _client(server, timeout) as client:
        try:
            entry = client.kv_set(namespace, key, _kv_value(value, kv_type), kv_type=kv_type, overwrite=overwrite,
                                  ttl_seconds=ttl)
        except ValueError as err:
            _fail(str(err), 2)
    typer.echo(f"{entry.namespace} {entry.key} {entry.type}")


@kv_app.command("get")
def kv_get(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    key: Annotated[str, typer.Argument(metavar="KEY")],
    inherit: Annotated[bool, typer.Option("--inherit", help="Search the parent namespaces too.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Print a value as JSON."""
    with _client(server, timeout) as client:
        entry = client.kv_get(namespace, key, inherit=inherit)
    typer.echo(json.dumps(entry.value, ensure_ascii=False))


@kv_app.command("ls")
def kv_ls(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    prefix: Annotated[str, typer.Option("--prefix", help="Only keys starting with this.")] = "",
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List a namespace's keys: key, type, expiry."""
    with _client(server, timeout) as client:
        entries = client.kv_list(namespace, prefix)
    for entry in entries:
        typer.echo(f"{entry.key}\t{entry.type}\t{_iso(entry.expires_at) or '-'}")


@namespace_files_app.command("upload")
def namespace_files_upload(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Files or directories (recursive).")],
    to: Annotated[str, typer.Option("--to", help="Folder under the namespace files (default: the root).")] = "",
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Upload files as namespace files; a directory keeps its relative layout."""
    pairs: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            pairs += [(f, f.relative_to(path).as_posix()) for f in sorted(path.rglob("*")) if f.is_file()]
        elif path.is_file():
            pairs.append((path, path.name))
        else:
            _fail(f"no such file or directory: {path}", 2)
    prefix = to.strip("/")
    with _client(server, timeout) as client:
        for local, relative in pairs:
            info = client.upload_namespace_file(namespace, f"{prefix}/{relative}" if prefix else relative, local)
            typer.echo(f"{info.uri}\t{info.size}")


@namespace_files_app.command("ls")
def namespace_files_ls(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    prefix: Annotated[str, typer.Option("--prefix", help="Only paths starting with this.")] = "",
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List a namespace's files: URI, size, sha256."""
    with _client(server, timeout) as client:
        files = client.list_namespace_files(namespace, prefix)
    for f in files:
        typer.echo(f"{f.uri}\t{f.size}\t{f.sha256}")


@namespace_files_app.command("download")
def namespace_files_download(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    path: Annotated[str, typer.Argument(metavar="PATH", help="The file's path under the namespace files.")],
    out: Annotated[Path, typer.Option("--output-file", "-o", help="Where to write it.")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Download one namespace file."""
    prefix = "kestra:///" + namespace.replace(".", "/") + "/_files/"
    with _client(server, timeout) as client:
        matches = [f for f in client.list_namespace_files(namespace, path.lstrip("/")) if
                   f.uri.removeprefix(prefix) == quote(path.lstrip("/"), safe="/@=+,;:!$&'()*~-._")]
        if not matches:
            _fail(f"no namespace file '{path}' in namespace '{namespace}'")
        client.download_file(matches[0].uri, out)
    typer.echo(f"{out} {matches[0].size} bytes")


@namespace_files_app.command("rm")
def namespace_files_rm(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    path: Annotated[str, typer.Argument(metavar="PATH")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Delete one namespace file (exit 1 when there was none)."""
    uri = "kestra:///" + namespace.replace(".", "/") + "/_files/" + quote(path.lstrip("/"), safe="/@=+,;:!$&'()*~-._")
    with _client(server, timeout) as client:
        if not client.delete_file(uri):
            _fail(f"no namespace file '{path}' in namespace '{namespace}'")
    typer.echo(f"deleted {uri}")


@kv_app.command("rm")
def kv_rm(
    namespace: Annotated[str, typer.Argument(metavar="NAMESPACE")],
    key: Annotated[str, typer.Argument(metavar="KEY")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Delete a key (exit 1 when there was none)."""
    with _client(server, timeout) as client:
        deleted = client.kv_delete(namespace, key)
    if not deleted:
        _fail(f"no key '{key}' in namespace '{namespace}'")
    typer.echo(f"deleted {namespace} {key}")


def _iso(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _state_text(state: State) -> Text:
    return Text(state.value, style=_STATE_STYLES.get(state, ""))


def _print_table(table: Table) -> None:
    """Prints a table; piped output is not wrapped at 80 columns (rich's default off a terminal)."""
    (_out if _out.is_terminal else _piped).print(table)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _print_execution(execution: Execution) -> None:
    """The text form of an execution: header, task runs, outputs, errors."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Execution", Text(execution.id))
    head.add_row(
        "Flow", Text(f"{execution.namespace}.{execution.flow_id} (revision {execution.flow_revision})")
    )
    state = _state_text(execution.state.current)
    if execution.duration is not None:
        state.append(f" in {format_duration(execution.duration)}")
    head.add_row("State", state)
    head.add_row("Started", _iso(execution.start_date or execution.state.start_date))
    if execution.labels:
        head.add_row("Labels", Text(", ".join(f"{k}={v}" for k, v in execution.labels.items())))
    if execution.inputs:
        head.add_row("Inputs", Text(json.dumps(execution.inputs, ensure_ascii=False)))
    if execution.error:
        head.add_row("Error", Text(execution.error, style="red"))
    _print_table(head)

    if execution.task_runs:
        table = Table(box=None, header_style="bold", padding=(0, 2, 0, 0))
        for name in ("TASK", "STATE", "DURATION", "ATTEMPTS", "OUTPUTS"):
            table.add_column(name, no_wrap=name not in ("TASK", "OUTPUTS"))
        for run in execution.task_runs:
            name = Text(run.task_id + (f" [{run.value}]" if run.value is not None else ""))
            outputs = json.dumps(run.outputs, ensure_ascii=False) if run.outputs else ""
            table.add_row(
                name,
                _state_text(run.state.current),
                format_duration(run.duration),
                str(len(run.attempts)),
                Text(outputs if len(outputs) <= 120 else outputs[:117] + "..."),
            )
        _out.print()
        _print_table(table)
        failed = [r for r in execution.task_runs if r.error]
        for run in failed:
            _out.print(Text(f"{run.task_id}: {run.error}", style="red"))

    if execution.outputs:
        _out.print()
        _out.print(Text("Outputs", style="bold"))
        _out.print(Text(json.dumps(execution.outputs, indent=2, ensure_ascii=False)))


def main() -> None:  # pragma: no cover - `python -m controlplane.cli`
    """Entry point for ``python -m controlplane.cli``."""
    app(prog_name="kestrel")


@trigger_app.command("list")
def trigger_list(
    namespace: Annotated[str, typer.Option(help="Namespace prefix (company matches company.team).")] = "",
    flow: Annotated[str, typer.Option(help="Only the triggers of this flow id.")] = "",
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List triggers with their next fire time (schedules) and whether they are enabled."""
    from controlplane.api.triggers import list_triggers

    with _client(server, timeout) as client:
        triggers = list_triggers(client, namespace, flow)
    if not triggers:
        _err.print("no triggers")
        return
    table = Table(box=None, header_style="bold")
    for name in ("NAMESPACE", "FLOW", "TRIGGER", "TYPE", "ENABLED", "NEXT FIRE (UTC)", "NOTE"):
        table.add_column(name, no_wrap=name in ("NAMESPACE", "FLOW", "TRIGGER"))
    for t in triggers:
        table.add_row(Text(t.namespace), Text(t.flow_id), Text(t.trigger_id), Text(t.type.rsplit(".", 1)[-1]),
                      "yes" if t.enabled else "no",
                      t.next_fire_time.strftime("%Y-%m-%d %H:%M:%S") if t.next_fire_time else "",
                      Text(t.disabled_reason))
    _print_table(table)


def _toggle(namespace: str, flow_id: str, trigger_id: str, enabled: bool, server: str, timeout: float) -> None:
    from controlplane.api.triggers import set_trigger_enabled

    with _client(server, timeout) as client:
        t = set_trigger_enabled(client, namespace, flow_id, trigger_id, enabled)
    state = "enabled" if t.enabled else "disabled"
    nxt = f"; next fire {t.next_fire_time:%Y-%m-%d %H:%M:%S} UTC" if t.next_fire_time else ""
    typer.echo(f"trigger {t.namespace}.{t.flow_id}/{t.trigger_id} {state}{nxt}")


@trigger_app.command("enable")
def trigger_enable(
    namespace: Annotated[str, typer.Argument(help="Flow namespace.")],
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    trigger_id: Annotated[str, typer.Argument(help="Trigger id.")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Enable a trigger (a schedule resumes from now; missed ticks are not fired)."""
    _toggle(namespace, flow_id, trigger_id, True, server, timeout)


@trigger_app.command("backfill")
def trigger_backfill(
    namespace: Annotated[str, typer.Argument(help="Flow namespace.")],
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    trigger_id: Annotated[str, typer.Argument(help="Schedule trigger id.")],
    start: Annotated[
        str | None, typer.Option(help="First date, ISO-8601 with offset (2024-01-31T00:00:00Z).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Last date (default: now).")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="pause, resume or delete the backfill in progress.")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Start a backfill of a schedule (--start [--end]): every tick in between runs once,
    labelled system.backfill=true; or --action pause|resume|delete the one in progress."""
    from controlplane.api.triggers import change_backfill, start_backfill

    if (start is None) == (action is None):
        _fail("give either --start (to start a backfill) or --action pause|resume|delete", 2)
    if action is not None and action not in ("pause", "resume", "delete"):
        _fail(f"--action: '{action}' is not one of pause, resume, delete", 2)
    dates = []
    for name, text in (("--start", start), ("--end", end)):
        if text is None:
            dates.append(None)
            continue
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            _fail(f"{name}: '{text}' is not an ISO-8601 date-time such as 2024-01-31T00:00:00Z", 2)
        if value.tzinfo is None:
            _fail(f"{name}: '{text}' needs an offset (Z or +02:00)", 2)
        dates.append(value)
    with _client(server, timeout) as client:
        if action is not None:
            t = change_backfill(client, namespace, flow_id, trigger_id, action)
        else:
            t = start_backfill(client, namespace, flow_id, trigger_id, dates[0], dates[1])
    if t.backfill_next is None:
        typer.echo(f"trigger {t.namespace}.{t.flow_id}/{t.trigger_id}: no backfill in progress")
    else:
        state = "paused" if t.backfill_paused else "running"
        typer.echo(f"trigger {t.namespace}.{t.flow_id}/{t.trigger_id}: backfill {state}, next "
                   f"{t.backfill_next:%Y-%m-%dT%H:%M:%SZ}, until {t.backfill_end:%Y-%m-%dT%H:%M:%SZ}")


@trigger_app.command("disable")
def trigger_disable(
    namespace: Annotated[str, typer.Argument(help="Flow namespace.")],
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    trigger_id: Annotated[str, typer.Argument(help="Trigger id.")],
    server: ServerOption = DEFAULT_SERVER,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Disable a trigger: it fires no more until enabled."""
    _toggle(namespace, flow_id, trigger_id, False, server, timeout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# -- token ----------------------------------------------------------------------------------

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option("--database-url", metavar="URL",
                 help="SQLAlchemy URL of Postgres \\[default: $KESTREL_DATABASE_URL or the built-in default]."),
]


class RoleName(StrEnum):
    """Roles of ``kestrel token create --role``."""

    admin = "admin"
    client = "client"
    worker = "worker"


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` or an ISO-8601 duration (``P30D``) as a timedelta.

    Raises:
        typer.BadParameter: anything else, or a duration that is not positive.
    """
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        value = timedelta(**{unit: float(match.group(1))})
    else:
        from controlplane.flows.durations import parse_duration as iso

        try:
            value = timedelta(seconds=iso(text))
        except Exception:
            raise typer.BadParameter(f"'{text}' is not a duration (e.g. 90s, 15m, 12h, 30d, 2w or P30D)") from None
    if value.total_seconds() <= 0:
        raise typer.BadParameter(f"'{text}' is not a positive duration")
    return value


def _token_db(database_url: str | None, action):
    """Migrate the database and run ``action(conn)`` in one transaction; errors end the command."""
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from controlplane.store.migrations import upgrade

    url = _settings(database_url=database_url).database_url

    async def run():
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                return await action(conn)
        finally:
            await engine.dispose()

    with _process_errors():
        upgrade(url)
        return asyncio.run(run())


@token_app.command("create")
def token_create(
    role: Annotated[RoleName, typer.Option("--role", help="admin: everything; client: the API within --namespace; "
                                           "worker: the worker protocol.")] = RoleName.client,
    namespace: Annotated[str, typer.Option("--namespace", help="Scope: this namespace and its children "
                                           "\\[default: every namespace].")] = "",
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", metavar="DURATION", help="Lifetime: 90s, 15m, 12h, 30d, 2w or "
                                 "P30D \\[default: no expiry].")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="A label shown by `token ls`.")] = "",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create an API token and print it once (only its SHA-256 is stored).

    The first admin token of a fresh database is made this way, where the database is
    reachable: `kestrel token create --role admin --name first-admin --database-url URL`.
    """
    from controlplane.auth import store
    from controlplane.auth.tokens import Role

    lifetime = parse_duration(expires_in) if expires_in else None
    text, info = _token_db(database_url, lambda conn: store.create_token(conn, Role(role.value), namespace, name,
                                                                       lifetime))
    scope = info.namespace or "every namespace"
    expiry = f", expires {_iso(info.expires_at)}" if info.expires_at else ""
    _err.print(f"created {info.role.value} token {info.id} for {scope}{expiry}; it is shown once, store it now:")
    typer.echo(text)


@token_app.command("ls")
def token_ls(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """List API tokens (id, name, role, namespace, expiry, status); never the tokens themselves."""
    from controlplane.auth import store

    rows = _token_db(database_url, lambda conn: store.list_tokens(conn, include_revoked=all_))
    if output is OutputFormat.json:
        _print_json([{"id": r.id, "name": r.name, "role": r.role.value, "namespace": r.namespace,
                      "created_at": _iso(r.created_at), "expires_at": _iso(r.expires_at),
                      "revoked_at": _iso(r.revoked_at), "status": r.status()} for r in rows])
        return
    if not rows:
        _err.print("no API tokens")
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "ROLE", "NAMESPACE", "CREATED", "EXPIRES", "STATUS"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.id, Text(r.name), r.role.value, Text(r.namespace or "*"), _iso(r.created_at),
                      _iso(r.expires_at), r.status())
    _print_table(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (from `token ls`).")],
    database_url: DatabaseUrlOption = None,
) -> None:
    """Revoke an API token: every server refuses it within KESTREL_AUTH_CACHE_SECONDS (5 s)."""
    from controlplane.auth import store

    info = _token_db(database_url, lambda conn: store.revoke_token(conn, token_id))
    typer.echo(f"revoked token {info.id} ({info.role.value}, {info.namespace or 'every namespace'})")
