"""The chaos scenarios at CI sizes (``pytest tests/chaos -m chaos -s`` prints their figures;
``python -m tests.chaos --full`` runs the full sizes)."""

from __future__ import annotations

import json

import pytest

from tests.chaos.scenarios import CI, SCENARIOS
from tests.chaos.stack import ChaosSkip

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_chaos_scenario(name: str) -> None:
    try:
        figures = SCENARIOS[name](CI)
    except ChaosSkip as exc:
        pytest.skip(str(exc))
    print(f"\nchaos {name}: {json.dumps(figures, sort_keys=True)}")
