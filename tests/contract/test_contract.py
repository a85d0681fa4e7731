"""Runs the worker contract conformance suite (``scenarios.yaml``) against a live control plane,
once with Python SDK workers and once with Node.js SDK workers, plus the mixed-fleet scenario.

The control plane is real (``tests/integration/harness.ServerThread`` on Postgres and Redis);
workers are separate OS processes of the SDK under test (``python -m worker_sdk --module
tests.contract.python_tasks`` / ``node tests/contract/node_worker.js serve``); scenarios that
hold a task token by hand use the SDK's probe (``python_probe.py`` / ``node_worker.js probe``).
The Node side is skipped, saying why, when ``node`` is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kestrel.v1 import execution_pb2
from tests.integration.harness import REPO, ServerThread, wait_until
from tests.integration.harness import test_settings as harness_settings
from tests.integration.rpc import Stubs, connect, state_name

HERE = Path(__file__).resolve().parent
_YAML = YAML(typ="safe", pure=True)
SUITE = _YAML.load((HERE / "scenarios.yaml").read_text(encoding="utf-8"))
NODE = shutil.which("node")
NODE_SDK = REPO / "worker_sdk" / "node"
SDKS = ("python", "node")
TERMINAL = {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "RETRIED", "SKIPPED"}
WAIT_SECONDS = 60.0


def _node_missing() -> str | None:
    """Why the Node side cannot run here, or None."""
    if NODE is None:
        return "node is not installed: the Node.js SDK side of the contract suite needs Node.js 20+"
    if not (NODE_SDK / "node_modules" / "@grpc" / "grpc-js").is_dir():
        why = "worker_sdk/node has no node_modules: run `npm ci --prefix worker_sdk/node`"
        if os.environ.get("CI") and shutil.which("npm"):
            pytest.fail(why)  # .ci/run installs them whenever npm exists: a missing install is a CI defect
        return why
    return None


def _cases() -> Iterator[Any]:
    for scenario in SUITE["scenarios"]:
        for sdk in scenario.get("sdks", SDKS):
            marks = [pytest.mark.skipif(NODE is None, reason="node is not installed")] if sdk != "python" else []
            yield pytest.param(scenario, sdk, id=f"{scenario['id']}-{sdk}", marks=marks)


# ---------------------------------------------------------------------- processes


@dataclass
class WorkerProc:
    """One SDK worker process; its stderr goes to a file the steps can search."""

    name: str
    sdk: str
    proc: subprocess.Popen
    log_path: Path
    frozen: bool = False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _worker_command(sdk: str, address: str, concurrency: int, group: str, grace: float) -> list[str]:
    if sdk == "python":
        return [sys.executable, "-m", "worker_sdk", "--server", address, "--concurrency", str(concurrency),
                "--worker-group", group, "--shutdown-grace", str(grace), "--module", "tests.contract.python_tasks"]
    if sdk == "node":
        assert NODE is not None
        return [NODE, str(HERE / "node_worker.js"), "serve", "--server", address, "--concurrency", str(concurrency),
                "--worker-group", group, "--shutdown-grace", str(grace)]
    raise AssertionError(f"unknown sdk {sdk!r}")


def _probe_command(sdk: str, address: str) -> list[str]:
    if sdk == "python":
        return [sys.executable, "-m", "tests.contract.python_probe", "--server", address]
    assert NODE is not None
    return [NODE, str(HERE / "node_worker.js"), "probe", "--server", address]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


class Probe:
    """A probe process: one JSON command a line in, one JSON answer a line out."""

    def __init__(self, sdk: str, address: str) -> None:
        self.proc = subprocess.Popen(
            _probe_command(sdk, address), cwd=REPO, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, encoding="utf-8",
        )

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"probe exited (code {self.proc.poll()}) on {command}"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------- expected values


def expand(value: Any) -> Any:
    """Expands ``{$repeat, $times}`` and ``{$lines, $count}`` in expected values (see scenarios.yaml)."""
    if isinstance(value, dict):
        if set(value) == {"$repeat", "$times"}:
            return value["$repeat"] * value["$times"]
        if set(value) == {"$lines", "$count"}:
            return [value["$lines"].format(i=i) for i in range(1, value["$count"] + 1)]
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def _same(actual: Any, expected: Any) -> bool:
    """JSON equality that also tells 1 from 1.0 and True from 1; an expected ``{$match: REGEX}``
    matches any string that the regular expression matches in full."""
    if isinstance(expected, dict) and set(expected) == {"$match"}:
        return isinstance(actual, str) and re.fullmatch(expected["$match"], actual, re.S) is not None
    if isinstance(expected, dict):
        return isinstance(actual, dict) and set(actual) == set(expected) and all(
            _same(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _same(a, e) for a, e in zip(actual, expected, strict=True))
    return json.dumps(actual) == json.dumps(expected)


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


# ---------------------------------------------------------------------- the scenario runner


@dataclass
class Run:
    """State of one scenario run for one SDK."""

    scenario: dict[str, Any]
    sdk: str
    server: ServerThread
    stubs: Stubs
    tmp: Path
    workers: dict[str, WorkerProc] = field(default_factory=dict)
    executions: dict[str, str] = field(default_factory=dict)
    saved: dict[str, Any] = field(default_factory=dict)
    probe: Probe | None = None
    deployed: bool = False

    @property
    def namespace(self) -> str:
        return f"contract.{self.sdk}"

    # -- helpers

    def context(self) -> str:
        """Worker logs for failure messages."""
        parts = []
        for w in self.workers.values():
            tail = "\n".join(w.log().splitlines()[-25:])
            parts.append(f"--- worker {w.name} ({w.sdk}, pid {w.proc.pid}, exit {w.proc.poll()}) ---\n{tail}")
        return "\n".join(parts)

    def fail(self, message: str) -> None:
        pytest.fail(f"[{self.scenario['id']} / {self.sdk}] {message}\n{self.context()}", pytrace=False)

    def execution(self, spec: dict[str, Any]) -> tuple[str, str]:
        name = spec.get("execution", "main")
        if name not in self.executions:
            self.fail(f"execution {name!r} was not started")
        return name, self.executions[name]

    def worker_id_matches(self, worker_id: str, name: str) -> bool:
        if name == "probe":
            return worker_id == self.saved.get("probe")
        w = self.workers.get(name)
        return w is not None and f"-{w.proc.pid}-" in worker_id

    def describe(self, ex: execution_pb2.Execution) -> str:
        rows = [f"execution {ex.id}: {state_name(ex.state.current)} {ex.error}"]
        for tr in ex.task_runs:
            attempts = ", ".join(
                f"#{a.attempt} {state_name(a.state.current)} {a.reason or ''} on {a.worker_id}" for a in tr.attempts
            )
            rows.append(f"  {tr.task_id}: {state_name(tr.state.current)} outputs={_short(tr.outputs_json, 120)} "
                        f"error={tr.error!r} [{attempts}]")
        return "\n".join(rows)

    # -- steps

    def step(self, step: dict[str, Any]) -> None:
        (kind, arg), = step.items()
        getattr(self, f"do_{kind}")(arg if arg is not None else {})

    def do_start_worker(self, arg: Any) -> None:
        spec = {"name": arg} if isinstance(arg, str) else dict(arg)
        name, sdk = spec["name"], spec.get("sdk", self.sdk)
        log_path = self.tmp / f"worker-{name}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                _worker_command(sdk, self.server.address, int(spec.get("concurrency", 4)),
                                spec.get("worker_group", ""), float(spec.get("shutdown_grace", 5))),
                cwd=REPO, env=_env(), stdout=log_file, stderr=subprocess.STDOUT,
            )
        worker = WorkerProc(name, sdk, proc, log_path)
        self.workers[name] = worker
        deadline = time.monotonic() + WAIT_SECONDS
        while "registered with" not in worker.log():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.fail(f"worker {name} ({sdk}) did not register")
            time.sleep(0.05)

    def do_start(self, arg: dict[str, Any]) -> None:
        if not self.deployed:  # after the workers registered: the server checks the flow's task types
            self.stubs.deploy(self.scenario["flow"].replace("namespace: contract\n", f"namespace: {self.namespace}\n"))
            self.deployed = True
        flow_id = _YAML.load(self.scenario["flow"])["id"]
        ex = self.stubs.start(self.namespace, flow_id, inputs=arg.get("inputs", {}))
        self.executions[arg.get("execution", "main")] = ex.id

    def do_wait_running(self, arg: dict[str, Any]) -> None:
        _, ex_id = self.execution(arg)

        def running() -> bool:
            for tr in self.stubs.get(ex_id).task_runs:
                if tr.task_id != arg["task"]:
                    continue
                for a in tr.attempts:
                    if a.attempt == arg.get("attempt", 1) and state_name(a.state.current) == "RUNNING":
                        if "worker" in arg and not self.worker_id_matches(a.worker_id, arg["worker"]):
                            self.fail(f"attempt {a.attempt} of {arg['task']} runs on {a.worker_id}, not {arg['worker']}")
                        return True
            return False

        try:
            wait_until(running, timeout=WAIT_SECONDS, what=f"{arg['task']} running")
            if arg.get("held"):
                wait_until(lambda: self._heartbeated(ex_id, arg["task"]), timeout=WAIT_SECONDS,
                           what=f"{arg['task']}: a heartbeat from its worker")
        except AssertionError as exc:
            self.fail(f"{exc}\n{self.describe(self.stubs.get(ex_id))}")

    def _heartbeated(self, execution_id: str, task_id: str) -> bool:
        """The worker holds the attempt (not just a claim whose response may still be in flight):
        a heartbeat moved the lease past the one the claim set (claim time + lease)."""
        async def query() -> bool:
            async with self.server.cp.transaction() as unit:
                row = (await unit.conn.exec_driver_sql(
                    "SELECT tr.lease_expires_at > a.started_at + make_interval(secs => %(lease)s) "
                    "FROM task_runs tr JOIN task_run_attempts a ON a.task_run_id = tr.id AND a.attempt = tr.attempt "
                    "WHERE tr.execution_id = %(ex)s AND tr.task_id = %(task)s",
                    {"lease": self.server.cp.settings.lease_seconds, "ex": execution_id, "task": task_id})).first()
                return bool(row and row[0])
        return self.server.run(query())

    def do_wait_final(self, arg: dict[str, Any]) -> None:
        name, ex_id = self.execution(arg)
        try:
            wait_until(lambda: state_name(self.stubs.get(ex_id).state.current) in TERMINAL, timeout=WAIT_SECONDS,
                       interval=0.2, what=f"execution {name} to end")
        except AssertionError as exc:
            self.fail(f"{exc}\n{self.describe(self.stubs.get(ex_id))}")

    def do_kill(self, arg: dict[str, Any]) -> None:
        _, ex_id = self.execution(arg)
        self.stubs.executions.KillExecution(execution_pb2.KillExecutionRequest(id=ex_id), timeout=10)

    def do_freeze(self, name: str) -> None:
        self.workers[name].proc.send_signal(signal.SIGSTOP)
        self.workers[name].frozen = True

    def do_thaw(self, name: str) -> None:
        self.workers[name].proc.send_signal(signal.SIGCONT)
        self.workers[name].frozen = False

    def do_terminate(self, name: str) -> None:
        self.workers[name].proc.send_signal(signal.SIGTERM)

    def do_wait_exit(self, arg: dict[str, Any]) -> None:
        w = self.workers[arg["worker"]]
        try:
            code = w.proc.wait(WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.fail(f"worker {w.name} did not exit")
        if code != arg.get("code", 0):
            self.fail(f"worker {w.name} exited with {code}, expected {arg.get('code', 0)}")

    def do_wait_log(self, arg: dict[str, Any]) -> None:
        w = self.workers[arg["worker"]]
        pattern = re.compile(arg["pattern"])
        try:
            wait_until(lambda: pattern.search(w.log()), timeout=WAIT_SECONDS, what=f"/{arg['pattern']}/ in {w.name}'s log")
        except AssertionError as exc:
            self.fail(str(exc))

    def do_probe(self, arg: dict[str, Any]) -> None:
        if self.probe is None:
            self.probe = Probe(self.sdk, self.server.address)
        op = arg["op"]
        command: dict[str, Any] = {"op": op}
        if op == "register":
            command["task_types"] = arg["task_types"]
        if "worker" in arg:
            command["worker_id"] = self.saved[arg["worker"]]
        if "token" in arg:
            command["task_token"] = self.saved[arg["token"]]
        if "outputs" in arg:
            command["outputs_json"] = json.dumps(arg["outputs"])
        if "error_message" in arg:
            command["error_message"] = arg["error_message"]
        if op == "poll":
            wanted = arg.get("expect_assignments", 1)
            deadline = time.monotonic() + WAIT_SECONDS
            while True:
                answer = self.probe.call(command | {"wait": 1})
                if answer["code"] != "OK":
                    self.fail(f"probe poll answered {answer}")
                if len(answer["assignments"]) >= wanted or time.monotonic() > deadline:
                    break
            if len(answer["assignments"]) != wanted:
                self.fail(f"probe poll got {len(answer['assignments'])} assignment(s), expected {wanted}")
            if wanted:
                self.saved[arg["save"]] = answer["assignments"][0]["task_token"]
            return
        answer = self.probe.call(command)
        expected_code = arg.get("expect_code", "OK")
        if answer["code"] != expected_code:
            self.fail(f"probe {op} answered {answer}, expected code {expected_code}")
        if op == "register":
            self.saved[arg["save"]] = answer["worker_id"]

    def do_expect(self, spec: dict[str, Any]) -> None:
        name, ex_id = self.execution(spec)
        ex = self.stubs.get(ex_id)
        problems: list[str] = []
        state = state_name(ex.state.current)
        if "state" in spec and state != spec["state"]:
            problems.append(f"execution state {state}, expected {spec['state']}")
        if "outputs" in spec:
            outputs = json.loads(ex.outputs_json) if ex.outputs_json else None
            if not _same(outputs, expand(spec["outputs"])):
                problems.append(f"flow outputs {_short(outputs)}, expected {_short(spec['outputs'])}")
        runs = {tr.task_id: tr for tr in ex.task_runs}
        for task_id in spec.get("absent", []):
            if task_id in runs:
                problems.append(f"task {task_id} ran, expected it not to")
        for task_id, want in (spec.get("task_runs") or {}).items():
            tr = runs.get(task_id)
            if tr is None:
                problems.append(f"task {task_id} did not run")
                continue
            problems += self._check_task_run(tr, want)
        logs = self.stubs.logs_stub_list(ex_id)
        for task_id, want in (spec.get("logs") or {}).items():
            messages = [entry.message for entry in logs if entry.task_id == task_id]
            if "exactly" in want and messages != expand(want["exactly"]):
                problems.append(f"logs of {task_id}: {_short(messages)}, expected exactly {_short(expand(want['exactly']))}")
            for text in want.get("contains", []):
                if not any(text in m for m in messages):
                    problems.append(f"logs of {task_id} lack {text!r}: {_short(messages)}")
        if problems:
            self.fail(f"execution {name}:\n  " + "\n  ".join(problems) + f"\n{self.describe(ex)}")

    def _check_task_run(self, tr: execution_pb2.TaskRun, want: dict[str, Any]) -> list[str]:
        problems = []
        where = f"task run {tr.task_id}"
        if "state" in want and state_name(tr.state.current) != want["state"]:
            problems.append(f"{where}: state {state_name(tr.state.current)}, expected {want['state']}")
        if "outputs" in want:
            outputs = json.loads(tr.outputs_json) if tr.outputs_json else None
            if not _same(outputs, expand(want["outputs"])):
                problems.append(f"{where}: outputs {_short(outputs)}, expected {_short(expand(want['outputs']))}")
        if "error" in want and tr.error != want["error"]:
            problems.append(f"{where}: error {tr.error!r}, expected {want['error']!r}")
        if "attempt_count" in want and len(tr.attempts) != want["attempt_count"]:
            problems.append(f"{where}: {len(tr.attempts)} attempt(s), expected {want['attempt_count']}")
        if "attempts" in want:
            if len(tr.attempts) != len(want["attempts"]):
                problems.append(f"{where}: {len(tr.attempts)} attempt(s), expected {len(want['attempts'])}")
            for a, w in zip(tr.attempts, want["attempts"], strict=False):
                if "state" in w and state_name(a.state.current) != w["state"]:
                    problems.append(f"{where} attempt {a.attempt}: state {state_name(a.state.current)}, expected {w['state']}")
                if "reason" in w and a.reason != w["reason"]:
                    problems.append(f"{where} attempt {a.attempt}: reason {a.reason!r}, expected {w['reason']!r}")
                if "worker" in w and not self.worker_id_matches(a.worker_id, w["worker"]):
                    problems.append(f"{where} attempt {a.attempt}: ran on {a.worker_id}, expected worker {w['worker']}")
        return problems

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
        for w in self.workers.values():
            w.stop()


# ---------------------------------------------------------------------- fixtures and the test


@pytest.fixture(scope="module")
def contract_server(database_url: str) -> Iterator[ServerThread]:
    """One control plane with the settings the suite asks for (scenarios.yaml ``settings``)."""
    srv = ServerThread(harness_settings(database_url, **SUITE.get("settings", {}))).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def contract_stubs(contract_server: ServerThread) -> Iterator[Stubs]:
    stubs = connect(contract_server.address)
    yield stubs
    stubs.close()


def test_suite_is_well_formed() -> None:
    """Every scenario has an id, a flow, known steps and an expectation (a typo fails here, not silently)."""
    ids = [s["id"] for s in SUITE["scenarios"]]
    assert len(ids) == len(set(ids)), ids
    required = {
        "happy_path", "typed_outputs", "failure_with_message", "files_and_kv", "heartbeat_then_lease_expiry",
        "stale_task_token_rejected", "cancel_on_kill", "graceful_shutdown_requeues",
        "duplicate_completion_harmless", "logs_in_order", "unicode_and_large_outputs", "mixed_fleet",
        "warning_result", "retry_after_failure", "timeout_enforced",
    }
    assert required <= set(ids), required - set(ids)
    for s in SUITE["scenarios"]:
        assert _YAML.load(s["flow"])["namespace"] == "contract", s["id"]
        kinds = [next(iter(step)) for step in s["steps"]]
        assert "expect" in kinds, s["id"]
        for kind in kinds:
            assert hasattr(Run, f"do_{kind}"), f"{s['id']}: unknown step {kind!r}"


@pytest.mark.parametrize(("scenario", "sdk"), list(_cases()))
def test_scenario(scenario: dict[str, Any], sdk: str, contract_server: ServerThread, contract_stubs: Stubs) -> None:
    """Runs one scenario of scenarios.yaml with workers of one SDK (``mixed``: as its steps say)."""
    if sdk != "python":
        why = _node_missing()
        if why:
            pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix=f"contract-{scenario['id']}-") as tmp:
        run = Run(scenario, sdk, contract_server, contract_stubs, Path(tmp))
        try:
            for step in scenario["steps"]:
                run.step(step)
        finally:
            run.close()
