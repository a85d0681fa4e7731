"""``io.kestra.plugin.core.output.OutputValues``: exposes a map of values as outputs.

Kestra reference: FEATURES.md §3.2 (``output.OutputValues``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker_sdk.context import TaskContext, TaskFailure

TYPE = "io.kestra.plugin.core.output.OutputValues"


def output_values(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``values`` under the output ``values``.

    Properties:
        values (dict): The (already rendered) values; types of literals are kept. Missing or
            null gives an empty map.

    Returns:
        ``{"values": {...}}``.

    Raises:
        TaskFailure: ``values`` is not a map.
    """
    values = props.get("values")
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise TaskFailure(f"property 'values' must be a map, got {type(values).__name__}")
    return {"values": dict(values)}
