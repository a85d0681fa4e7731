"""Retry policies: parsing, validation and retry dates against FEATURES.md §7 (Kestra's
``retrys`` package and ``TaskRun.nextRetryDate``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.engine.retry import (
    RetryBehavior,
    RetryConfigError,
    RetryPolicy,
    RetryType,
    check_retry,
    counted_attempts,
    next_attempt_at,
    next_execution_at,
    parse_retry,
    resolve_retry,
    retry_warnings,
)
from controlplane.errors import FlowValidationError
from controlplane.flows import parse_flow
from controlplane.model import Attempt, State

T0 = datetime(2024, 12, 20, 10, 0, 0, tzinfo=UTC)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def run_policy(policy: RetryPolicy, attempt_seconds: float = 0.0, rng=None) -> list[tuple[datetime, datetime]]:
    """Attempts a policy allows for a task that always fails, each taking ``attempt_seconds``
    and starting exactly at its retry date."""
    attempts = [(T0, T0 + s(attempt_seconds))]
    while (due := next_attempt_at(policy, attempts, T0, rng=rng)) is not None:
        attempts.append((due, due + s(attempt_seconds)))
        assert len(attempts) < 1000
    return attempts


# -- parsing ----------------------------------------------------------------------------------


def test_parse_constant_with_defaults():
    policy = parse_retry({"type": "constant", "interval": "PT0.250S", "maxAttempt": 5, "maxDuration": "PT15S"})
    assert policy == RetryPolicy(type=RetryType.CONSTANT, interval=s(0.25), max_attempts=5, max_duration=s(15))
    assert policy.behavior is RetryBehavior.RETRY_FAILED_TASK and policy.warning_on_retry is False


def test_parse_every_field_and_the_later_kestra_spelling_max_attempts():
    policy = parse_retry({
        "type": "exponential", "interval": "PT0.25s", "maxInterval": "PT5S", "delayFactor": 3,
        "maxAttempts": 3, "maxDuration": 15, "warningOnRetry": True, "behavior": "CREATE_NEW_EXECUTION",
    })
    assert policy.interval == s(0.25) and policy.max_interval == s(5) and policy.delay_factor == 3.0
    assert policy.max_attempts == 3 and policy.max_duration == s(15)  # a bare number is seconds
    assert policy.warning_on_retry and policy.behavior is RetryBehavior.CREATE_NEW_EXECUTION
    random_policy = parse_retry({"type": "random", "minInterval": "PT0.20S", "maxInterval": "PT0.50S"})
    assert (random_policy.min_interval, random_policy.max_interval) == (s(0.2), s(0.5))


@pytest.mark.parametrize(
    ("raw", "field", "needle"),
    [
        ({"type": "constant", "interval": "PT10S", "maxDuration": "PT5S"}, "interval",
         "'interval' must be less than 'maxDuration' but is PT10S"),
        ({"type": "constant", "interval": "PT5S", "maxDuration": "PT5S"}, "interval", "could never be retried"),
        ({"type": "exponential", "interval": "PT10S", "maxInterval": "PT5S"}, "interval",
         "'interval' must be less than 'maxInterval' but is PT10S"),
        ({"type": "exponential", "interval": "PT1S", "maxInterval": "PT5S", "maxDuration": "PT1S"}, "interval",
         "'interval' must be less than 'maxDuration'"),
        ({"type": "random", "minInterval": "PT2S", "maxInterval": "PT1S"}, "minInterval",
         "'minInterval' must be less than 'maxInterval'"),
        ({"type": "random", "minInterval": "PT1S", "maxInterval": "PT9S", "maxDuration": "PT5S"}, "maxInterval",
         "'maxInterval' must be less than 'maxDuration'"),
        ({"type": "constant", "maxAttempt": 3}, "interval", "'interval' is required for a constant retry"),
        ({"type": "exponential", "interval": "PT1S"}, "maxInterval", "'maxInterval' is required"),
        ({"type": "random", "maxInterval": "PT1S"}, "minInterval", "'minInterval' is required"),
        ({"type": "constant", "interval": "PT1S", "maxAttempt": 0}, "maxAttempt", "at least 1"),
        ({"type": "constant", "interval": "PT1S", "maxAttempt": "3"}, "maxAttempt", "whole number"),
        ({"type": "constant", "interval": "PT1S", "maxAttempt": 3, "maxAttempts": 3}, "maxAttempts", "not both"),
        ({"type": "constant", "interval": "5 seconds"}, "interval", "invalid 'interval'"),
        ({"type": "constant", "interval": "-PT1S"}, "interval", "must not be negative"),
        ({"type": "constant", "interval": "{{ inputs.i }}"}, "interval", "not rendered"),
        ({"type": "constant", "interval": "PT1S", "maxInterval": "PT2S"}, "maxInterval",
         "unknown property 'maxInterval' for a constant retry"),
        ({"type": "constant", "interval": "PT1S", "maxAttemps": 2}, "maxAttemps", "did you mean 'maxAttempts'"),
        ({"type": "constant", "interval": "PT1S", "behavior": "retry_failed_task"}, "behavior",
         "did you mean 'RETRY_FAILED_TASK'"),
        ({"type": "constant", "interval": "PT1S", "warningOnRetry": "yes"}, "warningOnRetry", "true or false"),
        ({"type": "exponential", "interval": "PT1S", "maxInterval": "PT2S", "delayFactor": 0}, "delayFactor",
         "must be a number in (0, 1000]"),
        ({"type": "exponential", "interval": "PT1S", "maxInterval": "PT2S", "delayFactor": float("nan")},
         "delayFactor", "must be a number in (0, 1000]"),
        ({"type": "constant", "interval": float("inf")}, "interval", "not a usable number of seconds"),
        ({"type": "constant", "interval": "PT99999999999999999999H"}, "interval", "at most 100 years"),
        ({"type": "linear", "interval": "PT1S"}, "type", "one of constant, exponential, random"),
    ],
)
def test_invalid_retry_blocks_name_the_field(raw, field, needle):
    policy, problems = check_retry(raw)
    assert policy is None
    assert any(p.field == field and needle in p.message for p in problems), problems
    with pytest.raises(RetryConfigError):
        parse_retry(raw)


def test_registration_rejects_a_retry_that_can_never_retry_with_task_field_and_line():
    source = """id: never
