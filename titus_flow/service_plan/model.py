"""What a service job's decisions read and what they decide: snapshots and plans.

Plain frozen values, no Temporal: the workflow (``workflows/service.py``) builds
a :class:`Snapshot` from what it holds, the pure functions of this package turn
it into a :class:`Plan`, and the workflow applies the plan (starts tasks, kills
them, sets its alarm). The clock is an input like the rest.

``workflow.patched`` records its marker where it is first called, so a patch
flag is not a boolean here but a :data:`PatchFlag`: a function the decisions
call exactly where the workflow called ``workflow.patched`` before they moved
out of it (and only when they reach that point), which keeps the commands of a
replayed history in their recorded order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from titus_flow.lifecycle import FinishReason, JobState, RolloutPhase
from titus_flow.spec import Capacity, ServiceJob

PatchFlag = Callable[[], bool]
"""Whether a ``workflow.patched`` branch applies; called only where a decision needs it."""

# A deadline is passed strictly after it: the alarm for one rings a tick later.
TICK = timedelta(milliseconds=1)


def patch(applies: bool) -> PatchFlag:
    """A flag whose answer is known: for plans made outside a workflow (tests, tools)."""
    return lambda: applies


def applied() -> bool:
    """The flag of a patch every run of this release has (the default)."""
    return True


@dataclass(frozen=True)
class Rollout:
    """Which revision is current, and the update moving to it.

    Attributes:
        job: the current revision's spec.
        revision: the current revision.
        latest_revision: the highest revision ever started (revisions only go up).
        previous: the spec a rollback returns to (the one before the latest
            update, also once it rolled out); None before any update and after
            a rollback.
        previous_revision: ``previous``'s revision.
        canary: a canary holds this many tasks on the new revision; None otherwise.
        phase: where the latest update is.
        message: the update's state, as ``job describe`` shows it.
        started_at: when the update (or the canary's promotion) started; None
            once it rolled out or back. New tasks' health deadlines run from then.

    """

    job: ServiceJob
    revision: int = 1
    latest_revision: int = 1
    previous: ServiceJob | None = None
    previous_revision: int | None = None
    canary: int | None = None
    phase: RolloutPhase = RolloutPhase.NONE
    message: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True)
class CrashLoop:
    """Tasks that failed before they ever served, and when the next may start.

    Attributes:
        failures: such failures in a row (a healthy task resets it).
        next_start_at: no task starts before then (None: at once).
        last_failure: why the latest of them ended, for the job's message.

    """

    failures: int = 0
    next_start_at: datetime | None = None
    last_failure: str = ""


class LiveTask(NamedTuple):
    """One live task as the decisions see it.

    Immutable like the rest, but a named tuple: a pass builds one per live
    task, and for thousands of tasks that is a third of a frozen dataclass's cost.

    Attributes:
        id: the task id.
        number: its index in the job, which its id ends with (newer tasks have higher ones).
        revision: the job revision it runs.
        healthy: whether it serves now.
        launched_at: when it was placed (None before): its health deadline runs from then.
        agent: the agent it runs on.
        moving: its agent is draining: replace it, then stop it.
        stopping: a kill of it is under way.

    """

    id: str
    number: int  # not ``index``: a tuple has an ``index`` method
    revision: int | None
    healthy: bool = False
    launched_at: datetime | None = None
    agent: str | None = None
    moving: bool = False
    stopping: bool = False


@dataclass(frozen=True)
class EndedTask:
    """A recently finished task: its revision and why it ended (rollback counts them)."""

    revision: int | None
    reason: FinishReason | None


@dataclass(frozen=True)
class Snapshot:
    """Everything one reconcile pass reads.

    Attributes:
        now: the workflow's clock.
        scaled: the capacity a scale request set (None: the current spec's).
        rollout: the revisions and the update under way.
        crash: the crash loop.
        tasks: the live tasks, oldest first.
        held_kills: task ids whose kill waits for the disruption budget, in arrival order.
        ended: the latest finished tasks.
        continue_due: the history is long enough to continue as new.
        state: the job's state now.
        zero_budget: ``ZERO_BUDGET_PATCH``: a disruption budget of 0 allows no
            voluntary disruption (the previous release raised it to 1).

    """

    now: datetime
    rollout: Rollout
    tasks: tuple[LiveTask, ...] = ()
    scaled: Capacity | None = None
    crash: CrashLoop = CrashLoop()
    held_kills: tuple[str, ...] = ()
    ended: tuple[EndedTask, ...] = ()
    continue_due: bool = False
    state: JobState = JobState.RUNNING
    zero_budget: PatchFlag = applied

    @property
    def capacity(self) -> Capacity:
        """The capacity the job keeps (a scale request's, else the current spec's)."""
        return capacity_of(self.scaled, self.rollout)


def capacity_of(scaled: Capacity | None, rollout: Rollout) -> Capacity:
    """The capacity a job keeps: a scale request's, else its current spec's."""
    return scaled or rollout.job.capacity


@dataclass(frozen=True)
class StartTask:
    """Start a new task of ``revision``."""

    revision: int | None


@dataclass(frozen=True)
class KillTask:
    """Stop live task ``task_id`` for ``reason``; ``message`` (when set) says why on the task."""

    task_id: str
    reason: FinishReason
    message: str | None = None


Action = StartTask | KillTask


@dataclass(frozen=True)
class Plan:
    """What one reconcile pass decided.

    Attributes:
        actions: tasks to start and to kill, in the order to act on them.
        rollout: the rollout after the pass (a rollback or a finished update changes it).
        crash: the crash loop after the pass (a rollback resets it).
        held_kills: the kill requests still waiting for the budget, in arrival order.
        waiting: why the job does not act further yet (shown on the job).
        wake: when the clock makes the next decision, and what it is (None: no such).
        rolled_back: the pass rolled the update back (reconcile again at once).
        state: the job state and message to show; None: unchanged.

    """

    actions: tuple[Action, ...]
    rollout: Rollout
    crash: CrashLoop
    held_kills: tuple[str, ...]
    waiting: tuple[str, ...]
    wake: tuple[datetime, str] | None
    rolled_back: bool
    state: tuple[JobState, str] | None

    @property
    def starts(self) -> list[StartTask]:
        """The tasks to start."""
        return [a for a in self.actions if isinstance(a, StartTask)]

    @property
    def kills(self) -> list[KillTask]:
        """The tasks to kill."""
        return [a for a in self.actions if isinstance(a, KillTask)]


def allowed_unavailable(job: ServiceJob, desired: int, zero_budget: PatchFlag) -> int:
    """How many tasks voluntary disruptions may take down now (the disruption budget)."""
    allowed = job.disruption_budget.allowed(desired)
    if allowed == 0 and desired and not zero_budget():
        return 1  # a history of the previous release, which raised a budget of 0 to 1
    return allowed


def budget_allows(
    job: ServiceJob, desired: int, healthy: int, victim_healthy: bool, zero_budget: PatchFlag
) -> bool:
    """Whether taking a task down keeps unavailability within the budget.

    ``healthy`` counts the job's healthy tasks, the victim included.
    """
    left = healthy - (1 if victim_healthy else 0)
    # The budget is read first even for an unhealthy victim: it may ask its patch flag.
    return desired - left <= allowed_unavailable(job, desired, zero_budget) or not victim_healthy
