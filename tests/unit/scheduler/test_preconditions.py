"""Flow-trigger ``preconditions``: listed flows and ``where`` groups become one member each of
a time-window condition; a single member is checked on each event."""

from __future__ import annotations

from controlplane.scheduler.conditions import ConditionContext, holds
from controlplane.scheduler.service import _filter, _holds_quietly, _preconditions

PRE = {
    "id": "flow",
    "flows": [
        {"namespace": "io.kestra.tests.trigger.preconditions", "flowId": "flow-a", "states": ["SUCCESS"]},
        {"namespace": "io.kestra.tests.trigger.preconditions", "flowId": "flow-b", "states": ["SUCCESS"]},
    ],
    "where": [{"id": "labelled", "filters": [
        {"field": "NAMESPACE", "type": "STARTS_WITH", "value": "io.kestra.tests.trigger"},
        {"field": "FLOW_ID", "type": "EQUAL_TO", "value": "flow-a"},
        {"field": "EXPRESSION", "type": "IS_TRUE", "value": "{{ labels.some == 'label' }}"},
    ]}],
}


def _ctx(flow_id: str, state: str = "SUCCESS", labels: dict | None = None) -> ConditionContext:
    execution = {"namespace": "io.kestra.tests.trigger.preconditions", "flowId": flow_id, "state": state,
                 "labels": labels or {}}
    return ConditionContext(variables={"trigger": {"flowId": flow_id, "namespace": execution["namespace"],
                                                   "state": state}, "labels": labels or {}}, execution=execution)


def test_members_of_the_window():
    (multiple,) = _preconditions(PRE)
    members = multiple["conditions"]
    assert list(members) == ["flow_0", "flow_1", "where_labelled"]
    assert holds(members["flow_0"], _ctx("flow-a")) and not holds(members["flow_0"], _ctx("flow-a", "FAILED"))
    assert holds(members["flow_1"], _ctx("flow-b")) and not holds(members["flow_1"], _ctx("flow-a"))
    assert holds(members["where_labelled"], _ctx("flow-a", labels={"some": "label"}))
    assert not _holds_quietly(members["where_labelled"], _ctx("flow-a"))  # no such label: not matched


def test_single_flow_is_checked_directly_and_unknown_filters_never_match():
    (only,) = _preconditions({"flows": [{"namespace": "a.b", "flowId": "x"}]})
    assert holds(only, ConditionContext(
        variables={}, execution={"namespace": "a.b", "flowId": "x", "state": "SUCCESS"}))
    assert not holds(_filter({"field": "FLOW_ID", "type": "REGEX", "value": ".*"}), _ctx("x"))
    assert holds(_filter({"field": "NAMESPACE", "type": "ENDS_WITH", "value": "preconditions"}), _ctx("x"))
