"""Loop values are bounded before the executor stores and tracks them."""

from __future__ import annotations

import pytest

from controlplane.engine.flowables.loop import MAX_LOOP_VALUE_BYTES, MAX_LOOP_VALUES, resolve_values
from controlplane.engine.plan import FlowableError


def test_too_many_values_are_refused_with_the_task_and_property():
    with pytest.raises(FlowableError, match=rf"task 'each': property 'values' has {MAX_LOOP_VALUES + 1} values"):
        resolve_values(list(range(MAX_LOOP_VALUES + 1)), task_id="each", prop="values")
    assert len(resolve_values(list(range(MAX_LOOP_VALUES)), task_id="each", prop="values")) == MAX_LOOP_VALUES


def test_a_value_too_long_for_the_task_run_key_is_refused():
    with pytest.raises(FlowableError, match=f"longer than {MAX_LOOP_VALUE_BYTES} bytes"):
        resolve_values(["é" * (MAX_LOOP_VALUE_BYTES // 2 + 1)], task_id="each", prop="values")
    assert resolve_values([{"k": "v" * 1000}], task_id="each", prop="values") == ['{"k":"' + "v" * 1000 + '"}']
