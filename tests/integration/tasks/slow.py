"""Custom task types used by integration tests (loaded by workers with ``--module``)."""

from __future__ import annotations

import time

from worker_sdk import task


@task("io.kestrel.tests.Sleep")
def sleep_task(ctx, props: dict) -> dict:
    """Sleep ``seconds`` (float) while honouring cancellation; outputs ``{"slept": seconds}``."""
    seconds = float(props.get("seconds", 1))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled.is_set():
            raise RuntimeError("cancelled")
        time.sleep(0.05)
    ctx.log.info(f"slept {seconds}s")
    return {"slept": seconds}
