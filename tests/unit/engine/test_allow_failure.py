"""AllowFailure: a failure inside becomes WARNING for it and the flow continues."""

from __future__ import annotations

from controlplane.model import State
from tests.unit.engine.sim import Sim

# Kestra's allow-failure.yaml, without the Switch part.
FLOW = """
id: allow-failure
namespace: tests
tasks:
  - id: first
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - id: allow
        type: io.kestra.plugin.core.flow.AllowFailure
        tasks:
          - id: seq
            type: io.kestra.plugin.core.flow.Sequential
            tasks:
              - {id: ok, type: io.kestra.plugin.core.log.Log, message: x}
              - {id: ko, type: io.kestra.plugin.core.execution.Fail}
              - {id: never, type: io.kestra.plugin.core.log.Log, message: x}
        errors:
          - {id: local-error, type: io.kestra.plugin.core.log.Log, message: x}
      - {id: todo, type: io.kestra.plugin.core.log.Log, message: x}
  - {id: last, type: io.kestra.plugin.core.log.Log, message: x}
errors:
  - {id: global-error, type: io.kestra.plugin.core.log.Log, message: x}
"""


def test_failure_inside_runs_local_errors_only_and_ends_warning():
    sim = Sim(FLOW)
    assert sim.drive() is State.WARNING
    states = {tr.task_id: tr.state for tr in sim.runs()}
    assert states == {
        "first": State.WARNING, "allow": State.WARNING, "seq": State.FAILED, "ok": State.SUCCESS,
        "ko": State.FAILED, "local-error": State.SUCCESS, "todo": State.SUCCESS, "last": State.SUCCESS,
    }


def test_success_inside_is_success_and_allow_warning_turns_warning_into_success():
    sim = Sim(FLOW.replace("{id: ko, type: io.kestra.plugin.core.execution.Fail}",
                           "{id: ko, type: io.kestra.plugin.core.log.Log, message: x}"))
    assert sim.drive() is State.SUCCESS
    sim = Sim(FLOW.replace("type: io.kestra.plugin.core.flow.AllowFailure",
                           "type: io.kestra.plugin.core.flow.AllowFailure\n        allowWarning: true"))
    assert sim.drive() is State.SUCCESS
    assert sim.state_of("allow") is State.SUCCESS


def test_kill_inside_stays_killed():
    sim = Sim(FLOW)
    sim.advance()
    sim.pick("ok")
    sim.kill()
    sim.finish("ok", state=State.KILLED)
    sim.advance()
    assert sim.state_of("allow") is State.KILLED and sim.done is State.KILLED
