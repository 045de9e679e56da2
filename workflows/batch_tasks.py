"""A batch task's attempts: each holds its capacity while it launches and runs on its agent.

The batch job workflow (:mod:`~titus_flow.workflows.batch`) runs each task's
attempts in turn; these functions carry one attempt out and record it on the
task's view. The attempt is added to the task (:func:`new_attempt`), launched
and supervised on the agent's task queue (:func:`launch_and_supervise`, or
:func:`supervise_attempt` for a container a previous run left running), with
its reservation released in the scheduler's ledger however it ends
(:func:`holding`); :func:`next_attempt_delay` says whether another follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts import LaunchInput, Placed, SuperviseInput
    from titus_flow.lifecycle import SYSTEM_REASONS, FinishReason, TaskState, retry_delay
    from titus_flow.spec import BatchJob
    from titus_flow.views import AttemptView, TaskCarry, TaskView
    from titus_flow.workflows.attempts import Outcome, launch, supervise
    from titus_flow.workflows.common import SchedulerMailbox


async def backoff(task: TaskView, carry: TaskCarry, delay: timedelta) -> None:
    """Sleep ``delay`` before the task's next attempt (not at all if not positive)."""
    if delay <= timedelta(0):
        return
    carry.not_before = workflow.now() + delay
    task.pending_reason = f"retry backoff: next attempt in {delay}"
    await workflow.sleep(delay, summary=f"backoff before retry of {task.id}")
    task.pending_reason = carry.not_before = None


def new_attempt(task: TaskView, placement: Placed) -> AttemptView:
    """The task's next attempt, on the agent of ``placement``, recorded on the task."""
    attempt = AttemptView(
        attempt=task.attempt + 1,
        agent=placement.agent_id,
        launched_at=workflow.now(),
    )
    task.attempts.append(attempt)
    task.attempt, task.agent = attempt.attempt, placement.agent_id
    task.state = TaskState.LAUNCHED
    return attempt


async def holding(
    mailbox: SchedulerMailbox, task: TaskView, attempt: AttemptView, work: Awaitable[Outcome]
) -> Outcome:
    """Await ``work`` (the attempt on its agent), record how it ended, release its capacity."""
    try:
        outcome = await work
    except asyncio.CancelledError:
        attempt.reason, attempt.finished_at = FinishReason.KILLED, workflow.now()
        attempt.state = TaskState.FINISHED
        raise
    finally:
        mailbox.release(task.id)
    attempt.state, attempt.reason = TaskState.FINISHED, outcome.reason
    attempt.exit_code, attempt.message = outcome.exit_code, outcome.message
    attempt.finished_at = workflow.now()
    attempt.counts_against_retries = outcome.reason not in SYSTEM_REASONS
    return outcome


async def launch_and_supervise(
    job_id: str,
    job: BatchJob,
    task: TaskView,
    attempt: AttemptView,
    placement: Placed,
    carry: TaskCarry,
) -> Outcome:
    """Start the attempt's container where it was placed, then watch it to its end."""
    task.state = attempt.state = TaskState.START_INITIATED
    launched = await launch(
        LaunchInput.for_task(job_id, task, attempt.attempt, job, placement.ports),
        placement.task_queue,
    )
    if isinstance(launched, Outcome):
        return launched
    task.state = attempt.state = TaskState.STARTED
    attempt.started_at = launched.started_at
    carry.task_queue, carry.started_at = placement.task_queue, launched.started_at
    return await supervise_attempt(job, task, attempt, carry)


async def supervise_attempt(
    job: BatchJob, task: TaskView, attempt: AttemptView, carry: TaskCarry
) -> Outcome:
    """Watch the attempt's running container (on ``carry.task_queue``) until it ends."""
    assert carry.task_queue is not None and carry.started_at is not None
    limit = job.runtime_limit
    outcome = await supervise(
        SuperviseInput(
            task_id=task.id,
            attempt=attempt.attempt,
            runtime_limit_seconds=limit.total_seconds() if limit else None,
            started_at=carry.started_at,
        ),
        carry.task_queue,
        limit,
    )
    carry.task_queue = carry.started_at = None
    if outcome.exit is not None:
        # Only a failure's log tail is kept: the view of a 500-task partition
        # must stay far below Temporal's payload limit.
        task.output = outcome.exit.output
        if outcome.reason is not FinishReason.NORMAL:
            task.log_tail = outcome.exit.log_tail
    return outcome


def next_attempt_delay(
    job: BatchJob, task: TaskView, carry: TaskCarry, outcome: Outcome, avoid_failed_agent: bool
) -> timedelta | None:
    """Count the attempt's failure on the task; the delay before its next attempt, None if none.

    With ``avoid_failed_agent``, a platform failure also asks that the next
    attempt be placed away from the agent it failed on (and platform retries
    back off: :func:`~titus_flow.lifecycle.retry_delay`).
    """
    if outcome.reason in SYSTEM_REASONS:
        carry.system_failures += 1
        if avoid_failed_agent:  # place the retry elsewhere if it can be
            carry.avoid_agent = task.agent
    elif outcome.reason is not FinishReason.NORMAL:
        carry.user_failures += 1
    if not outcome.retryable:
        return None
    return retry_delay(
        job.retry,
        outcome.reason,
        outcome.exit_code,
        carry.user_failures,
        carry.system_failures,
        platform_backoff=avoid_failed_agent,
    )
