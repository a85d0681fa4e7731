"""Every-second schedules on two control-plane replicas sharing one Postgres and Redis; the
scheduler of the replica leading it stops mid-run without giving up its Redis lock (a crash):
the other replica takes over and every tick runs exactly once. Lateness is measured by hand
(see the issue's closing note), not asserted here."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa

from tests.integration.harness import ServerThread
from tests.integration.harness import test_settings as settings_for
from worker_sdk.client import KestrelClient


def _leads(server: ServerThread) -> bool:
    leadership = next(lead for lead in server.cp._leaders if lead._key.endswith(":leader:scheduler"))
    return server.run(leadership.is_leader())


def test_every_tick_once_across_replicas_when_the_leader_crashes(database_url):
    first = ServerThread(settings_for(database_url)).start()
    second = ServerThread(settings_for(database_url, redis_prefix=first.settings.redis_prefix)).start()
    try:
        with KestrelClient(first.address, timeout=30) as client:
            for i in range(5):
                client.deploy_flow(f"""
id: tick{i}
namespace: tests.ha
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "{{{{ trigger.date }}}}"
triggers:
  - id: every-second
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "* * * * * *"
    withSeconds: true
""")
        began = datetime.now(UTC)
        time.sleep(6)
        leader = first if _leads(first) else second

        def crash():
            for task in leader.cp._loops:
                if "run_forever" in repr(task.get_coro()):
                    task.cancel()

        leader.loop.call_soon_threadsafe(crash)
        time.sleep(10)
        ended = datetime.now(UTC)

        async def fires():
            async with first.cp.transaction() as unit:
                return (await unit.conn.execute(sa.text(
                    "SELECT flow_id, scheduled_date FROM trigger_fires WHERE namespace = 'tests.ha'"))).all()

        def landed(rows) -> bool:
            """Every schedule's ticks up to `ended` are recorded (a loaded machine lands them late)."""
            for i in range(5):
                fired = {int(r.scheduled_date.timestamp()) for r in rows if r.flow_id == f"tick{i}"}
                if not fired or max(fired) < int(ended.timestamp()) - 1:
                    return False
            return True

        deadline = time.monotonic() + 30
        rows = first.run(fires())
        while not landed(rows) and time.monotonic() < deadline:
            time.sleep(0.5)
            rows = first.run(fires())
        for i in range(5):
            fired = [int(r.scheduled_date.timestamp()) for r in rows if r.flow_id == f"tick{i}"]
            assert fired, f"tick{i}: never fired"
            # A schedule starts when the scheduler first reads the flow (within ~2 s of the deploy,
            # later on a loaded machine): every second from its first tick to `ended` must fire.
            first_tick = max(int(began.timestamp()) + 2, min(fired))
            # (12 s: the crash at +6 s still falls inside the window; CI saw a first tick at +9 s)
            assert first_tick <= int(began.timestamp()) + 12, f"tick{i}: first tick only at {first_tick}"
            expected = set(range(first_tick, int(ended.timestamp())))
            assert len(fired) == len(set(fired)), f"tick{i}: a tick fired twice"
            assert expected <= set(fired), f"tick{i}: ticks missing {sorted(expected - set(fired))}"
    finally:
        second.stop()
        first.stop()
