"""One attempt of one task on its agent: the launch and supervise activities.

Shared by the batch and service job workflows: the activity options (timeouts
that detect a lost agent, retries that re-adopt a container) and the rule that
sorts an activity failure into the user's fault or the platform's.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    # The activities' declarations, not AgentActivities: that module imports
    # titus_flow.client, which imports this one (see the interfaces' docstring).
    from titus_flow.activities.interfaces import AgentActivityInterface
    from titus_flow.cluster import AGENT_LOST_AFTER, SUPERVISE_HEARTBEAT_TIMEOUT
    from titus_flow.contracts import (
        AttemptExit,
        LaunchInput,
        LaunchResult,
        StopInput,
        SuperviseInput,
    )
    from titus_flow.lifecycle import FinishReason
    from titus_flow.views import LogRef
    from titus_flow.workflows.common import LAUNCH_RETRY, SUPERVISE_RETRY

# Upper bound on one supervise run when the job sets no runtime limit; a service
# task outliving it is simply supervised again by a retry.
NO_LIMIT = timedelta(days=30)
KILL_GRACE = timedelta(seconds=60)
LAUNCH_HEARTBEATS_PATCH = "launch-heartbeats-and-cleans-up"
"""``workflow.patched`` id of a launch that heartbeats (a lost agent shows in
seconds) and whose cancellation waits until the agent removed what it started:
a task killed during a slow pull frees its capacity only once no container is
left. The previous release cancelled launch without waiting and without a
heartbeat timeout; its runs replay that way."""
LAUNCH_REFUSED_PATCH = "launch-refused-is-users"
"""``workflow.patched`` id of the rule that a launch the agent refused by policy
(error type ``LaunchRefused``: an image outside the allowed registries, host
networking where not allowed, a secret that does not exist) fails the task like
a missing image, rather than counting as a platform error and retrying."""
STOP_UNHEARD_KILL_PATCH = "stop-after-unheard-kill"
"""``workflow.patched`` id of the rule that a kill that did not end its activity
cancelled sends a ``stop`` activity to the agent's queue: the agent died while
the cancel was pending (the activity timed out, and the server does not retry a
cancelled activity), or the launch completed as the kill came. The previous
release released the capacity and left the container running under the
restarted agent (chaos suite), and a batch task's late launch ran to its end."""


class Outcome:
    """How one attempt ended, as the retry and replacement rules need it."""

    def __init__(
        self,
        reason: FinishReason,
        exit_code: int | None = None,
        message: str = "",
        retryable: bool = True,
        exit_: AttemptExit | None = None,
    ) -> None:
        self.reason = reason
        self.exit_code = exit_code
        self.message = message
        self.retryable = retryable
        self.exit = exit_

    @property
    def log(self) -> LogRef | None:
        """Where the agent uploads the attempt's log, if it said."""
        return None if self.exit is None else self.exit.log

    @classmethod
    def from_exit(cls, exit_: AttemptExit) -> Outcome:
        """The outcome the agent reported."""
        return cls(exit_.reason, exit_.exit_code, exit_.message, exit_=exit_)

    @classmethod
    def from_activity_error(cls, err: ActivityError, step: str) -> Outcome:
        """Classify a failed launch or supervise: the user's fault or the platform's."""
        cause = err.cause
        if isinstance(cause, TimeoutError):
            kind = cause.type.name if cause.type is not None else "timeout"
            return cls(FinishReason.LOST, message=f"agent lost during {step} ({kind})")
        if isinstance(cause, CancelledError):
            return cls(FinishReason.KILLED, message="killed by request", retryable=False)
        if isinstance(cause, ApplicationError) and (
            cause.type == "ImageNotFound"
            or (cause.type == "LaunchRefused" and workflow.patched(LAUNCH_REFUSED_PATCH))
        ):
            return cls(FinishReason.FAILED, message=cause.message, retryable=False)
        message = str(cause) if cause is not None else str(err)
        return cls(FinishReason.SYSTEM_ERROR, message=f"{step} failed: {message}")


