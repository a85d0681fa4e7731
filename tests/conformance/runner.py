"""Runs the ``run``-kind flows of Kestra's conformance corpus through a live Kestrel server.

The corpus (Kestra's ``flows/valids`` test flows plus ``manifest.json``, which records what
Kestra's own tests assert about each flow) is read from ``$KESTREL_CONFORMANCE_DIR`` (default
``<repo>/../shared/conformance/kestra``); it is never copied into the repository.

For every manifest entry with ``test_kind == "run"`` the runner:

1. deploys the entry's ``depends_on_flows`` and then its own flow file (``FlowService.RegisterFlow``;
   a refusal, e.g. a core task type not supported yet, fails the flow with the server's message);
2. starts one execution with the entry's ``inputs_given`` (inputs whose value is a ``<...>``
   placeholder, e.g. an uploaded file, make the flow "not runnable" with that reason);
3. waits for a terminal state, all executions concurrently, each with its own deadline;
4. compares the final ``state`` and task-run count with ``expected`` (each when not null): that is
   the pass criterion. ``expected.outputs`` are compared too (FEATURES.md §13 matchers) and
   reported separately, as :attr:`FlowResult.output_mismatches`.

Entry points: :func:`run_corpus` (given a server address) and :func:`local_stack` (a control plane
in a thread on a fresh database plus worker processes, as the integration tests start them).
``python -m tests.conformance`` wraps both; ``tests/conformance/test_kestra_corpus.py`` asserts on
the results.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from controlplane.flows.static_checks import LENIENT_SUFFIX
from worker_sdk.client import KestrelClient
from worker_sdk.errors import DeadlineExceededError, KestrelError, RPCError, UnavailableError
from worker_sdk.types import Execution, TaskRun

__all__ = [
    "CORPUS_ENV",
    "DEFAULT_TIMEOUT",
    "KESTRA_TEST_ENV",
    "KESTRA_TEST_GLOBALS",
    "CorpusFlow",
    "FlowResult",
    "check_outputs",
    "corpus_dir",
    "corpus_missing_reason",
    "EXPECTED_FAILURES_FILE",
    "OUTPUTS_PREFIX",
    "failure_category",
    "format_expected_failures",
    "format_summary",
    "format_table",
    "fresh_database",
    "load_corpus_flows",
    "load_expected_failures",
    "load_run_flows",
    "local_stack",
    "run_corpus",
    "summary_line",
]

REPO = Path(__file__).resolve().parents[2]

#: Environment variable naming the corpus directory (the one holding ``manifest.json``).
CORPUS_ENV = "KESTREL_CONFORMANCE_DIR"

#: Seconds each execution may take to reach a terminal state (counted from its start).
DEFAULT_TIMEOUT = 30.0

#: ``kestra.variables.globals`` of Kestra's test configuration (FEATURES.md §12); the local stack
#: serves them as ``globals``.
KESTRA_TEST_GLOBALS: dict[str, object] = {"string": "string", "int": 1, "bool": True, "nested": {"int": 2}}

#: Environment of Kestra's test JVM that corpus flows read as ``envs.*`` (manifest requirements of
#: variables.yaml); the local stack sets them in its process while it runs.
KESTRA_TEST_ENV: dict[str, str] = {
    "KESTRA_TEST1": "true",
    "KESTRA_TEST2": "Pass by env",
    # The secrets Kestra's SecretFunctionTest runs with (manifest ``requirements`` of secrets.yaml):
    # base64 values, the long one wrapped over several lines as `base64` prints it.
    "SECRET_MY_SECRET": base64.b64encode(b'{"secretKey":"secretValue"}').decode(),
    "SECRET_NEW_LINE": base64.encodebytes(b"passwordveryveryveyrlong" * 5).decode(),
}

#: Expected output values that describe a value in words instead of giving it; not compared.
UNCHECKABLE_OUTPUTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("for-each-item-outputs.yaml", "each_merge.subflowOutputs"),
        ("secrets.yaml", "get-multiline-secret.value"),
    }
)

_MATCHERS = ("contains", "startsWith", "matches")
_TASK_KEY = re.compile(r"^(?P<task>[A-Za-z0-9][A-Za-z0-9_-]*)(?P<values>(?:\[[^\]]*\])*)\.(?P<field>.+)$")
_RUN_INDEX_KEY = re.compile(r"^taskRunList\[(?P<index>\d+)\]\.(?P<field>.+)$")
_LAST_RUN_PREFIX = "<last taskrun>."
_MISSING = object()


# -- the corpus ----------------------------------------------------------------------------------


def corpus_dir() -> Path:
    """The corpus directory: ``$KESTREL_CONFORMANCE_DIR`` or ``<repo>/../shared/conformance/kestra``."""
    return Path(os.environ.get(CORPUS_ENV) or REPO.parent / "shared" / "conformance" / "kestra")


def corpus_missing_reason(corpus: Path | None = None) -> str | None:
    """Why the corpus cannot be used (a message naming the directory), or ``None`` when it can."""
    corpus = corpus or corpus_dir()
    if not (corpus / "manifest.json").is_file() or not (corpus / "flows").is_dir():
        return (
            f"Kestra conformance corpus not found at {corpus} (needs manifest.json and flows/; "
            f"set {CORPUS_ENV})"
        )
    return None


@dataclass(frozen=True)
class CorpusFlow:
    """One ``run``-kind manifest entry: a corpus flow and what Kestra's tests expect of it.

    Attributes:
        file: File name under ``flows/`` (the key used everywhere, e.g. in expected_failures.txt).
        flow_id: The flow's ``id``.
        namespace: The flow's ``namespace``.
        inputs_given: Inputs the Kestra test passes; ``None`` for none.
        expected_state: Final execution state asserted, ``None`` when not asserted.
        expected_taskrun_count: Number of task runs asserted, ``None`` when not asserted.
        expected_outputs: Output expectations (FEATURES.md §13 keys and matchers), ``None`` if none.
        depends_on_flows: Other corpus files that must be deployed first.
        test_only_types: Task types that exist only in Kestra's Java test code.
        source_test: The Kestra test (``path/Class#method``) the expectations come from.
        notes: The manifest's notes on the expectations.
        requirements: What the Kestra test prepares (env, secrets, KV values…), in words.
    """

    file: str
    flow_id: str
    namespace: str
    inputs_given: dict[str, Any] | None
    expected_state: str | None
    expected_taskrun_count: int | None
    expected_outputs: dict[str, Any] | None
    depends_on_flows: tuple[str, ...] = ()
    test_only_types: tuple[str, ...] = ()
    source_test: str = ""
    notes: str = ""
    requirements: tuple[str, ...] = ()

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> CorpusFlow:
        """Builds one from a manifest.json entry (KeyError when a required key is missing)."""
        expected = entry.get("expected") or {}
        return cls(
            file=entry["file"],
            flow_id=entry["flow_id"],
            namespace=entry["namespace"],
            inputs_given=entry.get("inputs_given"),
            expected_state=expected.get("state"),
            expected_taskrun_count=expected.get("taskrun_count"),
            expected_outputs=expected.get("outputs"),
            depends_on_flows=tuple(entry.get("depends_on_flows") or ()),
            test_only_types=tuple(entry.get("test_only_types") or ()),
            source_test=entry.get("source_test") or "",
            notes=expected.get("notes") or "",
            requirements=tuple(entry.get("requirements") or ()),
        )

    @property
    def expected_label(self) -> str:
        """``STATE/COUNT`` as asserted, ``*`` for what is not asserted (e.g. ``FAILED/*``)."""
        count = "*" if self.expected_taskrun_count is None else str(self.expected_taskrun_count)
        return f"{self.expected_state or '*'}/{count}"

    def placeholder_inputs(self) -> dict[str, str]:
        """Inputs given as ``<...>`` descriptions of a value to construct (files, URIs...)."""
        return {
            key: value
            for key, value in (self.inputs_given or {}).items()
            if isinstance(value, str) and value.startswith("<")
        }


def load_corpus_flows(corpus: Path | None = None) -> dict[str, CorpusFlow]:
    """Every manifest entry (any ``test_kind``) by file name, in manifest order.

    Raises:
        FileNotFoundError: ``manifest.json`` is missing (see :func:`corpus_missing_reason`).
    """
    corpus = corpus or corpus_dir()
    entries = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    return {e["file"]: CorpusFlow.from_manifest(e) for e in entries}


def load_run_flows(corpus: Path | None = None) -> list[CorpusFlow]:
    """The manifest's ``run``-kind entries, in manifest order.

    Raises:
        FileNotFoundError: ``manifest.json`` is missing (see :func:`corpus_missing_reason`).
    """
    corpus = corpus or corpus_dir()
    entries = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    return [CorpusFlow.from_manifest(e) for e in entries if e.get("test_kind") == "run"]


# -- results -------------------------------------------------------------------------------------


@dataclass
class FlowResult:
    """What happened to one corpus flow.

    Attributes:
        file: The corpus file.
        expected: :attr:`CorpusFlow.expected_label`.
        passed: Final state and task-run count matched (each when asserted).
        reason: Why it did not pass, stable across runs (no ids); empty when it passed.
        detail: Extra evidence for a failure (the execution's or first failed task run's error,
            the server's full message...); may vary between runs.
        state: Final execution state (the last one seen after a timeout), ``None`` when none ran.
        taskrun_count: Number of task runs of the execution, ``None`` when none ran.
        execution_id: The execution, ``None`` when none was started.
        seconds: Start to terminal state, in seconds, ``None`` when not measured.
        outputs_checked: Number of expected-output keys compared.
        output_mismatches: One message per expected output that did not match.
        strict_refusals: The registration-time expression errors that would refuse this flow
            without ``lenient_expressions`` (the harness deploys leniently, see ``_Deployer``).
    """

    file: str
    expected: str
    passed: bool = False
    reason: str = ""
    detail: str = ""
    state: str | None = None
    taskrun_count: int | None = None
    execution_id: str | None = None
    seconds: float | None = None
    outputs_checked: int = 0
    output_mismatches: list[str] = field(default_factory=list)
    strict_refusals: list[str] = field(default_factory=list)

    @property
    def got_label(self) -> str:
        """``STATE/COUNT`` observed, ``-`` when nothing ran."""
        if self.state is None:
            return "-"
        return f"{self.state}/{'-' if self.taskrun_count is None else self.taskrun_count}"

    @property
    def outputs_ok(self) -> bool:
        """Whether every compared expected output matched (vacuously true when none was)."""
        return not self.output_mismatches

    def describe(self) -> str:
        """One paragraph for an assertion message: expected, got, reason, detail, outputs."""
        text = f"{self.file}: expected {self.expected}, got {self.got_label}"
        if self.reason:
            text += f": {self.reason}"
        if self.detail:
            text += f" [{self.detail}]"
        if self.output_mismatches:
            text += "; outputs: " + "; ".join(self.output_mismatches)
        return text

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field plus ``got``."""
        return {**asdict(self), "got": self.got_label}


def failure_category(result: FlowResult) -> str:
    """A coarse category of a failed result's reason, for summaries ("" for a pass)."""
    if result.passed:
        return ""
    reason = result.reason
    for prefix, category in (
        ("Java test-only plugin type", "Java test-only plugin type"),
        ("task type not supported yet", "task type not supported yet"),
        ("dependency", "dependency flow refused"),
        ("deploy refused", "flow refused at deploy (other)"),
        ("inputs need constructed values", "inputs need constructed values (files, URIs)"),
        ("start refused", "execution start refused"),
        ("no terminal state", "timeout"),
        ("uses properties not applied yet", "right end state, but uses properties not applied yet"),
        ("wait failed", "lost the execution while waiting"),
    ):
        if reason.startswith(prefix):
            return category
    wrong_state = reason.startswith("expected ") and not reason.startswith("expected task runs")
    wrong_count = "expected task runs" in reason
    if wrong_state and wrong_count:
        return "wrong final state and task-run count"
    if wrong_state:
        return "wrong final state"
    if wrong_count:
        return "wrong task-run count"
    return "other"


# -- running -------------------------------------------------------------------------------------


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _deploy_reason(flow: CorpusFlow, message: str) -> str:
    """The stable, short reason for a deploy refusal, classified by its likely cause.

    The server's full message goes to :attr:`FlowResult.detail`.
    """
    unsupported = sorted(set(re.findall(r"task type '([^']+)' is a Kestra core type", message)))
    if flow.test_only_types:
        reason = f"Java test-only plugin type: {', '.join(flow.test_only_types)}"
        if unsupported:
            reason += f"; task type not supported yet: {', '.join(unsupported)}"
        return reason
    if unsupported:
        return f"task type not supported yet: {', '.join(unsupported)}"
    return f"deploy refused: {_first_line(message)}"


class _Deployer:
    """Deploys corpus files once each, remembering refusals."""

    def __init__(self, client: KestrelClient, corpus: Path) -> None:
        self._client = client
        self._corpus = corpus
        #: Every manifest entry by file, to classify a refused dependency.
        self.catalogue = load_corpus_flows(corpus)
        self._errors: dict[str, str | None] = {}
        #: Properties the server parsed but said it does not apply yet, per deployed file.
        self.not_applied: dict[str, list[str]] = {}
        #: Expression errors the registration checks would refuse without lenient_expressions.
        self.strict_refusals: dict[str, list[str]] = {}

    def deploy(self, file: str) -> str | None:
        """Deploys ``flows/<file>``; returns the server's refusal message, ``None`` when stored."""
        if file not in self._errors:
            try:
                source = (self._corpus / "flows" / file).read_text(encoding="utf-8")
                # Kestra's suite has flows that fail at run time on purpose (unknown outputs,
                # invalid expressions); our registration checks would refuse them, so they are
                # deployed leniently and the refusals are recorded apart (``strict_refusals``).
                _, _, warnings = self._client.deploy_flow(source, lenient_expressions=True)
                self._errors[file] = None
                self.strict_refusals[file] = [w.message for w in warnings if w.message.endswith(LENIENT_SUFFIX)]
                self.not_applied[file] = sorted(
                    {w.path.rsplit(".", 1)[-1] for w in warnings if "not applied yet" in w.message
                     or "not enforced yet" in w.message or "do not fire yet" in w.message}
                )
            except UnavailableError:
                raise  # the server is down: no point in trying the other flows
            except (OSError, RPCError) as err:
                self._errors[file] = str(err) or type(err).__name__
        return self._errors[file]


def _failed_detail(execution: Execution) -> str:
    """The execution's error, else the first failed task run's ``task: error``."""
    if execution.error:
        return _first_line(execution.error)
    for run in execution.task_runs:
        if run.error:
            return _first_line(f"{run.task_id}: {run.error}")
    return ""


def _compare(flow: CorpusFlow, result: FlowResult, execution: Execution) -> None:
    """Fills ``result`` from a terminal execution."""
    result.state = str(execution.state.current)
    result.taskrun_count = len(execution.task_runs)
    problems = []
    state_ok = flow.expected_state is None or flow.expected_state == result.state
    count_ok = flow.expected_taskrun_count is None or flow.expected_taskrun_count == result.taskrun_count
    if not state_ok:
        problems.append(f"expected {flow.expected_state} got {result.state}")
    if not count_ok:
        problems.append(f"expected task runs {flow.expected_taskrun_count} got {result.taskrun_count}")
    result.passed = state_ok and count_ok
    if not result.passed:
        result.reason = "; ".join(problems)
        result.detail = _failed_detail(execution)
    result.outputs_checked, result.output_mismatches = check_outputs(flow, execution)


def run_corpus(
    address: str,
    corpus: Path | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    files: Iterable[str] | None = None,
    wait_threads: int = 32,
) -> list[FlowResult]:
    """Runs the corpus's ``run``-kind flows on a server and compares them with the manifest.

    All flows are deployed, then all executions started, then waited for concurrently.

    Args:
        address: ``host:port`` of the control plane (workers must be connected to it).
        corpus: The corpus directory; :func:`corpus_dir` when ``None``.
        timeout: Seconds each execution may take from its start to a terminal state.
        files: Only these corpus files (all ``run``-kind flows when ``None``).
        wait_threads: Executions waited on at once (one watch stream each).

    Returns:
        One result per flow, in manifest order.

    Raises:
        FileNotFoundError: The corpus is missing.
        UnavailableError: The server could not be reached (individual refusals are results).
    """
    corpus = corpus or corpus_dir()
    flows = load_run_flows(corpus)
    if files is not None:
        wanted = set(files)
        flows = [f for f in flows if f.file in wanted]
    results = {f.file: FlowResult(file=f.file, expected=f.expected_label) for f in flows}
    started: dict[str, tuple[str, float]] = {}
    ignored: dict[str, list[str]] = {}
    with KestrelClient(address, timeout=60.0) as client:
        deployer = _Deployer(client, corpus)
        for flow in flows:
            result = results[flow.file]
            reason = _prepare(deployer, flow)
            result.strict_refusals = deployer.strict_refusals.get(flow.file, [])
            if reason:
                result.reason, result.detail = reason
                continue
            try:
                _seed_requirements(client, flow)
                inputs = _constructed_inputs(client, flow)
                execution = client.start_execution(flow.namespace, flow.flow_id, inputs=inputs)
            except UnavailableError:
                raise
            except RPCError as err:
                result.reason = f"start refused: {_first_line(str(err))}"
                continue
            started[flow.file] = (execution.id, time.monotonic())
            ignored[flow.file] = deployer.not_applied.get(flow.file, [])
            result.execution_id = execution.id

        by_file = {f.file: f for f in flows}

        def wait(file: str) -> None:
            execution_id, began = started[file]
            _wait_one(client, by_file[file], results[file], execution_id, began, timeout)

        if started:
            with ThreadPoolExecutor(max_workers=max(1, min(wait_threads, len(started)))) as pool:
                for future in [pool.submit(wait, file) for file in started]:
                    future.result()
    for file, properties in ignored.items():
        result = results[file]
        if properties and result.passed:
            # The right end state is not evidence when the flow relies on something we skip.
            result.passed = False
            result.reason = f"uses properties not applied yet: {', '.join(properties)}"
    return [results[f.file] for f in flows]


def _prepare(deployer: _Deployer, flow: CorpusFlow) -> tuple[str, str] | None:
    """Deploys a flow and its dependencies; ``(reason, detail)`` when it cannot be run."""
    for dependency in flow.depends_on_flows:
        error = deployer.deploy(dependency)
        if error:
            known = deployer.catalogue.get(dependency) or CorpusFlow(
                dependency, "", "", None, None, None, None
            )
            why = _deploy_reason(known, error)
            return f"dependency {dependency} refused: {why}", _first_line(error)
    error = deployer.deploy(flow.file)
    if error:
        return _deploy_reason(flow, error), _first_line(error)
    placeholders = {k: v for k, v in flow.placeholder_inputs().items() if _constructed_file(v) is None
                    and v not in _CONSTANT_PLACEHOLDERS}
    if placeholders:
        described = ", ".join(f"{k}={v}" for k, v in sorted(placeholders.items()))
        return f"inputs need constructed values: {described}", ""
    return None


#: ``inputs_given`` placeholder of a local file the Kestra test uploads as a FILE input.
_UPLOADED_FILE = re.compile(r"<local path of (?P<name>[\w.-]+), uploaded>|<path to data/(?P<data>[\w.-]+)>")
#: ``inputs_given`` placeholder of a text file of N lines the Kestra test uploads (ForEachItemCaseTest's
#: ``storageUpload``: the numbers 0..N-1, each left-padded with spaces to 20 characters).
_LINES_FILE = re.compile(r"<uploaded text file of (?P<count>\d+) lines(?: \(numbers 0\.\.\d+ left-padded to 20 chars\))?>")
#: ``inputs_given`` placeholders of a STRING input holding a storage URI (a child flow run alone).
_URI_PLACEHOLDERS = frozenset({"<kestra:// URI>", "<kestra:// URI of a batch file>"})
#: Placeholders any value satisfies, and the value given.
_CONSTANT_PLACEHOLDERS = {"<any string>": "any string"}


def _constructed_file(placeholder: str) -> tuple[str, str] | None:
    """``(file name, content)`` of the file a placeholder describes, None when it is no file."""
    match = _UPLOADED_FILE.fullmatch(placeholder)
    if match and match["data"]:  # a test resource such as data/hello.txt: a short text
        return match["data"], "Hello World\n"
    if match:
        return match["name"], "kestra:\n  conformance: true\n"
    match = _LINES_FILE.fullmatch(placeholder)
    if match:
        return "items.txt", "".join(str(i).rjust(20) + "\n" for i in range(int(match["count"])))
    if placeholder in _URI_PLACEHOLDERS:
        return "batch.txt", "".join(str(i).rjust(20) + "\n" for i in range(4))
    return None


#: ``requirements`` entry of a KV value the Kestra test stores before running the flow.
_KV_REQUIREMENT = re.compile(r"KV store pre-populated: (?P<namespace>\S+) (?P<key>[^=\s]+)=(?P<value>.+)")


def _seed_requirements(client: KestrelClient, flow: CorpusFlow) -> None:
    """Set up what the manifest's ``requirements`` say the Kestra test prepares (KV values)."""
    for requirement in flow.requirements:
        match = _KV_REQUIREMENT.fullmatch(requirement)
        if match:
            client.kv_set(match["namespace"], match["key"], json.loads(match["value"]))


def _constructed_inputs(client: KestrelClient, flow: CorpusFlow) -> dict[str, Any] | None:
    """``inputs_given`` with each placeholder replaced by a value made as Kestra's test makes it:
    ``<local path of NAME, uploaded>`` by the URI of an uploaded file named NAME (a small YAML
    text, as Kestra's tests upload ``application-test.yml``), ``<uploaded text file of N lines…>``
    by the URI of an uploaded file of N padded numbers, a ``<kestra:// URI…>`` by the URI of an
    uploaded 4-line file, ``<any string>`` by a string."""
    if flow.inputs_given is None:
        return None
    inputs = dict(flow.inputs_given)
    for key, value in flow.inputs_given.items():
        if not isinstance(value, str):
            continue
        if value in _CONSTANT_PLACEHOLDERS:
            inputs[key] = _CONSTANT_PLACEHOLDERS[value]
        made = _constructed_file(value)
        if made:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / made[0]
                path.write_text(made[1], encoding="utf-8")
                if value in _URI_PLACEHOLDERS:  # a STRING input: a namespace file has a URI too
                    inputs[key] = client.upload_namespace_file(
                        flow.namespace, f"conformance/{flow.flow_id}/{made[0]}", path).uri
                else:
                    inputs[key] = client.upload_input_file(flow.namespace, flow.flow_id, key, path).uri
    return inputs


def _wait_one(
    client: KestrelClient,
    flow: CorpusFlow,
    result: FlowResult,
    execution_id: str,
    began: float,
    timeout: float,
) -> None:
    """Waits for one execution until ``began + timeout`` and fills its result."""
    # At least 10 s: waits start only once every flow is deployed and started, which can take
    # longer than ``timeout`` on a loaded machine; an execution already ended answers at once.
    remaining = max(began + timeout - time.monotonic(), 10.0)
    try:
        execution = client.wait_execution(execution_id, timeout=remaining)
    except DeadlineExceededError:
        try:
            current = client.get_execution(execution_id)
            result.state, result.taskrun_count = str(current.state.current), len(current.task_runs)
            result.detail = f"still {current.state.current} with {len(current.task_runs)} task runs"
        except KestrelError as err:
            result.detail = _first_line(str(err))
        result.reason = f"no terminal state within {timeout:g} s"
        return
    except KestrelError as err:
        result.reason = f"wait failed: {_first_line(str(err))}"
        return
    result.seconds = round(time.monotonic() - began, 3)
    _compare(flow, result, execution)


# -- outputs ---------------------------------------------------------------------------------------


def _dig(value: Any, path: str) -> Any:
    """``value`` at a dotted path (dict keys, list indexes), ``_MISSING`` when absent."""
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _value_path(run: TaskRun, by_id: Mapping[str, TaskRun]) -> list[str]:
    """Loop values from the outermost ancestor down to ``run`` (consecutive repeats collapsed)."""
    values: list[str] = []
    current: TaskRun | None = run
    while current is not None:
        if current.value is not None:
            values.append(current.value)
        current = by_id.get(current.parent_task_run_id or "")
    values.reverse()
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def _resolve(key: str, execution: Execution) -> tuple[Any, str]:
    """The observed value for an expected-output key, or ``(_MISSING, why)``."""
    runs = execution.task_runs
    if key == "execution.outputs":
        return execution.outputs, ""
    if key.startswith("execution.outputs."):
        return _dig(execution.outputs or {}, key.removeprefix("execution.outputs.")), "no such flow output"
    if key.startswith(_LAST_RUN_PREFIX):
        if not runs:
            return _MISSING, "no task runs"
        return _dig(
            runs[-1].outputs or {}, key.removeprefix(_LAST_RUN_PREFIX)
        ), "not in the last task run's outputs"
    match = _RUN_INDEX_KEY.match(key)
    if match:
        index = int(match["index"])
        if index >= len(runs):
            return _MISSING, f"only {len(runs)} task runs"
        # As the other keys, the field is an output first (Kestra's tests read
        # ``getTaskRunList().get(i).getOutputs().get(field)``), else a task-run property.
        got = _dig(runs[index].outputs or {}, match["field"])
        if got is _MISSING:
            got = _dig(runs[index].to_kestra_json(), match["field"])
        return got, f"not in task run {index}"
    match = _TASK_KEY.match(key)
    if not match:
        return _MISSING, "key not understood by the harness"
    values = [v.strip() for group in re.findall(r"\[([^\]]*)\]", match["values"]) for v in group.split(",")]
    by_id = {r.id: r for r in runs}
    for run in runs:
        if run.task_id == match["task"] and (not values or _value_path(run, by_id) == values):
            return _dig(run.outputs or {}, match["field"]), f"not in the outputs of {match['task']}"
    where = f" with values {values}" if values else ""
    return _MISSING, f"no task run of {match['task']}{where}"


def _matches(expected: Any, got: Any) -> bool:
    if isinstance(expected, dict) and len(expected) == 1 and next(iter(expected)) in _MATCHERS:
        ((kind, pattern),) = expected.items()
        if not isinstance(got, str):
            return False
        if kind == "contains":
            return pattern in got
        if kind == "startsWith":
            return got.startswith(pattern)
        return re.search(pattern, got) is not None
    if isinstance(expected, dict) and isinstance(got, dict) and None in expected.values():
        # A null in an expected map means "no such key" (the manifest's words for Kestra's
        # ``assertThat(map.get(k), nullValue())``): absent or null both match.
        present = {k: v for k, v in expected.items() if v is not None}
        extra = {k for k in got if k not in present and got[k] is not None}
        return not extra and all(k in got and _matches(v, got[k]) for k, v in present.items())
    return bool(expected == got and type(expected) is type(got)) or (
        isinstance(expected, (int, float))
        and not isinstance(expected, bool)
        and isinstance(got, (int, float))
        and not isinstance(got, bool)
        and expected == got
    )


def check_outputs(flow: CorpusFlow, execution: Execution) -> tuple[int, list[str]]:
    """Compares ``expected.outputs`` with a terminal execution (FEATURES.md §13).

    Keys: ``<taskId>.<field>`` (first task run of the task), ``<taskId>[v1,v2].<field>`` or
    ``<taskId>[v1][v2].<field>`` (the task run whose loop-value path is v1, v2),
    ``taskRunList[i].<field>`` (i-th task run, Kestra's JSON shape), ``execution.outputs[.<id>]``
    and ``<last taskrun>.<field>``. Values: plain JSON is equality (int 1 equals float 1.0, but
    ``"1"`` does not equal ``1``); ``{"contains"|"startsWith"|"matches": s}`` are string matchers.

    Returns:
        ``(number of keys compared, one message per mismatch)``; keys in
        :data:`UNCHECKABLE_OUTPUTS` are not compared.
    """
    checked = 0
    mismatches = []
    for key, expected in (flow.expected_outputs or {}).items():
        if (flow.file, key) in UNCHECKABLE_OUTPUTS:
            continue
        checked += 1
        got, why = _resolve(key, execution)
        if got is _MISSING:
            mismatches.append(f"{key}: expected {json.dumps(expected)}, missing ({why})")
        elif not _matches(expected, got):
            shown = json.dumps(got, default=str)
            shown = shown if len(shown) <= 200 else shown[:197] + "..."
            mismatches.append(f"{key}: expected {json.dumps(expected)}, got {shown}")
    return checked, mismatches


# -- reporting -------------------------------------------------------------------------------------


def summary_line(results: Sequence[FlowResult]) -> str:
    """``conformance: N passed, M failed (of K run-kind flows)``."""
    passed = sum(r.passed for r in results)
    return f"conformance: {passed} passed, {len(results) - passed} failed (of {len(results)} run-kind flows)"


def format_table(results: Sequence[FlowResult], *, reason_width: int = 100) -> str:
    """A plain-text table: flow, expected, got, result, reason (and output mismatches)."""
    rows = [("flow", "expected", "got", "result", "reason")]
    for r in results:
        reason = r.reason
        if r.output_mismatches:
            reason = (reason + "; " if reason else "") + f"outputs: {'; '.join(r.output_mismatches)}"
        if len(reason) > reason_width:
            reason = reason[: reason_width - 3] + "..."
        rows.append((r.file, r.expected, r.got_label, "pass" if r.passed else "FAIL", reason))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return "\n".join(line.rstrip() for line in lines)


def format_summary(results: Sequence[FlowResult]) -> str:
    """Failure counts by :func:`failure_category` and the output-check tally, one per line."""
    categories = Counter(failure_category(r) for r in results if not r.passed)
    lines = [f"  {count:4d}  {name}" for name, count in categories.most_common()]
    compared = [r for r in results if r.outputs_checked]
    bad = [r for r in compared if r.output_mismatches]
    lines.append(
        f"outputs: {len(compared) - len(bad)} of {len(compared)} flows with compared outputs match"
        f" ({sum(r.passed for r in bad)} of the mismatching ones pass on state and task-run count)"
    )
    refused = [r.file for r in results if r.strict_refusals]
    lines.append(
        f"registration checks: {len(refused)} flow(s) deployed only with lenient_expressions"
        + (f" ({', '.join(refused)})" if refused else "")
    )
    return "failures by category:\n" + "\n".join(lines)


# -- the expected-failures list -------------------------------------------------------------------

#: The list of flows known not to pass yet, next to this module.
EXPECTED_FAILURES_FILE = Path(__file__).with_name("expected_failures.txt")

#: Prefix of an expected-failures key for a flow that passes on state and task-run count but
#: whose expected outputs do not match yet.
OUTPUTS_PREFIX = "outputs:"

_EXPECTED_FAILURES_HEADER = """\
# Kestra conformance flows (run kind) known not to pass yet. Generated from a real run by
#   python -m tests.conformance --write-expected-failures tests/conformance/expected_failures.txt
# then reviewed. One entry a line: `<flow-file>  <reason>` (state / task-run count do not match),
# or `outputs:<flow-file>  <reason>` (state and count match, expected outputs do not).
# test_kestra_corpus.py marks each listed flow xfail(strict=True): a listed flow that starts
# passing FAILS the suite until its line is removed, so this list can only shrink.
"""


def load_expected_failures(path: Path | None = None) -> dict[str, str]:
    """Reads the expected-failures list: key (``file`` or ``outputs:file``) -> reason.

    Blank lines and ``#`` comments are ignored; the reason is the rest of the line after the
    first run of whitespace.

    Raises:
        ValueError: A key is listed twice (the message names the line).
    """
    path = path or EXPECTED_FAILURES_FILE
    entries: dict[str, str] = {}
    if not path.is_file():
        return entries
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, reason = line.partition(" ")
        if key in entries:
            raise ValueError(f"{path.name}:{number}: {key} is listed twice")
        entries[key] = reason.strip() or "known failure"
    return entries


def format_expected_failures(results: Sequence[FlowResult]) -> str:
    """The expected-failures file for ``results``: every failure with its (stable) reason."""
    lines = [_EXPECTED_FAILURES_HEADER]
    failed = [r for r in results if not r.passed]
    width = max((len(r.file) for r in failed), default=0)
    for r in sorted(failed, key=lambda r: r.file):
        reason = r.reason
        if r.detail and r.reason.startswith("expected"):
            reason += f" ({_first_line(r.detail, 200)})"
        lines.append(f"{r.file.ljust(width)}  {reason}")
    outputs = [r for r in results if r.passed and r.output_mismatches]
    if outputs:
        lines.append("")
        lines.append("# Pass on state and task-run count; expected outputs do not match yet.")
        width = max(len(OUTPUTS_PREFIX + r.file) for r in outputs)
        lines.extend(
            f"{(OUTPUTS_PREFIX + r.file).ljust(width)}  expected outputs differ: "
            + ", ".join(m.split(": ", 1)[0] for m in r.output_mismatches)
            for r in sorted(outputs, key=lambda r: r.file)
        )
    return "\n".join(lines) + "\n"


# -- a local stack ---------------------------------------------------------------------------------


@contextmanager
def fresh_database(admin_url: str | None = None) -> Iterator[str]:
    """A brand-new Postgres database, dropped afterwards (as ``tests/conftest.py`` does).

    Args:
        admin_url: SQLAlchemy URL of a database to issue CREATE/DROP DATABASE on; default
            ``$KESTREL_TEST_ADMIN_URL`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.

    Yields:
        The new database's URL.

    Raises:
        RuntimeError: Postgres is not reachable (the message names the URL).
    """
    import sqlalchemy as sa

    admin_url = admin_url or os.environ.get(
        "KESTREL_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    name = f"kestrel_conformance_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as err:
        engine.dispose()
        raise RuntimeError(
            f"Postgres is not reachable at {admin_url} (start it, or run .ci/run): {err}"
        ) from err
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Sets environment variables for the block, restoring the previous values after."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def local_stack(workers: int = 2, *, database_url: str | None = None, concurrency: int = 4) -> Iterator[str]:
    """A control plane in a thread plus worker processes, configured like Kestra's test server.

    The control plane is ``tests.integration.harness.ServerThread`` on a free port against the
    machine's Postgres (a fresh database unless ``database_url`` is given) and Redis, with
    :data:`KESTRA_TEST_GLOBALS` as ``globals`` and :data:`KESTRA_TEST_ENV` in the process
    environment; the workers are ``python -m worker_sdk`` processes.

    Args:
        workers: Number of worker processes.
        database_url: Database to use; a fresh one (dropped afterwards) when ``None``.
        concurrency: Task runs each worker runs at once.

    Yields:
        The control plane's ``host:port``.

    Raises:
        RuntimeError: Postgres is not reachable.
    """
    from tests.integration.harness import ServerThread, test_settings, worker_process

    with ExitStack() as stack:
        if database_url is None:
            database_url = stack.enter_context(fresh_database())
        stack.enter_context(_environment(KESTRA_TEST_ENV))
        settings = test_settings(
            database_url,
            namespace_prefix_globals=dict(KESTRA_TEST_GLOBALS),
            lease_seconds=10.0,
            heartbeat_interval_seconds=2.0,
        )
        server = ServerThread(settings).start()
        stack.callback(server.stop)
        for _ in range(workers):
            stack.enter_context(worker_process(server.address, concurrency=concurrency))
        yield server.address


# -- scenario kinds: pause-resume, restart/replay, concurrency ---------------------------------------

#: Manifest ``test_kind`` values whose Kestra tests drive executions through an operation (resume,
#: restart, replay) or start several at once; each has a scripted scenario below.
SCENARIO_KINDS: tuple[str, ...] = ("pause-resume", "restart/replay", "concurrency")

#: Inputs a ``pause-resume`` scenario resumes with (Kestra's PauseTest), by corpus file.
_RESUME_INPUTS: dict[str, dict[str, Any]] = {"pause_on_resume.yaml": {"asked": "restarted"}}

#: What a ``restart/replay`` scenario checks once the operation's execution has ended, by file:
#: (operation, final state, final task-run count or None, {task id: attempts}); the operation is
#: ``restart`` (same execution) or ``replay:<task id>`` (a new execution from that task's run).
_RESTART_EXPECTATIONS: dict[str, tuple[str, str, int | None, dict[str, int]]] = {
    "restart-each.yaml": ("replay:2_end", "SUCCESS", 20, {}),
    "restart_always_failed.yaml": ("restart", "FAILED", 2, {"failStep": 2}),
    "restart_last_failed.yaml": ("restart", "SUCCESS", 4, {"c": 2}),
    "restart_local_errors.yaml": ("restart", "FAILED", 5, {"failStep": 2}),
    "restart_pause_last_failed.yaml": ("restart", "SUCCESS", 5, {"c": 2}),
    "restart_with_inputs.yaml": ("replay:instant", "SUCCESS", 5, {}),
}


class _ScenarioFailure(Exception):
    """A scenario step did not observe what Kestra's test asserts; the message says what."""


def load_scenario_flows(corpus: Path | None = None, kinds: Iterable[str] = SCENARIO_KINDS) -> list[tuple[str, CorpusFlow]]:
    """``(test_kind, flow)`` of the manifest's in-scope entries of the scenario kinds, in order."""
    corpus = corpus or corpus_dir()
    wanted = set(kinds)
    entries = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    return [(e["test_kind"], CorpusFlow.from_manifest(e)) for e in entries
            if e.get("test_kind") in wanted and e.get("in_scope", True)]


def run_scenarios(
    address: str,
    corpus: Path | None = None,
    *,
    kinds: Iterable[str] = SCENARIO_KINDS,
    files: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, list[FlowResult]]:
    """Runs the scripted scenarios of the ``pause-resume``, ``restart/replay`` and
    ``concurrency`` kinds, one flow at a time, and judges each as Kestra's test does.

    - pause-resume: the execution must be PAUSED (with one task run), then
      ``ResumeExecution`` (with the ``onResume`` inputs Kestra's test gives; a resume without a
      required one must be refused first) and the final state/count/outputs must match.
    - restart/replay: the first run must match the manifest, then ``RestartExecution`` (same
      id) or ``ReplayExecution`` from the named task (new id, ``parent_id`` = the first) must
      end as Kestra asserts, with the asserted attempt counts.
    - concurrency: a first execution is started and observed RUNNING or PAUSED, then a second:
      CANCEL -> CANCELLED, FAIL -> FAILED, QUEUE -> history CREATED, QUEUED, RUNNING; both
      (or the first) must end as the manifest says.

    Returns:
        test kind -> one result per flow (``passed``, ``reason`` naming the failed step).

    Raises:
        FileNotFoundError: The corpus is missing. UnavailableError: the server is unreachable.
    """
    corpus = corpus or corpus_dir()
    flows = load_scenario_flows(corpus, kinds)
    if files is not None:
        wanted = set(files)
        flows = [(k, f) for k, f in flows if f.file in wanted]
    results: dict[str, list[FlowResult]] = {}
    with KestrelClient(address, timeout=60.0) as client:
        deployer = _Deployer(client, corpus)
        for kind, flow in flows:
            result = FlowResult(file=flow.file, expected=flow.expected_label)
            results.setdefault(kind, []).append(result)
            if flow.file in _CONSTRUCTED_INPUTS:  # placeholders the scenario builds itself
                flow = replace(flow, inputs_given={k: v for k, v in (flow.inputs_given or {}).items()
                                                   if not (isinstance(v, str) and v.startswith("<"))})
            reason = _prepare(deployer, flow)
            if reason:
                result.reason, result.detail = reason
                continue
            scenario = {"pause-resume": _pause_resume, "restart/replay": _restart_replay,
                        "concurrency": _concurrency}[kind]
            try:
                scenario(client, flow, result, timeout)
            except UnavailableError:
                raise
            except _ScenarioFailure as failure:
                result.passed = False
                result.reason = str(failure)
            except KestrelError as err:
                result.passed = False
                result.reason = f"operation refused: {_first_line(str(err))}"
    return results


def _until(client: KestrelClient, execution_id: str, states: set[str], timeout: float, what: str) -> Execution:
    """Polls until the execution is in one of ``states``; _ScenarioFailure after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        execution = client.get_execution(execution_id)
        if str(execution.state.current) in states:
            return execution
        if time.monotonic() > deadline or execution.is_terminal:
            raise _ScenarioFailure(f"{what}: expected {'/'.join(sorted(states))}, got {execution.state.current}")
        time.sleep(0.05)


def _final(client: KestrelClient, execution_id: str, timeout: float, what: str) -> Execution:
    try:
        return client.wait_execution(execution_id, timeout=timeout)
    except DeadlineExceededError:
        raise _ScenarioFailure(f"{what}: no terminal state within {timeout:g} s") from None


def _history_of(execution: Execution) -> list[str]:
    return [str(h.state) for h in execution.state.histories]


def _paused_pause_execution(client: KestrelClient, timeout: float) -> dict[str, Any]:
    """``resume-execution.yaml``'s input: the id of a PAUSED execution of the corpus flow ``pause``."""
    paused = client.start_execution("io.kestra.tests", "pause")
    _until(client, paused.id, {"PAUSED"}, timeout, "the execution of pause to resume")
    return {"executionId": paused.id}


#: Corpus files whose ``<...>`` placeholder inputs a scenario builds: file -> builder.
_CONSTRUCTED_INPUTS = {"resume-execution.yaml": _paused_pause_execution}


def _pause_resume(client: KestrelClient, flow: CorpusFlow, result: FlowResult, timeout: float) -> None:
    if flow.file in _CONSTRUCTED_INPUTS:
        # The Resume task resumes another paused execution, which must then end within 5 s.
        inputs = _CONSTRUCTED_INPUTS[flow.file](client, timeout)
        resumer = client.start_execution(flow.namespace, flow.flow_id, inputs={**(flow.inputs_given or {}), **inputs})
        result.execution_id = resumer.id
        _compare(flow, result, _final(client, resumer.id, timeout, "the resuming execution"))
        resumed = _final(client, inputs["executionId"], 5.0, "the resumed execution")
        if result.passed and not resumed.is_terminal:
            raise _ScenarioFailure("the resumed execution did not end within 5 s")
        return
    execution = client.start_execution(flow.namespace, flow.flow_id, inputs=flow.inputs_given)
    result.execution_id = execution.id
    paused = _until(client, execution.id, {"PAUSED"}, timeout, "before the resume")
    if len(paused.task_runs) != 1:
        raise _ScenarioFailure(f"paused with {len(paused.task_runs)} task runs, Kestra has 1")
    inputs = _RESUME_INPUTS.get(flow.file, {})
    if inputs:
        try:
            client.resume_execution(execution.id, {})
        except KestrelError as err:
            if "missing required input" not in str(err):
                raise _ScenarioFailure(f"a resume without the required input failed wrongly: {err}") from None
        else:
            raise _ScenarioFailure("a resume without the required onResume input was accepted")
    client.resume_execution(execution.id, inputs)
    _compare(flow, result, _final(client, execution.id, timeout, "after the resume"))


def _restart_replay(client: KestrelClient, flow: CorpusFlow, result: FlowResult, timeout: float) -> None:
    first = _final(client, client.start_execution(flow.namespace, flow.flow_id,
                                                  inputs=_constructed_inputs(client, flow)).id,
                   timeout, "first run")
    result.execution_id = first.id
    _compare(flow, result, first)
    if not result.passed:
        result.reason = f"first run: {result.reason}"
        return
    operation, state, count, attempts = _RESTART_EXPECTATIONS[flow.file]
    if operation == "restart":
        restarted = client.restart_execution(first.id)
        if "RESTARTED" not in _history_of(restarted):
            raise _ScenarioFailure(f"restart: history {_history_of(restarted)} has no RESTARTED")
        final = _final(client, first.id, timeout, "after the restart")
    else:
        task_id = operation.split(":", 1)[1]
        chosen = [tr for tr in first.task_runs if tr.task_id == task_id]
        if not chosen:
            raise _ScenarioFailure(f"replay: no task run of {task_id}")
        replay = client.replay_execution(first.id, chosen[-1].id)
        if replay.id == first.id or replay.parent_id != first.id:
            raise _ScenarioFailure("replay: expected a new execution whose parent is the replayed one")
        final = _final(client, replay.id, timeout, "after the replay")
    problems = []
    if str(final.state.current) != state:
        problems.append(f"after {operation}: expected {state} got {final.state.current}")
    if count is not None and len(final.task_runs) != count:
        problems.append(f"after {operation}: expected task runs {count} got {len(final.task_runs)}")
    for task_id, expected in attempts.items():
        got = max((len(tr.attempts) for tr in final.task_runs if tr.task_id == task_id), default=0)
        if got != expected:
            problems.append(f"after {operation}: {task_id} made {got} attempts, expected {expected}")
    if flow.file == "restart_with_inputs.yaml":  # Kestra's test: both refused with 422 "No task found…"
        for what, refused in (("restart of a successful execution", lambda: client.restart_execution(first.id)),
                              ("replay of an unknown task run", lambda: client.replay_execution(first.id, "nope"))):
            try:
                refused()
            except KestrelError as err:
                if "No task found" not in str(err):
                    problems.append(f"{what}: refused without \"No task found\": {_first_line(str(err))}")
            else:
                problems.append(f"{what} was accepted")
    if problems:
        raise _ScenarioFailure("; ".join(problems))
    result.state, result.taskrun_count = str(final.state.current), len(final.task_runs)


def _concurrency(client: KestrelClient, flow: CorpusFlow, result: FlowResult, timeout: float) -> None:
    first = client.start_execution(flow.namespace, flow.flow_id, inputs=flow.inputs_given)
    result.execution_id = first.id
    _until(client, first.id, {"RUNNING", "PAUSED"}, timeout, "first execution")
    second = client.start_execution(flow.namespace, flow.flow_id, inputs=flow.inputs_given)
    source = (corpus_dir() / "flows" / flow.file).read_text(encoding="utf-8")
    behavior = re.search(r"behavior:\s*(\w+)", source)
    behavior_name = behavior.group(1) if behavior else "QUEUE"
    if behavior_name in ("CANCEL", "FAIL"):
        expected = "CANCELLED" if behavior_name == "CANCEL" else "FAILED"
        ended = _final(client, second.id, timeout, "second execution")
        if str(ended.state.current) != expected or _history_of(ended) != ["CREATED", expected]:
            raise _ScenarioFailure(f"second execution: expected CREATED -> {expected}, got {_history_of(ended)}")
    else:
        queued = client.get_execution(second.id)
        if str(queued.state.current) != "QUEUED":
            raise _ScenarioFailure(f"second execution: expected QUEUED while the first runs, got {queued.state.current}")
        ended = _final(client, second.id, timeout, "second execution")
        if _history_of(ended)[:3] != ["CREATED", "QUEUED", "RUNNING"] or str(ended.state.current) != flow.expected_state:
            raise _ScenarioFailure(f"second execution: history {_history_of(ended)}")
    _compare(flow, result, _final(client, first.id, timeout, "first execution"))


def format_scenarios(results: Mapping[str, Sequence[FlowResult]]) -> str:
    """One line per scenario flow and a count per kind."""
    lines = []
    for kind, flows in results.items():
        for r in flows:
            outputs = f" [outputs: {'; '.join(r.output_mismatches)}]" if r.output_mismatches else ""
            lines.append(f"{kind:15} {r.file:40} {'PASS' if r.passed else 'FAIL'} {r.reason}{outputs}".rstrip())
        lines.append(f"{kind}: {sum(r.passed for r in flows)} passed of {len(flows)}")
    return "\n".join(lines)
