"""The attempt state machine batch and service jobs share (titus_flow/attempt_machine.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from titus_flow import attempt_machine
from titus_flow.lifecycle import FinishReason, TaskState
from titus_flow.spec.retry import Retry
from titus_flow.views import TaskCarry, TaskView

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class End:
    reason: FinishReason
    exit_code: int | None = None
    message: str = ""
    retryable: bool = True


def task() -> TaskView:
    return TaskView(id="job-0", index=0)


def test_a_successful_attempt_walks_every_state_on_task_and_attempt() -> None:
    view = task()
    attempt = attempt_machine.place(view, "agent-a", T0)
    assert (view.state, view.attempt, view.agent) == (TaskState.LAUNCHED, 1, "agent-a")
    assert view.attempts == [attempt] and attempt.launched_at == T0
    attempt_machine.launching(view, attempt)
    assert view.state is attempt.state is TaskState.START_INITIATED
    attempt_machine.started(view, attempt, T0 + timedelta(seconds=1))
    assert view.state is attempt.state is TaskState.STARTED
    assert attempt.started_at == T0 + timedelta(seconds=1)
    attempt_machine.ended(attempt, End(FinishReason.NORMAL, 0, "ok"), T0 + timedelta(seconds=5))
    assert (attempt.state, attempt.reason, attempt.exit_code, attempt.message) == (
        TaskState.FINISHED,
        FinishReason.NORMAL,
        0,
        "ok",
    )
    assert attempt.finished_at == T0 + timedelta(seconds=5)
    assert attempt.counts_against_retries  # untouched unless given


def test_the_next_attempt_is_numbered_after_the_last() -> None:
    view = task()
    first = attempt_machine.place(view, "agent-a", T0)
    attempt_machine.killed(first, T0)
    second = attempt_machine.place(view, "agent-b", T0)
    assert [a.attempt for a in view.attempts] == [1, 2] and second.agent == view.agent == "agent-b"
    assert (first.state, first.reason, first.finished_at) == (
        TaskState.FINISHED,
        FinishReason.KILLED,
        T0,
    )


@pytest.mark.parametrize(
    ("reason", "counts"),
    [
        (FinishReason.NORMAL, True),
        (FinishReason.FAILED, True),
        (FinishReason.LOST, False),
        (FinishReason.SYSTEM_ERROR, False),
    ],
)
def test_only_the_users_failures_count_against_retries(reason: FinishReason, counts: bool) -> None:
    assert attempt_machine.counts_against_retries(reason) is counts
    attempt = attempt_machine.place(task(), "a", T0)
    attempt_machine.ended(attempt, End(reason), T0, counts_against_retries=counts)
    assert attempt.counts_against_retries is counts


def test_a_user_failure_is_retried_after_its_backoff_and_counted() -> None:
    view, carry = task(), TaskCarry()
    attempt_machine.place(view, "agent-a", T0)
    delay = attempt_machine.next_attempt_delay(
        Retry(attempts=3), view, carry, End(FinishReason.FAILED, 1), avoid_failed_agent=True
    )
    assert delay is not None and view.state is TaskState.ACCEPTED
    assert (carry.user_failures, carry.system_failures, carry.avoid_agent) == (1, 0, None)


def test_a_platform_failure_is_retried_elsewhere_without_using_the_budget() -> None:
    view, carry = task(), TaskCarry()
    attempt_machine.place(view, "agent-a", T0)
    delay = attempt_machine.next_attempt_delay(
        Retry(attempts=1), view, carry, End(FinishReason.LOST), avoid_failed_agent=True
    )
    assert delay is not None
    assert (carry.user_failures, carry.system_failures, carry.avoid_agent) == (0, 1, "agent-a")


def test_the_previous_release_does_not_move_a_platform_retry() -> None:
    view, carry = task(), TaskCarry()
    attempt_machine.place(view, "agent-a", T0)
    attempt_machine.next_attempt_delay(
        Retry(attempts=1), view, carry, End(FinishReason.LOST), avoid_failed_agent=False
    )
    assert carry.system_failures == 1 and carry.avoid_agent is None


@pytest.mark.parametrize(
    ("end", "policy"),
    [
        (End(FinishReason.NORMAL, 0), Retry(attempts=3)),  # succeeded: nothing follows
        (End(FinishReason.FAILED, 1), Retry(attempts=1)),  # budget spent
        (End(FinishReason.INVALID_REQUEST, retryable=False), Retry(attempts=3)),
        (End(FinishReason.KILLED, retryable=False), Retry(attempts=3)),
    ],
)
def test_no_next_attempt_leaves_the_task_as_it_was(end: End, policy: Retry) -> None:
    view, carry = task(), TaskCarry()
    attempt = attempt_machine.place(view, "agent-a", T0)
    attempt_machine.launching(view, attempt)
    assert attempt_machine.next_attempt_delay(policy, view, carry, end, True) is None
    assert view.state is TaskState.START_INITIATED  # the job workflow finishes it
