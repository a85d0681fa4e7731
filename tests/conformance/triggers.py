"""Conformance runners for the corpus kinds ``flow-trigger`` and ``trigger/scheduler``.

``flow-trigger``: an upstream flow (no trigger) runs like a ``run`` flow; a listener flow (a Flow
trigger) is deployed with its upstream flows (``depends_on_flows``), the upstreams are started,
and the listener's first triggered execution must reach Kestra's expected state and task-run
count. ``trigger/scheduler``: the flow is deployed and must produce one triggered execution with
the expected state (the HTTP polling trigger needs the internet and is reported as such).

Used by ``python -m tests.conformance --triggers``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker_sdk.client import KestrelClient
from worker_sdk.errors import KestrelError

KINDS = ("flow-trigger", "trigger/scheduler")
#: Listener -> how many executions Kestra's test expects from one run of its upstreams (from the
#: manifest notes: one per listed state the upstream passes through).
EXPECTED_FIRES = {"trigger-flow-listener-with-pause.yaml": 4}


@dataclass
class TriggerResult:
    """Outcome of one corpus file: ``passed`` and, when not, why."""

    file: str
    kind: str
    passed: bool
    reason: str = ""


def _entries(corpus: Path, files: list[str] | None) -> list[dict[str, Any]]:
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    wanted = {Path(f).name for f in files} if files else None
    return [e for e in manifest if e.get("test_kind") in KINDS and (wanted is None or e["file"] in wanted)]


def _deploy(client: KestrelClient, corpus: Path, file: str) -> None:
    client.deploy_flow((corpus / "flows" / file).read_text(encoding="utf-8"), lenient_expressions=True)


def _check(execution: Any, expected: dict[str, Any]) -> str:
    state = execution.state.current.value
    if expected.get("state_asserted", True) and expected.get("state") and state != expected["state"]:
        return f"state {state}, expected {expected['state']}"
    count = len(execution.task_runs)
    if expected.get("taskrun_count_asserted", True) and expected.get("taskrun_count") is not None \
            and count != expected["taskrun_count"]:
        return f"{count} task runs, expected {expected['taskrun_count']}"
    return ""


def _first_triggered(client: KestrelClient, namespace: str, flow_id: str, timeout: float) -> Any | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.list_executions(namespace=namespace, flow_id=flow_id)
        if page.executions:
            return client.wait_execution(page.executions[-1].id, timeout=max(1.0, deadline - time.monotonic()))
        time.sleep(0.3)
    return None


def _wait_registered(client: KestrelClient, namespace: str, flow_id: str, timeout: float = 10.0) -> None:
    """Wait until the scheduler has the flow's triggers (events before that are not the listener's)."""
    from controlplane.api.triggers import list_triggers

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not [
        t for t in list_triggers(client, namespace, flow_id) if t.namespace == namespace
    ]:
        time.sleep(0.2)


#: Corpus flows whose Kestra test runs a Toggle task by hand against the flow's own trigger
#: (saved as disabled beforehand) and checks the trigger ends enabled: file -> trigger id.
TOGGLE_SCENARIOS: dict[str, str] = {"trigger-toggle.yaml": "schedule"}


def _toggle_scenario(client: KestrelClient, entry: dict[str, Any], trigger_id: str, expected: dict[str, Any],
                     timeout: float) -> str:
    """Disable the trigger, run the flow (its Toggle task enables it), check the execution and that
    the trigger is enabled again; returns the failure reason ("" when it passed)."""
    from controlplane.api.triggers import list_triggers, set_trigger_enabled

    namespace, flow_id = entry["namespace"], entry["flow_id"]
    set_trigger_enabled(client, namespace, flow_id, trigger_id, False)
    execution = client.wait_execution(client.start_execution(namespace, flow_id).id, timeout=timeout)
    reason = _check(execution, expected)
    enabled = {t.trigger_id: t.enabled for t in list_triggers(client, namespace, flow_id)}.get(trigger_id)
    if not reason and enabled is not True:
        reason = f"trigger '{trigger_id}' is {'missing' if enabled is None else 'still disabled'} after the Toggle task"
    return reason


def run_trigger_corpus(address: str, corpus: Path, files: list[str] | None = None,
                       timeout: float = 30.0) -> list[TriggerResult]:
    """Run every ``flow-trigger`` and ``trigger/scheduler`` entry (or only ``files``)."""
    results = []
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    with KestrelClient(address, timeout=30) as client:
        for entry in _entries(corpus, files):
            kind, file, expected = entry["test_kind"], entry["file"], entry.get("expected") or {}
            # A listener without listed upstreams (e.g. a namespace condition) is fired by the
            # upstreams of the other listeners of the same Kestra test.
            deps = list(entry.get("depends_on_flows") or []) or sorted({
                d for e in manifest if e["source_test"] == entry["source_test"] and e["file"] != file
                for d in e.get("depends_on_flows") or []})
            try:
                if entry["trigger_types"] and any("http.Trigger" in t for t in entry["trigger_types"]):
                    results.append(TriggerResult(file, kind, False, "HTTP polling trigger: not supported (needs internet)"))
                    continue
                for dep in deps:
                    _deploy(client, corpus, dep)
                _deploy(client, corpus, file)
                if kind == "flow-trigger" and not entry["trigger_types"]:
                    started = client.start_execution(entry["namespace"], entry["flow_id"])
                    reason = _check(client.wait_execution(started.id, timeout=timeout), expected)
                    results.append(TriggerResult(file, kind, not reason, reason))
                    continue
                _wait_registered(client, entry["namespace"], entry["flow_id"])
                if file in TOGGLE_SCENARIOS:
                    reason = _toggle_scenario(client, entry, TOGGLE_SCENARIOS[file], expected, timeout)
                    results.append(TriggerResult(file, kind, not reason, reason))
                    continue
                for dep in deps:
                    dep_entry = next(e for e in manifest if e["file"] == dep)
                    client.start_execution(dep_entry["namespace"], dep_entry["flow_id"])
                execution = _first_triggered(client, entry["namespace"], entry["flow_id"], timeout)
                if execution is None:
                    results.append(TriggerResult(file, kind, False, f"no triggered execution within {timeout:g} s"))
                    continue
                reason = _check(execution, expected)
                want = EXPECTED_FIRES.get(file)
                if not reason and want is not None:
                    deadline = time.monotonic() + timeout
                    got = 0
                    while time.monotonic() < deadline:
                        got = len(client.list_executions(namespace=entry["namespace"], flow_id=entry["flow_id"]).executions)
                        if got >= want:
                            break
                        time.sleep(0.5)
                    time.sleep(1.0)
                    got = len(client.list_executions(namespace=entry["namespace"], flow_id=entry["flow_id"]).executions)
                    if got != want:
                        reason = f"{got} triggered executions, expected {want}"
                results.append(TriggerResult(file, kind, not reason, reason))
            except KestrelError as err:
                results.append(TriggerResult(file, kind, False, str(err).splitlines()[0][:200]))
    return results


def format_trigger_results(results: list[TriggerResult]) -> str:
    """A table line per file and one summary line per kind."""
    lines = [f"{'PASS' if r.passed else 'FAIL'}  {r.kind:18} {r.file}  {r.reason}" for r in results]
    for kind in KINDS:
        mine = [r for r in results if r.kind == kind]
        if mine:
            lines.append(f"{kind}: {sum(r.passed for r in mine)} of {len(mine)} pass")
    return "\n".join(lines)
