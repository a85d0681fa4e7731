"""A kill reaches subflow executions even when the control plane dies between killing the
parent and killing its children (found by the chaos suite's ``kill.committed`` fault point):
the parent's kill leaves its running children on the executor queue, and advancing an
execution whose caller was killed kills it. Here the parent is killed the way the crash leaves
it (its own transaction only, no KillExecution follow-up): the child, waiting on a Pause with
no timeout, still ends KILLED, and so does its own subflow execution."""

from __future__ import annotations

from kestrel.v1 import execution_pb2
from tests.integration.harness import wait_until
from tests.integration.rpc import connect, state_name

LEAF = """
id: leaf
namespace: tests.killcascade
tasks:
  - id: wait_forever
    type: io.kestra.plugin.core.flow.Pause
"""
MIDDLE = """
id: middle
namespace: tests.killcascade
tasks:
  - id: leaf
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.killcascade
    flowId: leaf
  - id: wait_forever
    type: io.kestra.plugin.core.flow.Pause
"""
TOP = """
id: top
namespace: tests.killcascade
tasks:
  - id: middle
    type: io.kestra.plugin.core.flow.Subflow
    namespace: tests.killcascade
    flowId: middle
"""


def _by_flow(stubs, flow_id: str) -> list[execution_pb2.Execution]:
    return list(stubs.executions.ListExecutions(
        execution_pb2.ListExecutionsRequest(namespace="tests.killcascade", flow_id=flow_id), timeout=10).executions)


def test_a_parent_killed_without_its_children_still_kills_them(server):
    stubs = connect(server.address)
    try:
        for source in (LEAF, MIDDLE, TOP):
            stubs.deploy(source)
        top = stubs.start("tests.killcascade", "top")
        wait_until(lambda: [e for e in _by_flow(stubs, "leaf") if state_name(e.state.current) == "PAUSED"],
                   timeout=60, what="the leaf execution paused")

        async def kill_parent_only() -> None:  # what survives a crash right after the commit
            async with server.cp.transaction() as unit:
                await server.cp.executor.kill(unit, top.id)

        server.run(kill_parent_only())
        assert state_name(stubs.get(top.id).state.current) == "KILLED"
        for flow_id in ("middle", "leaf"):
            (child,) = wait_until(
                lambda flow_id=flow_id: [e for e in _by_flow(stubs, flow_id) if state_name(e.state.current) == "KILLED"],
                timeout=60, what=f"the {flow_id} execution killed by the cascade")
            assert child.id
    finally:
        stubs.close()
