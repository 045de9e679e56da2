"""A batch task's attempts: each holds its capacity while it launches and runs on its agent.

The batch job workflow (:mod:`~titus_flow.workflows.batch`) runs each task's
attempts in turn; these functions carry one attempt out, recording each step
through the attempt state machine (:mod:`titus_flow.attempt_machine`, shared
with service jobs). The attempt is launched and supervised on the agent's task
queue (:func:`launch_and_supervise`, or :func:`supervise_attempt` for a
container a previous run left running), with its reservation released in the
scheduler's ledger however it ends (:func:`holding`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow import attempt_machine
    from titus_flow.contracts import BatchJobInput, LaunchInput, Placed, SuperviseInput
    from titus_flow.lifecycle import FinishReason
    from titus_flow.spec import BatchJob
    from titus_flow.views import AttemptView, TaskCarry, TaskView
    from titus_flow.workflows.attempts import Outcome, launch, supervise
    from titus_flow.workflows.common import SchedulerMailbox
    from titus_flow.workflows.journal import current_journal


async def backoff(task: TaskView, carry: TaskCarry, delay: timedelta) -> None:
    """Sleep ``delay`` before the task's next attempt (not at all if not positive)."""
    if delay <= timedelta(0):
        return
    carry.not_before = workflow.now() + delay
    task.pending_reason = f"retry backoff: next attempt in {delay}"
    await workflow.sleep(delay, summary=f"backoff before retry of {task.id}")
    task.pending_reason = carry.not_before = None


async def holding(
    mailbox: SchedulerMailbox, task: TaskView, attempt: AttemptView, work: Awaitable[Outcome]
) -> Outcome:
    """Await ``work`` (the attempt on its agent), record how it ended, release its capacity."""
    try:
        outcome = await work
    except asyncio.CancelledError:
        attempt_machine.killed(attempt, workflow.now())
        raise
    finally:
        mailbox.release(task.id)
    counts = attempt_machine.counts_against_retries(outcome.reason)
    attempt_machine.ended(
        attempt, outcome, workflow.now(), counts_against_retries=counts, log=outcome.log
    )
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
    attempt_machine.launching(task, attempt)
    current_journal().task(task)
    launched = await launch(
        LaunchInput.for_task(job_id, task, attempt.attempt, job, placement.ports),
        placement.task_queue,
    )
    if isinstance(launched, Outcome):
        return launched
    attempt_machine.started(task, attempt, launched.started_at)
    current_journal().task(task)
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


def should_continue(request: BatchJobInput) -> bool:
    """Whether a batch run should hand over to a new run: suggested, or past its limits."""
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or info.get_current_history_length() > request.history_limit
        or info.get_current_history_size() > request.history_bytes_limit
    )