namespace: tests.retry
tasks:
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: hi
    retry:
      type: constant
      maxDuration: PT5S
      interval: PT10S
"""
    with pytest.raises(FlowValidationError) as err:
        parse_flow(source)
    [issue] = err.value.issues
    assert issue.path == "tasks[0].retry.interval" and issue.line == 10
    assert issue.message.startswith("task 't': retry: 'interval' must be less than 'maxDuration' but is PT10S")


def test_flow_level_retry_is_validated_too():
    source = "id: f\nnamespace: tests.retry\nretry:\n  type: random\n  minInterval: PT3S\n  maxInterval: PT1S\n" \
             "tasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n"
    with pytest.raises(FlowValidationError) as err:
        parse_flow(source)
    assert [(i.path, i.line) for i in err.value.issues] == [("retry.minInterval", 5)]


def test_warnings_for_a_retry_that_never_retries_or_never_stops():
    assert retry_warnings(parse_retry({"type": "constant", "interval": "PT1S", "maxAttempt": 1}))[0].field == "maxAttempt"
    [unbounded] = retry_warnings(parse_retry({"type": "constant", "interval": "PT1S"}))
    assert "until it succeeds or its execution is killed" in unbounded.message
    assert retry_warnings(parse_retry({"type": "constant", "interval": "PT1S", "maxAttempt": 3})) == []


# -- retry dates (FEATURES.md §7) ---------------------------------------------------------------


def test_constant_next_date_is_end_of_last_attempt_plus_interval():
    policy = parse_retry({"type": "constant", "interval": "PT2S", "maxAttempt": 5})
    attempts = [(T0, T0 + s(1))]
    assert next_attempt_at(policy, attempts, T0) == T0 + s(3)


def test_max_attempt_counts_every_attempt_including_the_first():
    # retry-failed.yaml: constant PT0.250S, maxAttempt 5, maxDuration PT15S -> 5 attempts.
    policy = parse_retry({"type": "constant", "interval": "PT0.250S", "maxAttempt": 5, "maxDuration": "PT15S"})
    attempts = run_policy(policy)
    assert len(attempts) == 5
    assert [b - a for (_, a), (b, _) in zip(attempts, attempts[1:], strict=False)] == [s(0.25)] * 4
    # retry-failed-task-attempts.yml: maxAttempt 4 -> attemptNumber 4.
    assert len(run_policy(parse_retry({"type": "constant", "interval": "PT1S", "maxAttempt": 4}))) == 4
    assert len(run_policy(parse_retry({"type": "constant", "interval": "PT1S", "maxAttempt": 1}))) == 1


def test_max_duration_stops_when_the_next_date_is_past_first_start_plus_max_duration():
    # retry-failed-task-duration.yml: maxDuration PT6S, interval PT2S -> 3 attempts (attemptNumber 3).
    policy = parse_retry({"type": "constant", "interval": "PT2S", "maxDuration": "PT6S"})
    attempts = run_policy(policy, attempt_seconds=0.01)
    assert len(attempts) == 3
    # The boundary is inclusive: a retry due exactly at first start + maxDuration still happens.
    assert next_attempt_at(policy, [(T0, T0), (T0 + s(2), T0 + s(4))], T0) == T0 + s(6)
    assert next_attempt_at(policy, [(T0, T0), (T0 + s(2), T0 + s(4.001))], T0) is None


def test_max_duration_origin_is_the_first_attempts_start():
    policy = parse_retry({"type": "constant", "interval": "PT1S", "maxDuration": "PT10S"})
    late = [(T0 + s(8), T0 + s(8.5))]
    assert next_attempt_at(policy, late, first_start=T0) == T0 + s(9.5)
    assert next_attempt_at(policy, late, first_start=T0 - s(5)) is None


def test_exponential_grows_geometrically_and_is_capped_at_max_interval():
    policy = parse_retry({"type": "exponential", "interval": "PT1S", "maxInterval": "PT10S"})
    assert [policy.delay(n) for n in range(1, 7)] == [s(1), s(2), s(4), s(8), s(10), s(10)]
    tripled = parse_retry({"type": "exponential", "interval": "PT0.5S", "maxInterval": "PT60S", "delayFactor": 3})
    assert [tripled.delay(n) for n in range(1, 4)] == [s(0.5), s(1.5), s(4.5)]
    fractional = parse_retry({"type": "exponential", "interval": "PT1S", "maxInterval": "PT60S", "delayFactor": 1.5})
    assert fractional.delay(3) == s(2.25)  # not truncated to an integer factor
    assert policy.delay(10_000) == s(10)  # no overflow


def test_exponential_retry_expo_yaml_makes_three_attempts():
    policy = parse_retry({"type": "exponential", "maxAttempt": 3, "maxDuration": "PT15S", "interval": "PT0.25s",
                          "maxInterval": "PT5S"})
    attempts = run_policy(policy)
    assert len(attempts) == 3
    assert [b - a for (_, a), (b, _) in zip(attempts, attempts[1:], strict=False)] == [s(0.25), s(0.5)]


def test_random_delay_is_uniform_between_min_and_max_interval():
    policy = parse_retry({"type": "random", "maxAttempt": 3, "maxDuration": "PT15S", "minInterval": "PT0.20S",
                          "maxInterval": "PT0.50S"})
    assert policy.delay(1, rng=lambda: 0.0) == s(0.2)
    assert policy.delay(1, rng=lambda: 0.5) == s(0.35)
    assert s(0.2) <= policy.delay(1) < s(0.5)
    assert len(run_policy(policy)) == 3  # retry-random.yaml


def test_without_limits_retries_go_on():
    policy = parse_retry({"type": "constant", "interval": "PT1H"})
    attempts = [(T0 + s(i * 3600), T0 + s(i * 3600)) for i in range(50)]
    assert next_attempt_at(policy, attempts, T0) == T0 + s(50 * 3600)


def test_next_attempt_needs_an_attempt():
    with pytest.raises(ValueError):
        next_attempt_at(parse_retry({"type": "constant", "interval": "PT1S"}), [], T0)


def test_new_execution_retries_count_executions_from_the_original_creation():
    # retry-new-execution-*-attempts.yml: maxAttempt 3 -> RETRIED, RETRIED, FAILED.
    policy = parse_retry({"type": "constant", "interval": "PT1S", "maxAttempt": 3, "behavior": "CREATE_NEW_EXECUTION"})
    assert next_execution_at(policy, 1, T0 + s(0.1), T0) == T0 + s(1.1)
    assert next_execution_at(policy, 2, T0 + s(1.2), T0) == T0 + s(2.2)
    assert next_execution_at(policy, 3, T0 + s(2.3), T0) is None
    # retry-new-execution-*-duration.yml: PT2S / PT6S from the first execution's creation.
    timed = parse_retry({"type": "constant", "interval": "PT2S", "maxDuration": "PT6S"})
    assert next_execution_at(timed, 1, T0 + s(0.1), T0) == T0 + s(2.1)
    assert next_execution_at(timed, 2, T0 + s(2.2), T0) == T0 + s(4.2)
    assert next_execution_at(timed, 3, T0 + s(4.3), T0) is None


def test_lost_attempts_do_not_count():
    attempts = [
        Attempt(1, State.FAILED, started_at=T0, ended_at=T0 + s(1), reason="LEASE_EXPIRED"),
        Attempt(2, State.FAILED, started_at=T0 + s(2), ended_at=T0 + s(3), reason="TASK_ERROR"),
        Attempt(3, State.FAILED, started_at=T0 + s(4), ended_at=T0 + s(5), reason="WORKER_SHUTDOWN"),
        Attempt(4, State.FAILED, started_at=T0 + s(6), ended_at=T0 + s(7), reason="TIMEOUT"),
    ]
    assert counted_attempts(attempts) == [(T0 + s(2), T0 + s(3)), (T0 + s(6), T0 + s(7))]


# -- which policy applies ----------------------------------------------------------------------


RESOLVE = """
id: resolve
namespace: tests.retry
retry:
  type: constant
  interval: PT9S
  maxAttempt: 9
