"""One attempt of a task as its view shows it: the state machine batch and service jobs share.

An attempt moves through these states, each step recorded on the task's view
(:class:`~titus_flow.views.TaskView`) and the attempt's
(:class:`~titus_flow.views.AttemptView`)::

    placed ──▶ Launched ──▶ StartInitiated ──▶ Started ──▶ Finished
      (place)        (launching)         (started)     (ended / killed)
                          └─────────── launch failed ─────────┘

Between attempts the task waits, Accepted, for capacity or a retry backoff;
:func:`next_attempt_delay` says whether another attempt follows. The job
workflows (``workflows/batch_tasks.py``, ``workflows/service_tasks.py``) do
the I/O (reserve, launch, supervise, release) and call these at each step; no
function here reads a clock or talks to anything, so every rule is unit-tested
without a server (``tests/unit/test_attempt_machine.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from titus_flow.lifecycle import SYSTEM_REASONS, FinishReason, TaskState, retry_delay
from titus_flow.spec.retry import Retry
from titus_flow.views import AttemptView, LogRef, TaskCarry, TaskView


class End(Protocol):
    """How an attempt ended, as the job workflows' ``Outcome`` tells it."""

    reason: FinishReason
    exit_code: int | None
    message: str
    retryable: bool


def place(task: TaskView, agent_id: str, now: datetime) -> AttemptView:
    """The task's next attempt, placed on ``agent_id`` at ``now``: recorded on the task."""
    attempt = AttemptView(attempt=task.attempt + 1, agent=agent_id, launched_at=now)
    task.attempts.append(attempt)
    task.attempt, task.agent = attempt.attempt, agent_id
    task.state = TaskState.LAUNCHED
    return attempt


def launching(task: TaskView, attempt: AttemptView) -> None:
    """The launch is sent to the agent."""
    task.state = attempt.state = TaskState.START_INITIATED


def started(task: TaskView, attempt: AttemptView, at: datetime) -> None:
    """The agent started the attempt's container at ``at``."""
    task.state = attempt.state = TaskState.STARTED
    attempt.started_at = at


def ended(
    attempt: AttemptView,
    end: End,
    now: datetime,
    *,
    counts_against_retries: bool | None = None,
    log: LogRef | None = None,
) -> None:
    """The attempt ended (``end``) at ``now``; ``log``: where its agent uploads its log.

    ``counts_against_retries`` is recorded only when given: a batch task's
    retry budget counts the user's failures, not the platform's
    (:func:`counts_against_retries`); a service task's single attempt has no
    budget to count against.
    """
    attempt.state, attempt.reason = TaskState.FINISHED, end.reason
    attempt.exit_code, attempt.message = end.exit_code, end.message
    attempt.finished_at = now
    attempt.log = log
    if counts_against_retries is not None:
        attempt.counts_against_retries = counts_against_retries


def killed(attempt: AttemptView, now: datetime) -> None:
    """The attempt was killed at ``now`` before it reported how it ended."""
    attempt.reason, attempt.finished_at = FinishReason.KILLED, now
    attempt.state = TaskState.FINISHED


def counts_against_retries(reason: FinishReason) -> bool:
    """Whether an attempt that ended for ``reason`` uses the user's retry budget (Titus rule)."""
    return reason not in SYSTEM_REASONS


def next_attempt_delay(
    policy: Retry, task: TaskView, carry: TaskCarry, end: End, avoid_failed_agent: bool
) -> timedelta | None:
    """Count the attempt's failure on the task; the delay before its next attempt, None if none.

    A task with a next attempt is Accepted again (waiting for its backoff and
    a placement).

    With ``avoid_failed_agent``, a platform failure also asks that the next
    attempt be placed away from the agent it failed on (and platform retries
    back off: :func:`~titus_flow.lifecycle.retry_delay`).
    """
    if end.reason in SYSTEM_REASONS:
        carry.system_failures += 1
        if avoid_failed_agent:  # place the retry elsewhere if it can be
            carry.avoid_agent = task.agent
    elif end.reason is not FinishReason.NORMAL:
        carry.user_failures += 1
    if not end.retryable:
        return None
    delay = retry_delay(
        policy,
        end.reason,
        end.exit_code,
        carry.user_failures,
        carry.system_failures,
        platform_backoff=avoid_failed_agent,
    )
    if delay is not None:
        task.state = TaskState.ACCEPTED  # waits for its next attempt
    return delay
