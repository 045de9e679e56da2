"""A service job's answers to requests, and the rules its loop keeps between passes.

Pure like :mod:`titus_flow.service_plan.reconcile`: scale, update, canary,
promote, rollback and task kills (with their validation), the crash loop's
backoff, and when a run hands over to a fresh history. The workflow's handlers
call these and store the result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from titus_flow.lifecycle import FinishReason, RolloutPhase, TaskState
from titus_flow.service_plan.model import (
    CrashLoop,
    PatchFlag,
    Rollout,
    allowed_unavailable,
    budget_allows,
)
from titus_flow.spec import Capacity, ServiceJob

CRASH_BACKOFF_INITIAL = timedelta(seconds=2)
CRASH_BACKOFF_MAX = timedelta(minutes=5)
# Without a health check, a task that ran this long was serving, not crash-looping.
MIN_HEALTHY_RUN = timedelta(seconds=10)
# A run continues as new past this many times its history limit even with
# launches in flight (CONTINUE_ALWAYS_PATCH): it stops them, the next run
# starts their replacements.
HARD_HISTORY_FACTOR = 2
# A run that adopted N tasks continues only past N + max(N / 2, this) history
# events (CONTINUE_FLOOR_PATCH): its first N events are their supervise activities.
CONTINUE_FLOOR_EVENTS = 200
# The previous release reconciled at least this often, changes or not (about
# 60 history events a minute for an idle service); its runs still do.
RECHECK_EVERY = timedelta(seconds=5)


class Rejected(ValueError):
    """A request the job refuses as it stands: nothing was changed."""


# --- capacity and rollouts -------------------------------------------------------


def scaled(current: Capacity, desired: int | None, min_: int | None, max_: int | None) -> Capacity:
    """``current`` with the fields a scale request sets; :class:`Rejected` if out of order."""
    values = {
        "min": current.min if min_ is None else min_,
        "desired": current.desired if desired is None else desired,
        "max": current.max if max_ is None else max_,
    }
    try:
        return Capacity(**values)
    except ValueError as err:
        raise Rejected(
            f"invalid scale request: need min <= desired <= max, got min={values['min']},"
            f" desired={values['desired']}, max={values['max']}"
        ) from err


def check_same_job(current: ServiceJob, job: ServiceJob) -> None:
    """An update keeps the job's name."""
    if job.name != current.name:
        raise Rejected(
            f"job name {job.name!r} does not match {current.name!r}; an update keeps the name"
        )


def check_canary(current: ServiceJob, job: ServiceJob, tasks: int, desired: int) -> None:
    """A canary keeps the name and moves fewer tasks than the job has."""
    check_same_job(current, job)
    if tasks > desired:
        raise Rejected(
            f"a canary of {tasks} tasks is more than the job's desired"
            f" {desired}; use a plain update to replace every task"
        )


def begin_rollout(
    rollout: Rollout, job: ServiceJob, canary: int | None, now: datetime, same_revision: PatchFlag
) -> Rollout | None:
    """The rollout to ``job`` (a canary of ``canary`` tasks, or a rolling update).

    None when this very rollout is under way or done (``SAME_REVISION_PATCH``:
    a command sent again after an error it could not see the end of).
    """
    if (
        job == rollout.job
        and canary == rollout.canary
        and rollout.previous is not None
        and same_revision()
    ):
        return None
    revision = max(rollout.latest_revision, rollout.revision) + 1
    if canary is None:
        phase, message = RolloutPhase.ROLLING, f"rolling out revision {revision}"
    else:
        phase = RolloutPhase.CANARY
        message = f"canary: moving {canary} task(s) to revision {revision}"
    return Rollout(
        job=job,
        revision=revision,
        latest_revision=revision,
        previous=rollout.job,
        previous_revision=rollout.revision,
        canary=canary,
        phase=phase,
        message=message,
        started_at=now,
    )


def check_promote(rollout: Rollout) -> None:
    """Only a canary can be promoted."""
    if rollout.canary is None:
        raise Rejected("no canary to promote: start one with `titus-flow job update --canary`")


def promote(rollout: Rollout, now: datetime) -> Rollout:
    """End a canary by rolling its revision out to every task (the health deadline restarts)."""
    return replace(
        rollout,
        canary=None,
        phase=RolloutPhase.ROLLING,
        message=f"promoting revision {rollout.revision} to every task",
        started_at=now,
    )


def check_rollback(rollout: Rollout) -> None:
    """Only an update in progress (or a canary) can be rolled back."""
    if rollout.previous is None:
        raise Rejected("nothing to roll back to: the job has no update in progress")


# --- task kills -------------------------------------------------------------------


def check_kill_task(known: bool, task_id: str, shrink: bool, capacity: Capacity) -> None:
    """A kill names a live task, and ``--shrink`` keeps desired at least min."""
    if not known:
        raise Rejected(f"job has no running task {task_id!r}")
    if shrink and capacity.desired - 1 < capacity.min:
        raise Rejected(f"--shrink would take desired below min ({capacity.min}); lower min first")


