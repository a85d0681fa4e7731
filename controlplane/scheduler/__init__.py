"""Triggers: Schedule (cron, DST-correct), ScheduleOnDates, Flow and Webhook; backfills;
trigger conditions. Entry point: :class:`Scheduler` (``service.py``), run by every
control-plane replica (``controlplane/server.py``), correct with any number of them."""

from controlplane.scheduler.service import Scheduler, SchedulerOptions, run_forever, system_clock

__all__ = ["Scheduler", "SchedulerOptions", "run_forever", "system_clock"]
