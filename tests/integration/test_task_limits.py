"""Limits and bad input from workers (issue 7 item 5), through the gRPC API with a real worker
process: outputs over ``max_output_bytes`` and logs over ``max_log_bytes_per_attempt`` fail only
that task run, with a message naming the limit; NUL bytes and invalid UTF-8 written by a task
are stored and read back (as U+FFFD), and so are they when a worker sends them raw on the wire."""

from __future__ import annotations

import re

import grpc
import pytest

from kestrel.v1 import common_pb2, log_pb2, worker_pb2
from tests.integration.harness import ServerThread, wait_until, worker_process
from tests.integration.harness import test_settings as make_settings
from tests.integration.rpc import connect, state_name

pytestmark = pytest.mark.timeout(180)

OUTPUT_LIMIT = 2000
LOG_LIMIT = 4000

FLOW = """
id: limits
namespace: tests.limits
tasks:
  - id: big_outputs
    type: io.kestra.plugin.scripts.python.Script
    allowFailure: true
    script: |
      import json
      print("::" + json.dumps({"outputs": {"blob": "x" * 5000}}) + "::")
  - id: chatty
    type: io.kestra.plugin.scripts.python.Script
    allowFailure: true
    script: |
      import time
      for i in range(200):
          print(f"line {i:03d} " + "y" * 90, flush=True)
      time.sleep(30)  # stopped by the control plane before this ends
  - id: bad_bytes
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - printf 'bad \\377\\376 bytes\\n'
      - printf 'nul \\000 byte\\n'
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "still running"
"""


@pytest.fixture
def server(database_url):
    srv = ServerThread(make_settings(database_url, max_output_bytes=OUTPUT_LIMIT,
                                     max_log_bytes_per_attempt=LOG_LIMIT)).start()
    yield srv
    srv.stop()


def test_oversized_outputs_and_logs_fail_only_their_task_run_and_bad_bytes_are_kept(server):
    stubs = connect(server.address)
    try:
        with worker_process(server.address):
            stubs.deploy(FLOW)
            execution = stubs.start("tests.limits", "limits")
            final = stubs.wait(execution.id, timeout=120)
        runs = {t.task_id: t for t in final.task_runs}
        assert state_name(final.state.current) == "WARNING", [(t.task_id, t.error) for t in final.task_runs]
        # Outputs over the limit: that task run failed (allowFailure -> WARNING), nothing stored.
        assert state_name(runs["big_outputs"].state.current) == "WARNING"
        assert re.match(r"Task outputs are too large: 50\d\d bytes of JSON, more than the limit of 2000 bytes "
                        r"\(KESTREL_MAX_OUTPUT_BYTES\)", runs["big_outputs"].error), runs["big_outputs"].error
        assert [state_name(a.state.current) for a in runs["big_outputs"].attempts] == ["FAILED"]
        assert runs["big_outputs"].outputs_json in ("", "{}", "null")
        # Logs over the limit: the lines that fit are kept, the task run failed and was stopped.
        assert state_name(runs["chatty"].state.current) == "WARNING"
        assert runs["chatty"].error.startswith(
            "Task logs are too large: this attempt wrote more than 4000 bytes of log text, the limit "
            "(KESTREL_MAX_LOG_BYTES_PER_ATTEMPT)"), runs["chatty"].error
        logs = stubs.logs_stub_list(execution.id)
        chatty = [e.message for e in logs if e.task_run_id == runs["chatty"].id]
        kept = [m for m in chatty if m.startswith("line ")]
        assert kept and len(kept) < 200 and sum(len(m.encode()) for m in kept) <= LOG_LIMIT
        assert kept == [f"line {i:03d} " + "y" * 90 for i in range(len(kept))]  # in order, none cut
        assert any(m.startswith("Task logs are too large") for m in chatty)
        # Invalid UTF-8 and NUL from a task: stored, read back with U+FFFD in their place.
        bad = [e.message for e in logs if e.task_run_id == runs["bad_bytes"].id]
        assert "bad \ufffd\ufffd bytes" in bad and "nul \ufffd byte" in bad, bad
        assert state_name(runs["after"].state.current) == "SUCCESS"
    finally:
        stubs.close()


CUSTOM = "io.kestrel.tests.RawLimits"


