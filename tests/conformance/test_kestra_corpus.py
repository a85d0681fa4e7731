"""Kestra's conformance corpus through a live Kestrel stack: one test per ``run``-kind flow.

The whole corpus runs ONCE, concurrently, in a module fixture (a control plane on a fresh Postgres
database plus two worker processes, see :func:`tests.conformance.runner.local_stack`); each
parametrized test then asserts on its flow's result:

- ``test_flow_reaches_expected_state``: final state and task-run count as Kestra's tests assert
  (the issue's pass criterion);
- ``test_flow_outputs``: for flows that pass that check, the manifest's ``expected.outputs``.

Flows known not to pass yet are listed in ``expected_failures.txt`` (``outputs:<file>`` for the
output check) and marked ``xfail(strict=True)``: a listed flow that starts passing fails the suite
until its line is removed. The corpus is read from ``$KESTREL_CONFORMANCE_DIR`` (default
``<repo>/../shared/conformance/kestra``); without it every test here is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.runner import (
    EXPECTED_FAILURES_FILE,
    OUTPUTS_PREFIX,
    CorpusFlow,
    FlowResult,
    corpus_dir,
    corpus_missing_reason,
    format_summary,
    load_expected_failures,
    load_run_flows,
    local_stack,
    run_corpus,
    summary_line,
)

pytestmark = pytest.mark.conformance

CORPUS = corpus_dir()
MISSING = corpus_missing_reason(CORPUS)
FLOWS: list[CorpusFlow] = [] if MISSING else load_run_flows(CORPUS)
EXPECTED_FAILURES = load_expected_failures()


def _params(prefix: str, flows: list[CorpusFlow]) -> list[object]:
    """One param per flow, strict-xfail when ``prefix + file`` is in the expected failures."""
    if MISSING:
        return [pytest.param(None, id="corpus-missing", marks=pytest.mark.skip(reason=MISSING))]
    params = []
    for flow in flows:
        reason = EXPECTED_FAILURES.get(prefix + flow.file)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(flow.file, id=flow.file, marks=marks))
    return params


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, FlowResult]]:
    """Every run-kind flow's result, from one concurrent run on a fresh local stack."""
    with local_stack(workers=2) as address:
        outcome = run_corpus(address, CORPUS)
    print(f"\n{format_summary(outcome)}\n{summary_line(outcome)}")
    yield {r.file: r for r in outcome}


@pytest.mark.parametrize("file", _params("", FLOWS))
def test_flow_reaches_expected_state(results: dict[str, FlowResult], file: str) -> None:
    """The flow ends in Kestra's expected state with Kestra's task-run count."""
    result = results[file]
    assert result.passed, result.describe()


@pytest.mark.parametrize("file", _params(OUTPUTS_PREFIX, [f for f in FLOWS if f.expected_outputs]))
def test_flow_outputs(results: dict[str, FlowResult], file: str) -> None:
    """The flow's outputs match the manifest, once its state and task-run count do."""
    result = results[file]
    if not result.passed:
        pytest.skip(f"state / task-run count do not match yet: {result.reason}")
    assert result.outputs_ok, result.describe()


def test_expected_failures_name_run_kind_flows() -> None:
    """Every expected-failures entry names a run-kind corpus flow (stale entries are removed)."""
    if MISSING:
        pytest.skip(MISSING)
    known = {f.file for f in FLOWS}
    with_outputs = {f.file for f in FLOWS if f.expected_outputs}
    stale = [
        key
        for key in EXPECTED_FAILURES
        if (
            key.removeprefix(OUTPUTS_PREFIX) not in with_outputs
            if key.startswith(OUTPUTS_PREFIX)
            else key not in known
        )
    ]
    assert not stale, (
        f"{EXPECTED_FAILURES_FILE.name} lists entries that are not run-kind corpus flows: {stale}"
    )
