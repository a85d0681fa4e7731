"""The domain model: plain Python, no gRPC, no SQL.

Flows (what the user wrote), executions and task runs (what happened), states and their
transitions. Every other layer converts to and from these types at its edge.
"""

from controlplane.model.execution import Attempt, Execution, TaskRun, change_state
from controlplane.model.flow import Flow, Input, Output, Task
from controlplane.model.state import IllegalTransitionError, State, StateHistory

__all__ = [
    "Attempt",
    "change_state",
    "Execution",
    "Flow",
    "IllegalTransitionError",
    "Input",
    "Output",
    "State",
    "StateHistory",
    "Task",
    "TaskRun",
]
