"""``errorLogs()`` in an ``errors`` handler lists the ERROR lines of the failed task (Kestra's errors.yaml)."""

from __future__ import annotations

from tests.integration.harness import worker_process
from tests.integration.rpc import connect, state_name

FLOW = """
id: error-logs
namespace: tests.errorlogs
tasks:
  - id: failed
    type: io.kestra.plugin.core.execution.Fail
    errorMessage: "disk full"
errors:
  - id: report
    type: io.kestra.plugin.core.log.Log
    message: |
      {%- for log in errorLogs() -%}
      - task: {{ log.taskId }}, level: {{ log.level }}, message: {{ log.message }}
      {%- endfor -%}
"""


def test_error_logs_reach_the_errors_handler(server):
    stubs = connect(server.address)
    try:
        stubs.deploy(FLOW)
        with worker_process(server.address):
            final = stubs.wait(stubs.start("tests.errorlogs", "error-logs").id, timeout=60)
        report = [e.message for e in stubs.logs_stub_list(final.id) if e.task_id == "report"]
    finally:
        stubs.close()
    assert state_name(final.state.current) == "FAILED"
    assert report == ["- task: failed, level: ERROR, message: disk full"]
