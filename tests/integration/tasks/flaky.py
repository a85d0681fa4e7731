"""Custom task types for retry and timeout tests (loaded by workers with ``--module``)."""

from __future__ import annotations

import time

from worker_sdk import task


@task("io.kestrel.tests.Flaky")
def flaky(ctx, props: dict) -> dict:
    """Fail every attempt numbered below ``succeedOn`` (1-based ``ctx.attempt``; 0 = never
    succeed), then succeed with ``{"attempt": n}``.

    A failing attempt raises at once, or with ``hangSeconds`` first sleeps that long while
    honouring cancellation (to be stopped by the task's ``timeout``).
    """
    succeed_on = int(props.get("succeedOn", 1))
    if succeed_on and ctx.attempt >= succeed_on:
        ctx.log.info(f"attempt {ctx.attempt} succeeds")
        return {"attempt": ctx.attempt}
    hang = float(props.get("hangSeconds", 0))
    deadline = time.monotonic() + hang
    while time.monotonic() < deadline:
        if ctx.cancelled.wait(0.05):
            raise RuntimeError(f"attempt {ctx.attempt} cancelled")
    raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
