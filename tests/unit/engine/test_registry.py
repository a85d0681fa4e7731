"""The flowable registry matches the catalogue: what the executor runs is what deploy accepts."""

from __future__ import annotations

from controlplane.engine.flowables import FLOWABLES
from controlplane.flows.catalogue import SUPPORTED_TASK_TYPES, TASK_ALIASES, is_flowable


def test_every_registered_flowable_is_a_supported_flowable_type():
    assert set(FLOWABLES) == {t for t in SUPPORTED_TASK_TYPES if is_flowable(t)}
    for name, flowable in FLOWABLES.items():
        assert flowable.type == name
        assert callable(flowable.step)


def test_legacy_aliases_of_registered_flowables_resolve_to_them():
    legacy = {alias: name for alias, name in TASK_ALIASES.items() if name in FLOWABLES}
    assert "io.kestra.core.tasks.flows.EachParallel" in legacy
    assert all(name in FLOWABLES for name in legacy.values())