async def launch(request: LaunchInput, task_queue: str) -> LaunchResult | Outcome:
    """Start the attempt's container; an :class:`Outcome` if that failed.

    Cancelling this (a kill) returns once the agent removed what it started,
    also when the container started anyway (the launch won the race).
    """
    cleans_up = workflow.patched(LAUNCH_HEARTBEATS_PATCH)
    try:
        result = await workflow.execute_activity_method(
            AgentActivityInterface.launch,
            request,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(minutes=5),
            schedule_to_start_timeout=AGENT_LOST_AFTER,
            heartbeat_timeout=SUPERVISE_HEARTBEAT_TIMEOUT if cleans_up else None,
            retry_policy=LAUNCH_RETRY,
            cancellation_type=(
                workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                if cleans_up
                else workflow.ActivityCancellationType.TRY_CANCEL
            ),
            summary=f"launch {request.task_id} attempt {request.attempt}",
        )
    except ActivityError as err:
        return await _after_failure(err, "launch", request.task_id, request.attempt, task_queue)
    return await _stopped_if_killed(request.task_id, request.attempt, task_queue) or result


async def supervise(
    request: SuperviseInput, task_queue: str, limit: timedelta | None = None
) -> Outcome:
    """Watch the running attempt until it ends; cancelling this stops the container."""
    try:
        exit_ = await workflow.execute_activity_method(
            AgentActivityInterface.supervise,
            request,
            task_queue=task_queue,
            start_to_close_timeout=(limit or NO_LIMIT) + KILL_GRACE,
            schedule_to_start_timeout=AGENT_LOST_AFTER,
            heartbeat_timeout=SUPERVISE_HEARTBEAT_TIMEOUT,
            retry_policy=SUPERVISE_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"supervise {request.task_id} attempt {request.attempt}",
        )
    except ActivityError as err:
        return await _after_failure(err, "supervise", request.task_id, request.attempt, task_queue)
    return Outcome.from_exit(exit_)


async def _after_failure(
    err: ActivityError, step: str, task_id: str, attempt: int, task_queue: str
) -> Outcome:
    """The outcome of a failed launch or supervise, stopping a container a kill missed."""
    killed = None
    if isinstance(err.cause, TimeoutError):
        killed = await _stopped_if_killed(task_id, attempt, task_queue)
    return killed or Outcome.from_activity_error(err, step)


async def _stopped_if_killed(task_id: str, attempt: int, task_queue: str) -> Outcome | None:
    """If a kill came but the activity did not end cancelled: stop the container, say killed.

    None if there was no kill (or the run replays the previous release).
    """
    if not (_kill_requested() and workflow.patched(STOP_UNHEARD_KILL_PATCH)):
        return None
    await stop_attempt(StopInput(task_id=task_id, attempt=attempt), task_queue)
    return Outcome(FinishReason.KILLED, message="killed by request", retryable=False)


def _kill_requested() -> bool:
    """Whether the workflow cancelled the activity this task awaited (a kill).

    A cancel reaches an activity only through its agent's heartbeat; the
    activity then ends cancelled, or timed out if the agent died first.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_attempt(request: StopInput, task_queue: str) -> None:
    """Have the agent stop and remove the attempt's container; return once it is gone.

    An agent that never picks it up is gone with its containers, or removes
    them as orphans when it comes back (its start-up reconcile). A second kill
    meanwhile does not cancel it: the capacity is released only after it.
    """
    stopping = workflow.start_activity_method(
        AgentActivityInterface.stop,
        request,
        task_queue=task_queue,
        start_to_close_timeout=KILL_GRACE + timedelta(minutes=5),
        schedule_to_start_timeout=AGENT_LOST_AFTER,
        heartbeat_timeout=SUPERVISE_HEARTBEAT_TIMEOUT,
        retry_policy=LAUNCH_RETRY,
        summary=f"stop {request.task_id} attempt {request.attempt}",
    )
    await wait_out(stopping)
    try:
        await stopping
    except ActivityError as err:
        workflow.logger.warning(
            "stop of %s attempt %d failed: %s", request.task_id, request.attempt, err.cause
        )


async def wait_out(task: asyncio.Future[Any]) -> None:
    """Return once ``task`` is done, whatever cancels the caller meanwhile (a second kill)."""
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task])
