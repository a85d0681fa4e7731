"""The Celery app of the baseline (``celery -A bench.celery_app worker``): one no-op task that
increments a Redis counter so the benchmark can see completions without a result backend.

Worker processes read their queue from ``KESTREL_BENCH_CELERY_QUEUE`` and the broker from
``KESTREL_BENCH_REDIS_URL``. Importing this module needs Celery (the ``bench`` extra).
"""

from __future__ import annotations

import os

import redis
from celery import Celery


def counter_key(queue: str) -> str:
    """Redis key counting the no-op tasks run for ``queue``."""
    return f"{queue}:done"


def make_app(queue: str, redis_url: str) -> Celery:
    """A Celery app on ``redis_url`` whose task ``bench.noop`` increments ``counter_key(queue)``."""
    app = Celery("kestrel_bench", broker=redis_url)
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        worker_prefetch_multiplier=4,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    state: dict[str, redis.Redis] = {}

    @app.task(name="bench.noop", ignore_result=True, shared=False)
    def noop() -> None:
        client = state.get("r")
        if client is None:
            client = state["r"] = redis.Redis.from_url(redis_url)
        client.incr(counter_key(queue))

    return app


app = make_app(
    os.environ.get("KESTREL_BENCH_CELERY_QUEUE", "kestrel-bench"),
    os.environ.get("KESTREL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
)
