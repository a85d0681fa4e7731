"""Flow sources: YAML -> model with line-aware errors, the task-type catalogue, input coercion.

Public API:
    parse_flow(source) -> Flow                      raises FlowValidationError
    check_task_types(flow, extra_types) -> list[Issue]
    canonical_type(name) -> str, is_flowable(name) -> bool, SUPPORTED_TASK_TYPES
    coerce_inputs(flow, raw) -> dict                raises InputValidationError
    parse_duration(text) -> float seconds           raises ValueError
    walk_with_paths(flow) -> iterator of (path, Task)
"""

from controlplane.flows.catalogue import (
    CORE_TASK_TYPES,
    LEGACY_ALIASES,
    SUPPORTED_TASK_TYPES,
    TASK_ALIASES,
    TaskKind,
    TaskTypeInfo,
    canonical_type,
    check_task_types,
    is_core_type,
    is_flowable,
    task_type_info,
)
from controlplane.flows.durations import format_duration, parse_duration
from controlplane.flows.inputs import INPUT_TYPES, coerce_inputs
from controlplane.flows.parser import parse_flow
from controlplane.flows.walk import walk_with_paths

__all__ = [
    "CORE_TASK_TYPES",
    "INPUT_TYPES",
    "LEGACY_ALIASES",
    "SUPPORTED_TASK_TYPES",
    "TASK_ALIASES",
    "TaskKind",
    "TaskTypeInfo",
    "canonical_type",
    "check_task_types",
    "coerce_inputs",
    "format_duration",
    "is_core_type",
    "is_flowable",
    "parse_duration",
    "parse_flow",
    "task_type_info",
    "walk_with_paths",
]
