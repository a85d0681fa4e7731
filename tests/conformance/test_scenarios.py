"""The scenario kinds of the conformance harness (pause-resume, restart/replay, concurrency):
every in-scope manifest entry of those kinds has a scripted scenario. Running them needs a live
stack: ``python -m tests.conformance --kind scenarios``."""

from __future__ import annotations

import pytest

from tests.conformance.runner import (
    _RESTART_EXPECTATIONS,
    SCENARIO_KINDS,
    corpus_missing_reason,
    load_scenario_flows,
)

pytestmark = pytest.mark.skipif(corpus_missing_reason() is not None, reason=str(corpus_missing_reason()))


def test_every_scenario_kind_has_flows_and_every_restart_flow_an_expectation() -> None:
    flows = load_scenario_flows()
    kinds = {kind for kind, _ in flows}
    assert kinds == set(SCENARIO_KINDS)
    restart = {flow.file for kind, flow in flows if kind == "restart/replay"}
    assert restart == set(_RESTART_EXPECTATIONS)
