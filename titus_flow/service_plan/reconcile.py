"""One reconcile pass of a service job: compare what runs with what should, decide.

As Nomad's ``scheduler/reconcile``: :func:`reconcile` is a pure function from a
:class:`~titus_flow.service_plan.model.Snapshot` to a
:class:`~titus_flow.service_plan.model.Plan`, in five steps:

1. start tasks of the current revision up to ``desired`` (plus ``max_surge``
   while old ones run), after a crash-loop backoff when tasks keep failing; a
   canary stops at its size and keeps the rest on the old revision;
2. retire old-revision tasks once enough new ones are healthy
   (``max_unavailable``), rolling back when new ones fail or are not healthy in
   time;
3. move tasks off draining agents, each once its replacement is healthy;
4. remove surplus tasks on scale-down, unhealthy first, then newest;
5. act on kill requests the disruption budget held back.

Voluntary disruptions (2 to 5) wait while they would break the disruption
budget, with the reason shown.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from titus_flow.lifecycle import FinishReason, JobState, RolloutPhase
from titus_flow.service_plan.model import (
    TICK,
    Action,
    CrashLoop,
    KillTask,
    LiveTask,
    Plan,
    Rollout,
    Snapshot,
    StartTask,
    allowed_unavailable,
    budget_allows,
    capacity_of,
)

# New-revision tasks that fail this many times during an update roll it back.
UPDATE_FAILURES_BEFORE_ROLLBACK = 3


def reconcile(snapshot: Snapshot) -> Plan:
    """Decide what the job does next: the plan for ``snapshot``."""
    return _Pass(snapshot).run()


def roll_back(
    rollout: Rollout, crash: CrashLoop, why: str, now: datetime
) -> tuple[Rollout, CrashLoop]:
    """Make the previous revision current again (the next pass replaces the rest)."""
    assert rollout.previous is not None
    bad = rollout.revision
    revision = rollout.previous_revision or bad - 1
    rolled = replace(
        rollout,
        job=rollout.previous,
        previous=None,
        revision=revision,
        message=f"revision {bad} rolled back to {revision}: {why}",
        phase=RolloutPhase.ROLLED_BACK,
        canary=None,
        started_at=None,
    )
    return rolled, replace(crash, failures=0, next_start_at=now)


class _Pass:
    """The working state of one :func:`reconcile` call (mutable, never seen outside)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.rollout = snapshot.rollout
        self.crash = snapshot.crash
        self.live = {t.id: t for t in snapshot.tasks}
        self.healthy = {t.id for t in snapshot.tasks if t.healthy}  # a kill takes a task out
        self.stopping = {t.id for t in snapshot.tasks if t.stopping}
        self.held = dict.fromkeys(snapshot.held_kills)  # ordered, as the requests came
        self.actions: list[Action] = []
        self.waiting: list[str] = []
        self.wake: tuple[datetime, str] | None = None
        self.rolled_back = False

    # --- the budget (read anew: a rollback changes the spec it comes from) ------

    @property
    def desired(self) -> int:
        return capacity_of(self.snapshot.scaled, self.rollout).desired

    def allowed_unavailable(self) -> int:
        return allowed_unavailable(self.rollout.job, self.desired, self.snapshot.zero_budget)

    def budget_allows(self, victim: LiveTask) -> bool:
        return budget_allows(
            self.rollout.job,
            self.desired,
            len(self.healthy),
            victim.id in self.healthy,
            self.snapshot.zero_budget,
        )

    def wake_by(self, at: datetime, why: str) -> None:
        """Have the loop reconcile again by ``at``, when a decision of the clock falls due."""
        if self.wake is None or at < self.wake[0]:
            self.wake = (at, why)

    # --- acting -----------------------------------------------------------------

    def kill(self, victim: LiveTask, reason: FinishReason, message: str | None = None) -> None:
        if victim.id in self.stopping:
            return
        self.stopping.add(victim.id)
        self.healthy.discard(victim.id)  # being stopped: no longer serving
        self.actions.append(KillTask(victim.id, reason, message))

    def disrupt(self, victim: LiveTask, reason: FinishReason, message: str) -> None:
        """Kill ``victim`` voluntarily: if the disruption budget allows it."""
        if victim.id in self.stopping:
            return
        if not self.budget_allows(victim):
            self.waiting.append(f"{message}: {victim.id} waits for the disruption budget")
            return
        self.kill(victim, reason, message)

    # --- the pass -----------------------------------------------------------------

    def run(self) -> Plan:
        now = self.snapshot.now
        # Read before a rollback: this pass surges and retires by the update's terms.
        desired = self.desired
        update = self.rollout.job.update
        tasks = self.snapshot.tasks
        moving = [t for t in tasks if t.moving]  # on a draining agent: replaced, then stopped
        replaced_first = self.replaced_first()  # held kills under a budget of 0: likewise
        staying = [t for t in tasks if not t.moving and t.id not in replaced_first]

        def by_revision(revision: int) -> tuple[list[LiveTask], list[LiveTask]]:
            """(current, old): the staying tasks on ``revision``, and the rest."""
            current = [t for t in staying if t.revision == revision]
            return current, [t for t in staying if t.revision != revision]

        current, old = by_revision(self.rollout.revision)
        if old:
            self.check_rollback(current)  # may make the previous revision current again
            current, old = by_revision(self.rollout.revision)
        revision = self.rollout.revision

        # 1. Start tasks of the current revision (with surge while old ones run);
        # a canary stops at its size, and old-revision tasks that die meanwhile
        # are replaced on the old revision.
        canary = self.rollout.canary
        target = desired if canary is None else min(canary, desired)
        keep_old = desired - target
        surge = update.max_surge if old else 0
        if old and self.allowed_unavailable() == 0:
            surge = max(surge, 1)  # no old task may go before a new one is healthy
        room = desired + surge - len(staying)
        to_start = max(0, min(target - len(current), room))
        old_to_start = 0
        if canary is not None and self.rollout.previous is not None:
            old_to_start = max(0, min(keep_old - len(old), room - to_start))
        next_start_at = self.crash.next_start_at
        if (to_start or old_to_start) and self.snapshot.continue_due:
            # Launches in flight cannot be handed to the next run: let them land
            # first, so the history is continued as new even under constant churn.
            self.waiting.append("handing over to a fresh history: starts resume shortly")
        elif (to_start or old_to_start) and next_start_at and now < next_start_at:
            self.wake_by(next_start_at, "crash-loop backoff ends")
            wait = (next_start_at - now).total_seconds()
            # Shown until the next start, however long: say when, not only how long.
            self.waiting.append(
                f"crash-loop backoff: next start in {wait:.0f}s (at {next_start_at:%H:%M:%S} UTC)"
            )
        else:
            self.actions += [StartTask(revision)] * to_start
            self.actions += [StartTask(self.rollout.previous_revision)] * old_to_start

        # 2. Retire old-revision tasks as the update's budget allows (a canary
        # keeps the rest of them).
        if old:
            floor = desired - update.max_unavailable
            leaving = [t for t in old if t.id not in self.stopping]
            leaving.sort(key=lambda t: (t.id in self.healthy, t.number))
            for victim in leaving[: max(0, len(leaving) - keep_old)]:
                if victim.id in self.healthy and len(self.healthy) - 1 < floor:
                    self.waiting.append(f"update: {victim.id} stays until new tasks are healthy")
                    break
                self.disrupt(victim, FinishReason.KILLED, "replaced by rolling update")
        elif (
            canary is None and self.rollout.started_at is not None and len(self.healthy) >= desired
        ):
            self.rollout = replace(
                self.rollout,
                message=f"revision {revision} rolled out",
                phase=RolloutPhase.ROLLED_OUT,
                started_at=None,
            )
        if canary is not None:
            healthy_new = sum(1 for t in current if t.id in self.healthy)
            self.rollout = replace(
                self.rollout,
                message=f"canary: revision {revision} healthy on {healthy_new} of {target}"
                " task(s); promote or roll back",
            )

        # 3. Move tasks off draining agents: each goes once the job has
        # ``desired`` healthy tasks without it, and the budget allows.
        for victim in moving:
            if victim.id in self.stopping:
                continue
            if victim.id in self.healthy and len(self.healthy) - 1 < desired:
                self.waiting.append(f"move: {victim.id} stays until its replacement is healthy")
                continue
            self.disrupt(victim, FinishReason.KILLED, f"moved off draining agent {victim.agent}")

        # 4. Remove surplus tasks on scale-down: unhealthy first, then newest.
        surplus = len(current) - desired if not old else 0
        victims = sorted(current, key=lambda t: (t.id in self.healthy, -t.number))
        for victim in victims[: max(surplus, 0)]:
            self.disrupt(victim, FinishReason.SCALED_DOWN, "scaled down")

        # 5. Kill requests held back by the disruption budget.
        self.release_held_kills(replaced_first)
        return Plan(
            actions=tuple(self.actions),
            rollout=self.rollout,
            crash=self.crash,
            held_kills=tuple(self.held),
            waiting=tuple(self.waiting),
            wake=self.wake,
            rolled_back=self.rolled_back,
            state=self.job_state(),
        )

    def replaced_first(self) -> set[str]:
        """Held kills whose task gets a replacement before it stops: all, under a budget of 0.

        With a budget of 0 a held kill could only wait forever for a healthy
        task more than desired; starting a replacement gives it one.
        """
        if self.held and self.allowed_unavailable() == 0:
            return set(self.held)
        return set()

    def check_rollback(self, current: list[LiveTask]) -> None:
        """Roll the update back if its new tasks fail, or are not healthy in time."""
        rollout, now = self.rollout, self.snapshot.now
        if rollout.previous is None or rollout.started_at is None:
            return
        deadline = rollout.job.update.healthy_deadline
        failed = sum(
            1
            for t in self.snapshot.ended
            if t.revision == rollout.revision
            and t.reason is not FinishReason.KILLED
            and t.reason is not FinishReason.SCALED_DOWN
        )
        # When each new task that is not healthy yet was placed.
        unhealthy_since = [
            t.launched_at for t in current if t.id not in self.healthy and t.launched_at is not None
        ]
        late = [since for since in unhealthy_since if now - since > deadline]
        if failed < UPDATE_FAILURES_BEFORE_ROLLBACK and not late:
            if unhealthy_since:
                self.wake_by(min(unhealthy_since) + deadline + TICK, "update health deadline")
            return
        why = f"{failed} new task(s) failed" if failed else f"not healthy within {deadline}"
        self.rollout, self.crash = roll_back(rollout, self.crash, why, now)
        self.rolled_back = True

    def release_held_kills(self, replaced_first: set[str]) -> None:
        """Kill the tasks whose held kill the budget allows now; say why the rest wait."""
        for task_id in list(self.held):
            victim = self.live.get(task_id)
            if victim is None:
                del self.held[task_id]  # ended meanwhile
            elif self.budget_allows(victim):
                del self.held[task_id]
                self.kill(victim, FinishReason.KILLED)
            elif task_id in replaced_first:
                self.waiting.append(
                    f"kill of {task_id} waits for its replacement to be healthy"
                    " (disruption budget 0)"
                )
            else:
                self.waiting.append(f"kill of {task_id} waits for the disruption budget")

    def job_state(self) -> tuple[JobState, str] | None:
        """The state the job shows after the pass: Running, or Degraded in a crash loop."""
        healthy, desired = len(self.healthy), self.desired
        if healthy >= desired:
            return JobState.RUNNING, ""
        if self.crash.failures > 0:
            waiting = f"; {self.waiting[0]}" if self.waiting else ""
            return (
                JobState.DEGRADED,
                f"{healthy}/{desired} healthy; {self.crash.last_failure}{waiting}",
            )
        if self.snapshot.state is not JobState.ACCEPTED:
            return JobState.RUNNING, f"{healthy}/{desired} healthy"
        return None
