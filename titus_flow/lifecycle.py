"""Task and job lifecycle: states, finish reasons and the retry rule.

Everything here is pure and deterministic, so workflows may use it directly.
States and reasons follow Netflix Titus.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from titus_flow.spec import Retry


class TaskState(StrEnum):
    """Where one task is in its life (Titus task states)."""

    ACCEPTED = "Accepted"  # known, waiting for capacity or a retry
    LAUNCHED = "Launched"  # placed on an agent, capacity reserved
    START_INITIATED = "StartInitiated"  # the agent is starting the container
    STARTED = "Started"  # the container runs
    KILL_INITIATED = "KillInitiated"  # a stop was requested
    FINISHED = "Finished"  # done for good; see the reason


class FinishReason(StrEnum):
    """Why an attempt (or a task) finished."""

    NORMAL = "normal"
    FAILED = "failed"
    KILLED = "killed"
    SCALED_DOWN = "scaled_down"
    RUNTIME_LIMIT_EXCEEDED = "runtime_limit_exceeded"
    OOM_KILLED = "oom_killed"
    LOST = "lost"
    CRASHED = "crashed"
    SYSTEM_ERROR = "system_error"
    INVALID_REQUEST = "invalid_request"


class JobState(StrEnum):
    """A job's overall state, also its ``TitusJobState`` search attribute."""

    ACCEPTED = "Accepted"
    RUNNING = "Running"
    DEGRADED = "Degraded"
    KILL_INITIATED = "KillInitiated"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    KILLED = "Killed"

    @property
    def is_final(self) -> bool:
        """Whether the job has ended."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED)


class RolloutPhase(StrEnum):
    """Where a service job's latest update stands."""

    NONE = "none"  # never updated
    ROLLING = "rolling"  # replacing tasks batch by batch
    CANARY = "canary"  # holding with a few tasks on the new revision
    ROLLED_OUT = "rolled_out"  # every task runs the new revision, healthy
    ROLLED_BACK = "rolled_back"  # back on the previous revision

    @property
    def is_settled(self) -> bool:
        """Whether the update has ended one way or the other."""
        return self in (RolloutPhase.ROLLED_OUT, RolloutPhase.ROLLED_BACK)


# Titus rule: the platform's own failures never use up the user's retry budget.
SYSTEM_REASONS = frozenset({FinishReason.LOST, FinishReason.SYSTEM_ERROR})

# Attempts lost to the platform are retried, but not forever (a broken agent
# image would otherwise loop): past this many the task fails as system_error.
MAX_SYSTEM_RETRIES = 10

# A platform retry waits a little first (1 s, 2 s, 4 s ... at most 30 s): a
# broken agent or registry is not hit again at once, and a lost agent's tasks do
# not all come back in the same instant.
PLATFORM_RETRY_FIRST = timedelta(seconds=1)
PLATFORM_RETRY_MAX = timedelta(seconds=30)


def platform_retry_delay(system_failures: int) -> timedelta:
    """Backoff before retrying after the ``system_failures``-th platform failure (1-based)."""
    factor: int = 2 ** max(0, min(system_failures - 1, 16))
    return min(PLATFORM_RETRY_FIRST * factor, PLATFORM_RETRY_MAX)


def reason_for_exit(exit_code: int, oom_killed: bool) -> FinishReason:
    """The finish reason of a container that exited on its own."""
    if oom_killed:
        return FinishReason.OOM_KILLED
    return FinishReason.NORMAL if exit_code == 0 else FinishReason.FAILED


def retry_delay(
    policy: Retry,
    reason: FinishReason,
    exit_code: int | None,
    user_failures: int,
    system_failures: int,
    *,
    platform_backoff: bool = False,
) -> timedelta | None:
    """Delay before the next attempt, or None when the task is finished for good.

    ``user_failures`` and ``system_failures`` count the attempts so far that
    failed through the user's fault and the platform's, this one included.
    A platform failure is retried at once, or with ``platform_backoff`` after
    :func:`platform_retry_delay` (jobs of earlier releases retried at once).
    """
    if reason in SYSTEM_REASONS:
        if system_failures >= MAX_SYSTEM_RETRIES:
            return None
        return platform_retry_delay(system_failures) if platform_backoff else timedelta(0)
    if reason in (FinishReason.NORMAL, FinishReason.KILLED, FinishReason.SCALED_DOWN):
        return None
    if reason is FinishReason.INVALID_REQUEST:
        return None
    if reason is FinishReason.RUNTIME_LIMIT_EXCEEDED and not policy.retry_on_runtime_limit:
        return None
    if (
        reason is FinishReason.FAILED
        and exit_code is not None
        and not policy.retries_exit_code(exit_code)
    ):
        return None
    if user_failures >= policy.attempts:
        return None
    return policy.backoff.delay_after(user_failures)