@dataclass(frozen=True)
class KillDecision:
    """What a ``kill_task`` request does.

    Attributes:
        shrunk: the job's capacity after ``--shrink`` lowered desired; None: unchanged.
        kill_now: the task stops at once; else its kill waits for the budget.
        answer: what the request returns.

    """

    shrunk: Capacity | None
    kill_now: bool
    answer: str


def kill_task(
    *,
    job: ServiceJob,
    capacity: Capacity,
    healthy: int,
    victim_healthy: bool,
    again: bool,
    shrink: bool,
    force: bool,
    shrink_once: PatchFlag,
    zero_budget: PatchFlag,
) -> KillDecision:
    """Kill one task: at once if forced or the budget allows, else held.

    ``healthy`` counts the job's healthy tasks, the victim included. ``again``:
    the task is already being killed, or its kill is held; then a shrink lowers
    desired only once (``SHRINK_ONCE_PATCH``).
    """
    shrunk = None
    if shrink and not (again and shrink_once()):
        shrunk = capacity = capacity.model_copy(update={"desired": capacity.desired - 1})
    if force or budget_allows(job, capacity.desired, healthy, victim_healthy, zero_budget):
        return KillDecision(shrunk, True, "killed")
    if allowed_unavailable(job, capacity.desired, zero_budget) == 0:
        answer = "waiting for the disruption budget (0): a replacement starts first"
        return KillDecision(shrunk, False, answer)
    return KillDecision(shrunk, False, "waiting for the disruption budget")


# --- the crash loop -----------------------------------------------------------------


def crash_backoff(failures: int) -> timedelta:
    """Delay before the next start after ``failures`` failed tasks in a row."""
    # The first replacement starts at once (a single crash is no loop), then the
    # delay doubles from CRASH_BACKOFF_INITIAL up to the cap, as in Kubernetes.
    if failures <= 1:
        return timedelta(0)
    seconds = CRASH_BACKOFF_INITIAL.total_seconds() * 2 ** min(failures - 2, 20)
    return min(timedelta(seconds=seconds), CRASH_BACKOFF_MAX)


def crashed(
    reason: FinishReason,
    *,
    has_health_check: bool,
    started_at: datetime | None,
    served: bool,
    now: datetime,
) -> bool:
    """Whether a task's end counts toward a crash loop.

    Only tasks that never served do: one that was healthy and died later (a
    killed container, a lost agent) is replaced at once, so one event that
    takes several tasks down does not slow the recovery. ``served``: it passed
    its health check at least once (the agent's word, or a health signal).
    """
    if reason in (FinishReason.KILLED, FinishReason.SCALED_DOWN):
        return False
    if not has_health_check:
        return started_at is None or now - started_at < MIN_HEALTHY_RUN
    return not served


def after_crash(crash: CrashLoop, why: str, now: datetime) -> CrashLoop:
    """The crash loop after one more task failed before it served: back off."""
    failures = crash.failures + 1
    return CrashLoop(failures, now + crash_backoff(failures), why)


def healed(crash: CrashLoop) -> CrashLoop:
    """The crash loop after a task turned healthy: over (a backoff under way still ends)."""
    return replace(crash, failures=0, last_failure="")


def recheck_in(now: datetime, next_start_at: datetime | None) -> timedelta:
    """The previous release's wake-up: the end of a backoff, or RECHECK_EVERY."""
    if next_start_at is not None and next_start_at > now:
        return min(RECHECK_EVERY, next_start_at - now)
    return RECHECK_EVERY


# --- handing over to a fresh history ----------------------------------------------


def launching(state: TaskState, placed: bool) -> bool:
    """Whether a task is between placement and Started: such a task cannot be handed over."""
    return not (state is TaskState.STARTED or (state is TaskState.ACCEPTED and not placed))


def update_resumes(phase: RolloutPhase) -> bool:
    """Whether a run starting with the rollout in ``phase`` has an update under way.

    Its new tasks' health deadlines then run anew from the run's start (the
    start of an update is not carried across continue-as-new).
    """
    return phase in (RolloutPhase.ROLLING, RolloutPhase.CANARY)


def continue_floor(adopted: int) -> int:
    """History events before which a run that adopted ``adopted`` tasks does not continue."""
    return adopted + max(adopted // 2, CONTINUE_FLOOR_EVENTS)


def continue_due(length: int, floor: int, suggested: bool, limit: int) -> bool:
    """Whether a history of ``length`` events is long enough to continue as new.

    ``floor``: a run that adopted many tasks does not continue before it
    (:func:`continue_floor`); ``limit``: the job's history limit.
    """
    if length <= floor:
        return False
    return suggested or length > limit


def ready_to_continue(
    *, due: bool, launching: bool, held_kills: bool, always: bool, length: int, limit: int
) -> bool:
    """Whether the run continues as new now (``due``: :func:`continue_due`).

    ``always`` (``CONTINUE_ALWAYS_PATCH``): held kills travel with their tasks,
    and launches in flight are waited for (they land in seconds), but never
    past :data:`HARD_HISTORY_FACTOR` times the history ``limit``. The previous
    release waited for no held kill and no launch in flight.
    """
    if not due:
        return False
    if not always:
        return not launching and not held_kills
    return not launching or length > limit * HARD_HISTORY_FACTOR
