"""The chaos suite's Postgres checks find what they look for: a task run with two SUCCESS
attempts, a SUCCESS task run without one, and a duplicated task run (rows written by hand)."""

from __future__ import annotations

import json

import psycopg
import pytest

from controlplane.store.migrations import upgrade
from tests.chaos.stack import (
    attempts_histogram,
    duplicate_completions,
    fresh_database,
    pg_dsn,
    task_run_counts,
)

pytestmark = pytest.mark.chaos


def _execution(conn: psycopg.Connection, execution_id: str, task_runs: dict[str, list[str]]) -> None:
    """One SUCCESS execution of flow ``f`` with task runs ``{id: [attempt states]}``."""
    empty = json.dumps([])
    conn.execute(
        """INSERT INTO executions (id, namespace, flow_id, flow_revision, state, histories, inputs, labels)
           VALUES (%s, 'tests.chaos', 'f', 1, 'SUCCESS', %s, '{}', '[]')""", (execution_id, empty))
    for seq, (task_run_id, attempts) in enumerate(task_runs.items()):
        conn.execute(
            """INSERT INTO task_runs (id, execution_id, seq, task_id, task_type, state, histories, attempt, value)
               VALUES (%s, %s, %s, 'nap', 'io.kestra.plugin.core.flow.Sleep', 'SUCCESS', %s, %s, %s)""",
            (task_run_id, execution_id, seq, empty, len(attempts), str(seq)))
        for n, state in enumerate(attempts, start=1):
            conn.execute(
                "INSERT INTO task_run_attempts (task_run_id, attempt, state, histories) VALUES (%s, %s, %s, %s)",
                (task_run_id, n, state, empty))


def test_checks_report_duplicate_and_missing_completions_and_extra_task_runs() -> None:
    with fresh_database("checks") as url:
        upgrade(url)
        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            _execution(conn, "e-ok", {"tr-ok": ["SUCCESS"]})
            _execution(conn, "e-redelivered", {"tr-redelivered": ["FAILED", "SUCCESS"]})
            _execution(conn, "e-twice", {"tr-twice": ["SUCCESS", "SUCCESS"]})
            _execution(conn, "e-none", {"tr-none": ["FAILED"]})
            _execution(conn, "e-extra", {"tr-a": ["SUCCESS"], "tr-b": ["SUCCESS"]})
            assert sorted(duplicate_completions(conn, "f")) == [("tr-none", 0), ("tr-twice", 2)]
            assert task_run_counts(conn, "f") == {1: 4, 2: 1}
            assert attempts_histogram(conn, "f", "nap") == {1: 4, 2: 2}
