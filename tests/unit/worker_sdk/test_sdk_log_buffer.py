"""LogBuffer: batching, ordering, retry on send failure, bounded backlog; TaskLogger."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from worker_sdk.context import LogBuffer, LogRecord, TaskLogger, normalize_level


def rec(i: int, level: str = "INFO") -> LogRecord:
    return LogRecord(level, f"line {i}", datetime.now(UTC))


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.fail_times = fail_times

    async def __call__(self, batch: list[LogRecord]) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("unavailable")
        self.batches.append([r.message for r in batch])

    @property
    def lines(self) -> list[str]:
        return [line for batch in self.batches for line in batch]


async def test_periodic_flush_sends_lines_while_running() -> None:
    sent = Recorder()
    buffer = LogBuffer(sent, flush_interval=0.05)
    buffer.start()
    buffer.append(rec(1))
    buffer.append(rec(2))
    await asyncio.sleep(0.2)
    assert sent.batches == [["line 1", "line 2"]]  # sent before close: streamed, not at the end
    await buffer.close()
    assert sent.lines == ["line 1", "line 2"]


async def test_full_batch_flushes_early_and_batches_are_capped() -> None:
    sent = Recorder()
    buffer = LogBuffer(sent, flush_interval=10.0, max_batch=100)
    buffer.start()
    for i in range(250):
        buffer.append(rec(i))
    await asyncio.sleep(0.1)  # far less than flush_interval
    assert sent.batches and all(len(batch) <= 100 for batch in sent.batches)
    assert len(sent.lines) >= 200
    await buffer.close()
    assert sent.lines == [f"line {i}" for i in range(250)]


async def test_close_flushes_everything_in_order() -> None:
    sent = Recorder()
    buffer = LogBuffer(sent, flush_interval=10.0)
    buffer.start()
    for i in range(5):
        buffer.append(rec(i))
    await buffer.close()
    assert sent.lines == [f"line {i}" for i in range(5)]
    buffer.append(rec(99))  # after close: dropped
    assert buffer.dropped == 1 and buffer.pending == 0


async def test_failed_send_is_retried_in_order() -> None:
    sent = Recorder(fail_times=2)
    buffer = LogBuffer(sent, flush_interval=0.02)
    buffer.start()
    for i in range(3):
        buffer.append(rec(i))
    await asyncio.sleep(0.05)
    buffer.append(rec(3))
    await buffer.close()
    assert sent.lines == ["line 0", "line 1", "line 2", "line 3"]
    assert buffer.dropped == 0


async def test_close_gives_up_after_attempts_and_counts_drops() -> None:
    sent = Recorder(fail_times=1000)
    buffer = LogBuffer(sent, flush_interval=0.01, close_attempts=2)
    buffer.start()
    buffer.append(rec(1))
    await buffer.close()
    assert sent.lines == [] and buffer.dropped == 1


async def test_backlog_is_bounded_dropping_oldest() -> None:
    sent = Recorder(fail_times=1000)
    buffer = LogBuffer(sent, flush_interval=10.0, max_batch=2, max_pending=5)
    for i in range(8):
        buffer.append(rec(i))
    assert buffer.pending == 5 and buffer.dropped == 3
    sent.fail_times = 0
    await buffer.flush()
    assert sent.lines == [f"line {i}" for i in range(3, 8)]


async def test_batches_are_capped_in_bytes() -> None:
    sent = Recorder()
    buffer = LogBuffer(sent, flush_interval=10.0, max_batch=100, max_batch_bytes=1000)
    for i in range(5):
        buffer.append(LogRecord("INFO", str(i) * 400, datetime.now(UTC)))
    buffer.append(LogRecord("INFO", "x" * 5000, datetime.now(UTC)))  # alone in its batch
    await buffer.flush()
    assert [len(batch) for batch in sent.batches] == [2, 2, 1, 1]


async def test_append_from_threads() -> None:
    sent = Recorder()
    buffer = LogBuffer(sent, flush_interval=0.02)
    buffer.start()
    threads = [
        threading.Thread(target=lambda k=k: [buffer.append(rec(k * 100 + i)) for i in range(50)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    await buffer.close()
    assert sorted(sent.lines) == sorted(f"line {k * 100 + i}" for k in range(4) for i in range(50))


def test_task_logger_levels_and_formatting() -> None:
    logger = TaskLogger()
    logger.trace("t")
    logger.debug("d %s", 1)
    logger.info("i")
    logger.warn("w")
    logger.warning("w2")
    logger.error("e %d%%", 5)
    assert [(r.level, r.message) for r in logger.records] == [
        ("TRACE", "t"),
        ("DEBUG", "d 1"),
        ("INFO", "i"),
        ("WARN", "w"),
        ("WARN", "w2"),
        ("ERROR", "e 5%"),
    ]
    assert all(r.timestamp.tzinfo is not None for r in logger.records)
    assert logger.messages("warn") == ["w", "w2"]


def test_normalize_level() -> None:
    assert normalize_level("warning") == "WARN"
    assert normalize_level(" info ") == "INFO"
    with pytest.raises(ValueError, match="TRACE, DEBUG"):
        normalize_level("verbose")