def test_invalid_utf8_sent_raw_by_a_worker_is_stored_and_other_bad_messages_are_invalid_argument(server):
    """A worker in another language may put invalid UTF-8 in a proto ``string`` (protobuf
    requires UTF-8): its log lines are stored with U+FFFD in place; any other undecodable
    request is INVALID_ARGUMENT naming the message (not UNKNOWN), and the server keeps serving."""
    stubs = connect(server.address)
    try:
        worker = stubs.register_worker([CUSTOM])
        stubs.deploy(f"id: raw\nnamespace: tests.limits\ntasks:\n  - id: t\n    type: {CUSTOM}\n")
        execution = stubs.start("tests.limits", "raw")
        assignment = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
        entry = log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_WARN, message="MARK").SerializeToString()
        raw = log_pb2.AppendLogsRequest(task_token=assignment.task_token).SerializeToString()
        raw += b"\x12" + bytes([len(entry)]) + entry.replace(b"MARK", b"\xff\xfe\x00x")
        append = stubs.channel.unary_unary("/kestrel.v1.LogService/AppendLogs",
                                           request_serializer=lambda b: b, response_deserializer=lambda b: b)
        append(raw, timeout=10)
        assert [e.message for e in stubs.logs_stub_list(execution.id)] == ["\ufffd\ufffd\ufffdx"]
        get = stubs.channel.unary_unary("/kestrel.v1.ExecutionService/GetExecution",
                                        request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            get(b"\x0a\x02\xff\xfe", timeout=10)  # id = invalid UTF-8
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        assert err.value.details().startswith("request: not a valid GetExecutionRequest message"), err.value.details()
        upload = stubs.channel.stream_unary("/kestrel.v1.StorageService/UploadFile",
                                            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:  # a client stream's message: decoded in the handler
            upload(iter([b"\x0a\x02\xff\xfe"]), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        assert stubs.get(execution.id).id == execution.id  # still serving
    finally:
        stubs.close()


def _start_two_custom_tasks(stubs, flow_id: str):
    """A worker of CUSTOM and a started execution of a flow of two CUSTOM tasks, ``t`` then ``u``."""
    worker = stubs.register_worker([CUSTOM])
    stubs.deploy(f"id: {flow_id}\nnamespace: tests.limits\ntasks:\n  - id: t\n    type: {CUSTOM}\n"
                 f"  - id: u\n    type: {CUSTOM}\n")
    return worker, stubs.start("tests.limits", flow_id)


def test_a_completions_lines_count_with_the_lines_the_attempt_sent_before(server, database_url):
    """The lines stored by AppendLogs and those sent with the completion share one budget: the
    completion's lines are counted on top of what the attempt already stored (read under the
    execution's lock with the result), both when they fit (every line kept, the volume recorded)
    and when only the sum goes over (the attempt fails, as if all had come by AppendLogs)."""
    import psycopg

    stubs = connect(server.address)
    try:
        worker, execution = _start_two_custom_tasks(stubs, "shared")

        def line(text: str) -> log_pb2.LogEntry:
            return log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message=text)

        first = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
        stubs.logs.AppendLogs(log_pb2.AppendLogsRequest(task_token=first.task_token, entries=[line("a" * 1500)]))
        stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(
            task_token=first.task_token, logs=[line("b" * 1500), line("c" * 10)]))
        assert [(e.task_id, len(e.message)) for e in stubs.logs_stub_list(execution.id)] == [
            ("t", 1500), ("t", 1500), ("t", 10)]
        with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
            stored = conn.execute("SELECT log_bytes FROM task_run_attempts a JOIN task_runs tr ON tr.id = a.task_run_id "
                                  "WHERE tr.execution_id = %s AND tr.task_id = 't'", (execution.id,)).fetchone()
        assert stored == (3010,)

        second = wait_until(lambda: stubs.poll(worker, wait=1), what="the second task run")[0]
        stubs.logs.AppendLogs(log_pb2.AppendLogsRequest(task_token=second.task_token, entries=[line("d" * 3000)]))
        with pytest.raises(grpc.RpcError) as err:  # 1,500 bytes fit alone, not after the 3,000
            stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(
                task_token=second.task_token, logs=[line("e" * 1500)]))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "KESTREL_MAX_LOG_BYTES_PER_ATTEMPT" in err.value.details()
        u = next(tr for tr in stubs.wait(execution.id, timeout=30).task_runs if tr.task_id == "u")
        assert state_name(u.state.current) == "FAILED" and "Task logs are too large" in u.error
    finally:
        stubs.close()


def test_log_lines_sent_with_a_completion_are_stored_once_and_count_against_the_limit(server):
    """``CompleteTaskRunRequest.logs``: stored with the result (task id and attempt from the
    token), not again when the result is repeated; lines over the attempt's log limit fail the
    task run with the limit's message (the completion is NOT_FOUND), as AppendLogs does."""
    stubs = connect(server.address)
    try:
        worker, execution = _start_two_custom_tasks(stubs, "tail")
        first = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
        lines = [log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message=f"tail {i}") for i in range(3)]
        done = worker_pb2.CompleteTaskRunRequest(task_token=first.task_token, logs=lines)
        stubs.workers.CompleteTaskRun(done)
        stubs.workers.CompleteTaskRun(done)  # a repeat: nothing stored twice
        stored = [(e.task_id, e.attempt, e.message) for e in stubs.logs_stub_list(execution.id)]
        assert stored == [("t", 1, "tail 0"), ("t", 1, "tail 1"), ("t", 1, "tail 2")]

        second = wait_until(lambda: stubs.poll(worker, wait=1), what="the second task run")[0]
        too_much = [log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="z" * 1000) for _ in range(6)]
        with pytest.raises(grpc.RpcError) as err:
            stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=second.task_token,
                                                                            logs=too_much))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "KESTREL_MAX_LOG_BYTES_PER_ATTEMPT" in err.value.details()
        final = stubs.wait(execution.id, timeout=30)
        u = next(tr for tr in final.task_runs if tr.task_id == "u")
        assert state_name(u.state.current) == "FAILED" and "Task logs are too large" in u.error
        kept = [e for e in stubs.logs_stub_list(execution.id) if e.task_id == "u" and e.message.startswith("z")]
        assert len(kept) == LOG_LIMIT // 1000  # up to the limit, the rest dropped
    finally:
        stubs.close()


