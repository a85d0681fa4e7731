"""Schedule triggers end to end on an injected clock: the control plane's own scheduler loop
is off and the tests drive :class:`Scheduler` passes by hand, months of schedule in seconds.

Executions are real (Postgres, executor, a worker process running the tasks); the trigger
variables are checked in the task outputs the worker returned.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from controlplane.scheduler import Scheduler, SchedulerOptions
from controlplane.scheduler import store as sched_store
from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as settings_for
from worker_sdk.client import KestrelClient


class FakeClock:
    """A settable UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, *args: int) -> None:
        self.now = datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def server(database_url):
    srv = ServerThread(settings_for(database_url, scheduler_enabled=False)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with KestrelClient(server.address, timeout=30) as c, worker_process(server.address):
        yield c


@pytest.fixture
def clock(client, server):
    """A fake clock; after the test, its flows are deleted so their schedules stop."""
    yield FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    for flow in client.list_flows("tests.schedule"):
        client.delete_flow(flow.namespace, flow.id)


def _scheduler(server, clock, **options) -> Scheduler:
    cp = server.cp
    return Scheduler(cp.transaction, cp.flows.load, cp.executor, clock=clock, options=SchedulerOptions(**options))


def _pass(server, *schedulers: Scheduler, standby: bool = False) -> int:
    async def run():
        return sum(await asyncio.gather(*(s.run_once(standby=standby) for s in schedulers)))
    return server.run(run())


def _executions(server, namespace: str, flow_id: str) -> list:
    async def q():
        async with server.cp.transaction() as unit:
            rows = await unit.conn.execute(sa.text(
                "SELECT id, trigger, labels, state FROM executions WHERE namespace=:n AND flow_id=:f ORDER BY created_at"),
                {"n": namespace, "f": flow_id})
            return rows.all()
    return server.run(q())


def _dates(server, namespace: str, flow_id: str) -> list[str]:
    return [r.trigger["variables"]["date"] for r in _executions(server, namespace, flow_id)]


def _flow(flow_id: str, trigger: str, namespace: str = "tests.schedule") -> str:
    return f"""
id: {flow_id}
namespace: {namespace}
inputs:
  - id: who
    type: STRING
    defaults: nobody
tasks:
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ trigger.date }}}}|{{{{ trigger.previous }}}}|{{{{ trigger.next }}}}|{{{{ inputs.who }}}}"
triggers:
{trigger}
"""


def test_hourly_paris_schedule_over_fall_back_fires_each_tick_once_with_its_variables(server, client, clock):
    clock.set(2026, 10, 24, 22, 30)
    s1, s2 = _scheduler(server, clock), _scheduler(server, clock)
    client.deploy_flow(_flow("paris-hourly", """
  - id: hourly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 * * * *"
    timezone: Europe/Paris
    inputs:
      who: "{{ trigger.date | date('HH:mm', timeZone='Europe/Paris') }}"
"""))
    _pass(server, s1, s2)  # registers the trigger: next tick from now
    assert _executions(server, "tests.schedule", "paris-hourly") == []
    # Four hours across the repeated hour, one pass per 30 minutes, two schedulers racing.
    for _ in range(8):
        clock.now += timedelta(minutes=30)
        _pass(server, s1, s2)
    assert _dates(server, "tests.schedule", "paris-hourly") == [
        "2026-10-25T01:00:00+02:00",  # 23:00Z
        "2026-10-25T02:00:00+02:00",  # 00:00Z; the second 02:00 (01:00Z, +01:00) does not fire
        "2026-10-25T03:00:00+01:00",  # 02:00Z
    ]
    first = _executions(server, "tests.schedule", "paris-hourly")[1]
    execution = client.wait_execution(first.id, timeout=60)
    assert execution.state.current.value == "SUCCESS"
    assert execution.task_runs[0].outputs["value"] == (
        "2026-10-25T02:00:00+02:00|2026-10-25T01:00:00+02:00|2026-10-25T03:00:00+01:00|02:00")


def test_spring_forward_new_york_daily_0230_fires_once_at_0330_edt(server, client, clock):
    clock.set(2026, 3, 6, 12)
    s = _scheduler(server, clock)
    client.deploy_flow(_flow("ny-0230", """
  - id: daily
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "30 2 * * *"
    timezone: America/New_York
"""))
    _pass(server, s)
    for _ in range(4 * 24):
        clock.now += timedelta(hours=1)
        _pass(server, s)
    assert _dates(server, "tests.schedule", "ny-0230") == [
        "2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00"]


@pytest.mark.parametrize(("policy", "missed_fired"), [("ALL", 30), ("LAST", 1), ("NONE", 0)])
def test_missed_schedules_after_a_30_minute_outage(server, client, clock, policy, missed_fired):
    clock.set(2026, 2, 1, 10, 0, 30)
    s = _scheduler(server, clock)
    flow_id = f"every-minute-{policy.lower()}"
    client.deploy_flow(_flow(flow_id, f"""
  - id: minutely
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "* * * * *"
    recoverMissedSchedules: {policy}
"""))
    _pass(server, s)
    # Outage: nothing runs from 10:00:30 to 10:30:30; ticks 10:01 … 10:30 are missed.
    clock.set(2026, 2, 1, 10, 30, 30)
    _pass(server, s)
    dates = _dates(server, "tests.schedule", flow_id)
    assert len(dates) == missed_fired
    if policy == "LAST":
        assert dates == ["2026-02-01T10:30:00Z"]
    # Each tick's trigger.previous / trigger.next are its cron neighbours, also when several ticks
    # fire in one pass or earlier ones were skipped.
    neighbours = {r.trigger["variables"]["date"]: (r.trigger["variables"]["previous"], r.trigger["variables"]["next"])
                  for r in _executions(server, "tests.schedule", flow_id)}
    if policy == "ALL":
        assert neighbours["2026-02-01T10:05:00Z"] == ("2026-02-01T10:04:00Z", "2026-02-01T10:06:00Z")
        assert neighbours["2026-02-01T10:01:00Z"] == ("2026-02-01T10:00:00Z", "2026-02-01T10:02:00Z")
    if policy == "LAST":
        assert neighbours["2026-02-01T10:30:00Z"] == ("2026-02-01T10:29:00Z", "2026-02-01T10:31:00Z")
    # After the outage the schedule goes on normally.
    clock.set(2026, 2, 1, 10, 31, 0)
    _pass(server, s)
    assert len(_dates(server, "tests.schedule", flow_id)) == missed_fired + 1
    assert _dates(server, "tests.schedule", flow_id)[-1] == "2026-02-01T10:31:00Z"
    last = _executions(server, "tests.schedule", flow_id)[-1].trigger["variables"]
    assert (last["previous"], last["next"]) == ("2026-02-01T10:30:00Z", "2026-02-01T10:32:00Z")


def test_late_maximum_delay_skips_late_ticks_and_records_why(server, client, clock):
    clock.set(2026, 2, 2, 10, 0, 30)
    s = _scheduler(server, clock, missed_after=3600)
    client.deploy_flow(_flow("late-max", """
  - id: minutely
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "* * * * *"
    lateMaximumDelay: PT90S
"""))
    _pass(server, s)
    clock.set(2026, 2, 2, 10, 5, 0)  # ticks 10:01 … 10:05; only 10:04 and 10:05 are within 90 s
    _pass(server, s)
    assert _dates(server, "tests.schedule", "late-max") == ["2026-02-02T10:04:00Z", "2026-02-02T10:05:00Z"]

    async def fires():
        async with server.cp.transaction() as unit:
            return await sched_store.list_fires(unit.conn, "tests.schedule", "late-max")
    skipped = [f for f in server.run(fires()) if f.skipped_reason]
    assert len(skipped) == 3 and "lateMaximumDelay" in skipped[0].skipped_reason


def test_a_tick_is_claimed_once_even_when_two_schedulers_and_the_unique_key_race(server, client, clock):
    clock.set(2026, 2, 3, 10, 0, 0)
    schedulers = [_scheduler(server, clock) for _ in range(3)]
    client.deploy_flow(_flow("race", """
  - id: every-second
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "* * * * * *"
    withSeconds: true
"""))
    _pass(server, *schedulers)
    for _ in range(20):
        clock.now += timedelta(milliseconds=700)
        _pass(server, *schedulers)
        _pass(server, *schedulers, standby=True)
    dates = _dates(server, "tests.schedule", "race")
    assert len(dates) == 14 and len(set(dates)) == 14  # 10:00:01 … 10:00:14, each once

    async def double_claim():
        async with server.cp.transaction() as unit:
            return await sched_store.record_fire(unit.conn, "tests.schedule", "race", "every-second",
                                                 scheduled_date=datetime(2026, 2, 3, 10, 0, 5, tzinfo=UTC))
    assert server.run(double_claim()) is None  # the Postgres unique key refuses a second claim


def test_disabled_trigger_schedule_on_dates_backfill_and_stop_after(server, client, clock):
    clock.set(2026, 4, 1, 8, 0)
    s = _scheduler(server, clock)
    client.deploy_flow("""
id: calendar
namespace: tests.schedule
tasks:
  - id: fail-on-second
    type: io.kestra.plugin.core.execution.Fail
    condition: "{{ trigger.date == '2026-04-01T09:00:00Z' }}"
triggers:
  - id: dates
    type: io.kestra.plugin.core.trigger.ScheduleOnDates
    dates: ["2026-04-01T08:30:00Z", "2026-04-01T09:00:00Z", "2026-04-01T09:30:00Z"]
    stopAfter: [FAILED]
  - id: off
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "*/5 * * * *"
    disabled: true
  - id: weekdays
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 12 * * *"
    conditions:
      - type: io.kestra.plugin.core.condition.Weekend
  - id: history
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 0 * * *"
    backfill:
      start: "2026-03-29T00:00:00Z"
""")
    _pass(server, s)
    rows = _executions(server, "tests.schedule", "calendar")
    backfill = [r for r in rows if r.trigger["id"] == "history"]
    assert [r.trigger["variables"]["date"] for r in backfill] == [
        "2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-01T00:00:00Z"]
    assert all(r.labels.get("system.backfill") == "true" for r in backfill)
    clock.set(2026, 4, 1, 8, 45)
    _pass(server, s)
    first = [r for r in _executions(server, "tests.schedule", "calendar") if r.trigger["id"] == "dates"]
    assert len(first) == 1
    clock.set(2026, 4, 1, 9, 5)
    _pass(server, s)
    second = [r for r in _executions(server, "tests.schedule", "calendar") if r.trigger["id"] == "dates"][-1]
    assert client.wait_execution(second.id, timeout=60).state.current.value == "FAILED"
    # stopAfter FAILED disables the trigger: 09:30 does not fire.
    wait_until(lambda: _pass(server, s) == 0 and _trigger(server, "calendar", "dates").disabled, timeout=30,
               what="stopAfter to disable the trigger")
    clock.set(2026, 4, 4, 12, 30)  # a Saturday: `weekdays` fires only on weekends (Weekend condition)
    _pass(server, s)
    ids = [r.trigger["id"] for r in _executions(server, "tests.schedule", "calendar")]
    assert ids.count("dates") == 2 and "off" not in ids
    weekend = [r.trigger["variables"]["date"] for r in _executions(server, "tests.schedule", "calendar")
               if r.trigger["id"] == "weekdays"]
    assert weekend == ["2026-04-04T12:00:00Z"]  # 1-3 April (Wed-Fri) skipped by the condition


def _trigger(server, flow_id: str, trigger_id: str):
    async def q():
        async with server.cp.transaction() as unit:
            return await sched_store.get_trigger(unit.conn, "tests.schedule", flow_id, trigger_id)
    return server.run(q())


def test_enable_disable_through_the_api_and_listing(server, client, clock):
    from controlplane.api.triggers import list_triggers, set_trigger_enabled

    clock.set(2026, 5, 1, 0, 0)
    client.deploy_flow(_flow("toggled", """
  - id: daily
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "@daily"
"""))
    listed = {t.trigger_id: t for t in list_triggers(client, "tests.schedule", "toggled")}
    assert listed["daily"].enabled and listed["daily"].next_fire_time is not None
    off = set_trigger_enabled(client, "tests.schedule", "toggled", "daily", False)
    assert not off.enabled and off.next_fire_time is None and off.disabled_reason
    on = set_trigger_enabled(client, "tests.schedule", "toggled", "daily", True)
    assert on.enabled
    from worker_sdk.errors import NotFoundError
    with pytest.raises(NotFoundError, match="no trigger 'nope'"):
        set_trigger_enabled(client, "tests.schedule", "toggled", "nope", False)


def test_registration_refuses_bad_triggers_naming_flow_trigger_and_field(server, client, clock):
    from worker_sdk.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as caught:
        client.deploy_flow("""
id: bad-triggers
namespace: tests.schedule
tasks:
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: hi
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 25 * * *"
    timezone: Europe/Pariss
    recoverMissedSchedules: SOME
  - id: after
    type: io.kestra.plugin.core.trigger.Flow
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionStatus
        in: [DONE]
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
""")
    text = str(caught.value)
    assert "triggers[0].cron: flow tests.schedule.bad-triggers: trigger 'nightly': invalid cron '0 25 * * *'" in text
    assert "triggers[0].timezone" in text and "unknown time zone 'Europe/Pariss'" in text
    assert "triggers[0].recoverMissedSchedules" in text
    assert "triggers[1].conditions[0].in" in text and "unknown state 'DONE'" in text
    assert "triggers[2].key" in text and "'key' is required" in text
    assert client.list_flows("tests.schedule") == []  # nothing stored


def test_backfill_through_the_api_start_pause_resume_delete(server, client, clock):
    from controlplane.api.triggers import change_backfill, start_backfill
    from worker_sdk.errors import FailedPreconditionError, InvalidArgumentError

    clock.set(2026, 6, 10, 12, 0)
    s = _scheduler(server, clock)
    client.deploy_flow(_flow("backfilled", """
  - id: daily
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 6 * * *"
"""))
    _pass(server, s)
    with pytest.raises(InvalidArgumentError, match="is not before"):
        start_backfill(client, "tests.schedule", "backfilled", "daily", datetime(2026, 6, 9, tzinfo=UTC),
                       datetime(2026, 6, 1, tzinfo=UTC))
    info = start_backfill(client, "tests.schedule", "backfilled", "daily", datetime(2026, 6, 1, tzinfo=UTC),
                          datetime(2026, 6, 5, 12, tzinfo=UTC))
    assert info.backfill_next == datetime(2026, 6, 1, tzinfo=UTC) and not info.backfill_paused
    assert change_backfill(client, "tests.schedule", "backfilled", "daily", "pause").backfill_paused
    _pass(server, s)
    assert _executions(server, "tests.schedule", "backfilled") == []  # paused: nothing runs
    change_backfill(client, "tests.schedule", "backfilled", "daily", "resume")
    _pass(server, s)
    rows = _executions(server, "tests.schedule", "backfilled")
    assert [r.trigger["variables"]["date"] for r in rows] == [f"2026-06-0{d}T06:00:00Z" for d in range(1, 6)]
    assert all(r.labels["system.backfill"] == "true" for r in rows)
    with pytest.raises(FailedPreconditionError, match="no backfill in progress"):
        change_backfill(client, "tests.schedule", "backfilled", "daily", "delete")