tasks:
  - id: own
    type: io.kestra.plugin.core.log.Log
    message: hi
    retry:
      type: constant
      interval: PT1S
      maxAttempt: 2
  - id: outer
    type: io.kestra.plugin.core.flow.Sequential
    retry:
      type: constant
      interval: PT3S
      maxAttempt: 3
    tasks:
      - id: inner
        type: io.kestra.plugin.core.flow.Sequential
        tasks:
          - id: nested
            type: io.kestra.plugin.core.log.Log
            message: hi
  - id: plain
    type: io.kestra.plugin.core.log.Log
    message: hi
"""


def test_resolution_order_task_then_nearest_ancestor_then_flow():
    flow = parse_flow(RESOLVE)
    own = resolve_retry(flow, "own")
    assert own is not None and own.policy.max_attempts == 2 and own.source == "task 'own'"
    nested = resolve_retry(flow, "nested")
    assert nested is not None and nested.policy.max_attempts == 3 and nested.source == "flowable 'outer'"
    plain = resolve_retry(flow, "plain")
    assert plain is not None and plain.policy.max_attempts == 9 and plain.source == "flow"
    without_flow_retry = parse_flow(RESOLVE.replace("retry:\n  type: constant\n  interval: PT9S\n  maxAttempt: 9\n", ""))
    assert resolve_retry(without_flow_retry, "plain") is None
