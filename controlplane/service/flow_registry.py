"""Flow registration: validation, revisions, and a cache of parsed flow revisions."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from controlplane.errors import ConflictError, FlowValidationError, Issue, NotFoundError
from controlplane.flows import check_task_types, parse_flow
from controlplane.flows.features import not_applied_warnings
from controlplane.flows.literal_checks import check_literals
from controlplane.flows.static_checks import check_expressions, lenient_warning
from controlplane.model import Flow
from controlplane.store import repository as repo


def flow_summary(flow: Flow) -> dict[str, Any]:
    """The ``spec`` column: what listings show without re-parsing the source."""
    return {
        "description": flow.description,
        "labels": flow.labels,
        "disabled": flow.disabled,
        "task_count": sum(1 for _ in flow.walk()),
        "inputs": [
            {"id": i.id, "type": i.type, "required": i.required,
             "defaults": json.dumps(i.defaults) if i.defaults is not None else "",
             "description": i.description or ""}
            for i in flow.inputs
        ],
    }


class FlowRegistry:
    """Validates and stores flow revisions; loads parsed revisions for the executor.

    Args:
        engine: The async SQLAlchemy engine.
        cache_size: Parsed revisions kept in memory (revisions are immutable, so never stale).
    """

    def __init__(self, engine: AsyncEngine, cache_size: int = 512) -> None:
        self._engine = engine
        self._cache: OrderedDict[tuple[str, str, int], Flow] = OrderedDict()
        self._cache_size = cache_size

    async def validate(
        self, conn: AsyncConnection, source: str, *, lenient_expressions: bool = False
    ) -> tuple[Flow, list[Issue]]:
        """Parse and check a flow source, including the registration-time expression checks
        (`controlplane.flows.static_checks`) and literal checks (`controlplane.flows.literal_checks`).

        Args:
            lenient_expressions: Report expression errors (syntax, unknown task/input/variable)
                and literal errors (duplicate SLA ids, a literal Subflow scheduleDate that is
                not a date-time) as warnings, as Kestra would accept the flow.

        Returns:
            The parsed flow and warnings.

        Raises:
            FlowValidationError: every problem found, with paths and YAML lines.
        """
        # Parsing is pure Python and can take seconds for a large source: off the event loop.
        flow = await asyncio.to_thread(parse_flow, source)
        issues = check_task_types(flow, await repo.known_task_types(conn))
        expression_errors, expression_warnings = await asyncio.to_thread(check_expressions, flow)
        expression_errors += await asyncio.to_thread(check_literals, flow)
        if lenient_expressions:
            expression_warnings = [lenient_warning(i) for i in expression_errors] + expression_warnings
        else:
            issues = sorted(issues + expression_errors, key=lambda i: i.line)
        if issues:
            raise FlowValidationError(issues, f"{flow.namespace}.{flow.id}")
        return flow, not_applied_warnings(flow) + expression_warnings

    async def register(
        self, conn: AsyncConnection, source: str, expected_revision: int = 0, *, lenient_expressions: bool = False
    ) -> tuple[repo.FlowRow, bool, list[Issue]]:
        """Store a new revision unless the source equals the latest one.

        Returns:
            (stored row, whether a revision was created, warnings).

        Args:
            lenient_expressions: As for :meth:`validate`.

        Raises:
            FlowValidationError: invalid source; nothing is stored.
            ConflictError: ``expected_revision`` is set and differs from the latest revision, or
                a concurrent registration took the same revision number.
        """
        flow, warnings = await self.validate(conn, source, lenient_expressions=lenient_expressions)
        await repo.lock_flow_key(conn, flow.namespace, flow.id)
        latest = await repo.get_flow(conn, flow.namespace, flow.id)
        latest_rev = latest.revision if latest else 0
        if expected_revision and expected_revision != latest_rev:
            raise ConflictError(
                f"flow {flow.namespace}.{flow.id}: expected revision {expected_revision} but the latest is {latest_rev}"
            )
        if latest is not None and not latest.deleted and latest.source == source:
            return latest, False, warnings
        try:
            async with conn.begin_nested():
                row = await repo.insert_flow_revision(
                    conn, flow.namespace, flow.id, latest_rev + 1, source, flow_summary(flow)
                )
        except IntegrityError:
            raise ConflictError(
                f"flow {flow.namespace}.{flow.id}: revision {latest_rev + 1} was registered concurrently; retry"
            ) from None
        return row, True, warnings

    async def load(self, conn: AsyncConnection, namespace: str, flow_id: str, revision: int) -> Flow:
        """The parsed flow revision (cached).

        Raises:
            NotFoundError: no such revision.
        """
        key = (namespace, flow_id, revision)
        flow = self._cache.get(key)
        if flow is not None:
            self._cache.move_to_end(key)
            return flow
        row = await repo.get_flow(conn, namespace, flow_id, revision)
        if row is None:
            raise NotFoundError(f"flow {namespace}.{flow_id} revision {revision} not found")
        flow = replace(await asyncio.to_thread(parse_flow, row.source), revision=row.revision)
        self._cache[key] = flow
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return flow

    async def latest(self, conn: AsyncConnection, namespace: str, flow_id: str, revision: int = 0) -> Flow:
        """The parsed latest (or given) revision of a flow that is not deleted.

        Raises:
            NotFoundError: unknown or deleted flow (message names namespace and id).
        """
        found = await repo.flow_revision(conn, namespace, flow_id, revision)
        if found is None or found[1]:
            raise NotFoundError(f"flow {namespace}.{flow_id} not found" + (f" at revision {revision}" if revision else ""))
        return await self.load(conn, namespace, flow_id, found[0])