def _attempt_of(database_url: str, execution_id: str, task_id: str) -> tuple[int, str]:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        return conn.execute(
            "SELECT a.log_bytes, tr.state FROM task_run_attempts a JOIN task_runs tr ON tr.id = a.task_run_id "
            "WHERE tr.execution_id = %s AND tr.task_id = %s", (execution_id, task_id)).fetchone()


def test_an_attempt_already_over_its_log_budget_fails_at_its_next_batch_or_result(server, database_url):
    """An attempt whose stored log volume is already over the budget (the batch that went over
    was stored, but the failure after it never happened: a crash between the two, or the same
    completion repeated in between) fails at its next AppendLogs or at its completion, with or
    without lines, instead of ending SUCCESS."""
    import psycopg

    stubs = connect(server.address)
    try:
        worker, execution = _start_two_custom_tasks(stubs, "already-over")
        first = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
        with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("UPDATE task_run_attempts SET log_bytes = %s WHERE task_run_id = %s",
                         (LOG_LIMIT + 1, first.task_run_id))
        line = log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="one more")
        with pytest.raises(grpc.RpcError) as err:
            stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=first.task_token, logs=[line]))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "KESTREL_MAX_LOG_BYTES_PER_ATTEMPT" in err.value.details()
        t = next(tr for tr in stubs.wait(execution.id, timeout=30).task_runs if tr.task_id == "t")
        assert state_name(t.state.current) == "FAILED" and "Task logs are too large" in t.error

        worker, execution = _start_two_custom_tasks(stubs, "already-over-append")
        first = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
        with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("UPDATE task_run_attempts SET log_bytes = %s WHERE task_run_id = %s",
                         (LOG_LIMIT + 1, first.task_run_id))
        stubs.logs.AppendLogs(log_pb2.AppendLogsRequest(task_token=first.task_token, entries=[line]))
        assert _attempt_of(database_url, execution.id, "t")[1] == "FAILED"

        # A result without lines: its attempt fails all the same.
        worker, execution = _start_two_custom_tasks(stubs, "already-over-quiet")
        first = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
        with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("UPDATE task_run_attempts SET log_bytes = %s WHERE task_run_id = %s",
                         (LOG_LIMIT + 1, first.task_run_id))
        with pytest.raises(grpc.RpcError) as err:
            stubs.workers.CompleteTaskRun(worker_pb2.CompleteTaskRunRequest(task_token=first.task_token))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "KESTREL_MAX_LOG_BYTES_PER_ATTEMPT" in err.value.details()
        assert _attempt_of(database_url, execution.id, "t")[1] == "FAILED"
    finally:
        stubs.close()


def test_append_logs_takes_the_execution_lock_before_the_attempt_row(server, database_url):
    """A result locks its execution, then updates its attempt; AppendLogs for the same attempt
    takes the execution's (share) lock first too, so the two cannot deadlock: with the execution
    locked by another transaction, a waiting AppendLogs holds no lock on the attempt row (that
    transaction's attempt update goes through), and it is stored once the lock is released."""
    import threading

    import psycopg

    stubs = connect(server.address)
    try:
        worker, execution = _start_two_custom_tasks(stubs, "lock-order")
        first = wait_until(lambda: stubs.poll(worker, wait=1), what="assignment")[0]
        dsn = database_url.replace("+psycopg", "")
        outcome: list[object] = []
        with psycopg.connect(dsn) as holder:
            holder.execute("SET lock_timeout = '5s'")
            holder.execute("SELECT 1 FROM executions WHERE id = %s FOR UPDATE", (execution.id,))

            def append() -> None:
                try:
                    stubs.logs.AppendLogs(log_pb2.AppendLogsRequest(task_token=first.task_token, entries=[
                        log_pb2.LogEntry(level=common_pb2.LOG_LEVEL_INFO, message="while locked")]), timeout=30)
                    outcome.append("ok")
                except grpc.RpcError as exc:
                    outcome.append(exc.code())

            thread = threading.Thread(target=append)
            thread.start()
            with psycopg.connect(dsn, autocommit=True) as watch:
                wait_until(lambda: watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> %s", (holder.info.backend_pid,)).fetchone()[0] > 0,
                    what="AppendLogs waiting for the execution's lock")
            # What a result does next under its execution lock: without the lock order this
            # waited for AppendLogs' attempt-row lock (deadlock, or the 5 s lock timeout).
            holder.execute("UPDATE task_run_attempts SET state = state WHERE task_run_id = %s", (first.task_run_id,))
            holder.commit()
        thread.join(30)
        assert outcome == ["ok"]
        assert [e.message for e in stubs.logs_stub_list(execution.id)] == ["while locked"]
    finally:
        stubs.close()
