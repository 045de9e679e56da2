"""The service job workflow: keep ``desired`` healthy tasks, for months.

A reconcile loop, Kubernetes-controller style: every change (a task is
placed, starts, exits, turns healthy or unhealthy; a scale, update or kill
request; a draining agent) sets a flag; the loop compares what runs with what
should and acts. It sleeps until the next change: only the decisions the clock
makes (a crash-loop backoff ends, an update's new task misses its health
deadline) set a timer, for exactly that moment, so an idle service adds no
history at all:

- start tasks of the current revision up to ``desired`` (plus ``max_surge``
  during a rolling update), after a crash-loop backoff when tasks keep failing;
- retire tasks of an old revision once enough new ones are healthy
  (``max_unavailable``), rolling back when new ones are not healthy in time;
  a canary stops after its few new tasks and holds until promoted or rolled back;
- remove surplus tasks on scale-down, unhealthy first, then newest;
- hold voluntary disruptions (scale-down, update, task kill) while they would
  break the job's disruption budget, with the reason shown.

Each task is one attempt: a replacement is a new task, as in Titus. Health
probes run on the agent; only changes arrive here (``task_health`` signals).
The workflow continues as new before its history grows large, carrying the
live tasks, which the next run adopts without touching their containers.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from titus_flow import visibility
    from titus_flow.contracts import (
        CanaryRequest,
        CarriedService,
        KillTaskRequest,
        LaunchInput,
        PlacementItem,
        PlacementUpdate,
        ScaleRequest,
        ServiceJobInput,
        ServiceTaskRecord,
        SuperviseInput,
        TaskHealth,
        Unplaced,
    )
    from titus_flow.lifecycle import FinishReason, JobState, RolloutPhase, TaskState
    from titus_flow.outcomes import end_job
    from titus_flow.spec import Capacity, ServiceJob
    from titus_flow.views import (
        AttemptView,
        JobView,
        ServiceStatus,
        TaskPage,
        TaskQuery,
        TaskView,
        page_tasks,
    )
    from titus_flow.workflows.attempts import Outcome, launch, supervise, wait_out
    from titus_flow.workflows.common import SchedulerMailbox

CRASH_BACKOFF_INITIAL = timedelta(seconds=2)
CRASH_BACKOFF_MAX = timedelta(minutes=5)
# New-revision tasks that fail this many times during an update roll it back.
UPDATE_FAILURES_BEFORE_ROLLBACK = 3
FINISHED_TASKS_KEPT = 20
# The previous release reconciled at least this often, changes or not (about
# 60 history events a minute for an idle service); its runs still do.
RECHECK_EVERY = timedelta(seconds=5)
# A deadline is passed strictly after it: the alarm for one rings a tick later.
TICK = timedelta(milliseconds=1)
# Without a health check, a task that ran this long was serving, not crash-looping.
MIN_HEALTHY_RUN = timedelta(seconds=10)
# ``workflow.patched`` id of "a disruption budget of 0 allows no voluntary
# disruption": the previous release raised it to 1.
ZERO_BUDGET_PATCH = "zero-disruption-budget"
# ``workflow.patched`` id of "the loop wakes on changes and on its own
# deadlines only": the previous release also woke every RECHECK_EVERY.
WAKE_ON_CHANGE_PATCH = "service-wakes-on-change"
# ``workflow.patched`` id of "continue as new whatever the job holds": held
# kills travel with their tasks, and past HARD_HISTORY_FACTOR times the history
# limit tasks still launching are stopped (the next run replaces them). The
# previous release waited for no held kill and no launch in flight, which a
# degraded service with a held kill never reached.
CONTINUE_ALWAYS_PATCH = "service-continues-whatever-it-holds"
HARD_HISTORY_FACTOR = 2
# ``workflow.patched`` id of "a workflow cancel stops every task, as a kill
# does": the previous release ended the run and left its tasks running.
CANCEL_KILLS_PATCH = "service-cancel-kills-tasks"
# ``workflow.patched`` id of "``kill_task --shrink`` of a task already being
# killed lowers desired only once".
SHRINK_ONCE_PATCH = "service-shrink-once-per-task"
# ``workflow.patched`` id of "an update or canary to the revision already
# current (same spec, same canary size) is a no-op answering that revision": a
# command sent again after an error it could not see the end of.
SAME_REVISION_PATCH = "service-same-revision-no-op"
# ``workflow.patched`` id of "continue as new with compact task rows"
# (:class:`~titus_flow.contracts.CarriedService`) and bounded finished rows: the
# previous release carried whole records, ~620 bytes a task, which passed
# Temporal's 2 MB payload limit near 3,300 live tasks.
COMPACT_CARRY_PATCH = "service-compact-carry"
# ``workflow.patched`` id of "a run that adopted N tasks continues only past
# N + max(N / 2, CONTINUE_FLOOR_EVENTS) history events": it schedules N
# supervise activities before anything else, so with N past the limit (or
# Temporal's suggestion, ~4,000 events) the previous release continued as new
# again at once, run after run.
CONTINUE_FLOOR_PATCH = "service-continue-floor"
CONTINUE_FLOOR_EVENTS = 200
# ``workflow.patched`` id of "a launch that completes after its task was killed
# is stopped": the launch activity ignores a cancel that reaches it after the
# container started, so the previous release supervised a killed task as if it
# ran, its kill lost; a handover (or a job kill) then waited for it forever.
LATE_LAUNCH_PATCH = "service-stop-late-launch"


def crash_backoff(failures: int) -> timedelta:
    """Delay before the next start after ``failures`` failed tasks in a row."""
    # The first replacement starts at once (a single crash is no loop), then the
    # delay doubles from CRASH_BACKOFF_INITIAL up to the cap, as in Kubernetes.
    if failures <= 1:
        return timedelta(0)
    seconds = CRASH_BACKOFF_INITIAL.total_seconds() * 2 ** min(failures - 2, 20)
    return min(timedelta(seconds=seconds), CRASH_BACKOFF_MAX)


@workflow.defn(name="ServiceJob")
class ServiceJobWorkflow:
    """Keeps a :class:`~titus_flow.spec.ServiceJob` at its desired healthy size."""

    @workflow.init
    def __init__(self, request: ServiceJobInput) -> None:
        # Initialised from the input here, not in run(): an update or signal that
        # arrives with the first workflow task is handled before run() starts.
        self._input: ServiceJobInput | None = request
        self._job_id = workflow.info().workflow_id
        self._live: dict[str, ServiceTaskRecord] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._kill_reasons: dict[str, FinishReason] = {}
        # Kill requests waiting for the disruption budget, in arrival order (a
        # dict, not a set: workflow code must not depend on hash order).
        self._held_kills: dict[str, None] = {}
        self._waiting: list[str] = []
        self._mailbox: SchedulerMailbox | None = SchedulerMailbox(self._job_id)
        self._dirty = True
        self._killed = False
        self._state = JobState.ACCEPTED
        self._message = ""
        self._last_failure = ""  # why the latest task that never served ended
        self._next_start_at: datetime | None = None
        self._update_started_at: datetime | None = None
        self._wakes_on_change = False  # set by run(): this release, or a replay of the last
        self._continues_always = False  # likewise, CONTINUE_ALWAYS_PATCH
        self._continue_floor = 0  # history events before which this run does not continue
        self._wake_at: tuple[datetime, str] | None = None  # next clock-driven decision, and why
        self._alarm: asyncio.Task[None] | None = None
        self._alarm_at: tuple[datetime, str] | None = None

    # --- state shortcuts ----------------------------------------------------

    @property
    def _spec(self) -> ServiceJob:
        assert self._input is not None
        return self._input.job

    def _spec_of(self, revision: int | None) -> ServiceJob:
        """The spec a task of ``revision`` runs (the previous one during an update)."""
        assert self._input is not None
        previous = self._input.previous
        if previous is not None and revision == self._input.previous_revision:
            return previous
        return self._input.job

    @property
    def _capacity(self) -> Capacity:
        assert self._input is not None
        return self._input.capacity or self._input.job.capacity

    def _healthy(self) -> list[ServiceTaskRecord]:
        return [t for t in self._live.values() if t.view.healthy]

    def _changed(self) -> None:
        self._dirty = True

    # --- the run --------------------------------------------------------------

    @workflow.run
    async def run(self, request: ServiceJobInput) -> JobView:
        """Hold the job at its desired size until it is killed.

        A service job only ends Killed: its workflow then fails with type
        ``JobKilled`` and the final view (:func:`~titus_flow.outcomes.end_job`).
        """
        self._wakes_on_change = workflow.patched(WAKE_ON_CHANGE_PATCH)
        self._continues_always = workflow.patched(CONTINUE_ALWAYS_PATCH)
        self._next_start_at = workflow.now()
        if request.rollout in (RolloutPhase.ROLLING, RolloutPhase.CANARY):
            self._update_started_at = workflow.now()
        assert self._mailbox is not None
        flusher = asyncio.create_task(self._mailbox.run())
        carried = request.tasks
        if request.carried is not None:
            carried = request.carried.records(self._job_id)
            request.carried = None  # the next carry is made from the live tasks
        if workflow.patched(CONTINUE_FLOOR_PATCH):
            adopted = len(carried)
            self._continue_floor = adopted + max(adopted // 2, CONTINUE_FLOOR_EVENTS)
        for record in carried:  # carried over: adopt, do not relaunch
            self._live[record.view.id] = record
            if record.kill_held:
                self._held_kills[record.view.id] = None
            adopt = record.view.state is TaskState.STARTED
            self._runs[record.view.id] = asyncio.create_task(self._run_task(record, adopt))
        try:
            while not self._killed:
                self._reconcile()
                await self._wait_for_change()
                self._dirty = False
                if self._ready_to_continue():
                    await self._stop_launching()
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    self._mailbox.close()
                    await flusher
                    workflow.continue_as_new(self._carry_over())
        except asyncio.CancelledError:
            if not workflow.patched(CANCEL_KILLS_PATCH):
                raise
            # A workflow cancel is a kill: stop every task before the run ends.
            self._killed = True
            await self._stop_all(flusher)
            raise
        await self._stop_all(flusher)
        self._set_state(JobState.KILLED, "killed by request")
        return end_job(self._describe())

    async def _stop_all(self, flusher: asyncio.Task[None]) -> None:
        """Stop every task (their containers are gone when this returns) and the mailbox."""
        assert self._mailbox is not None
        self._set_state(JobState.KILL_INITIATED, "kill requested")
        self._set_alarm(None)
        for run in self._runs.values():
            run.cancel()
        await asyncio.gather(*self._runs.values(), return_exceptions=True)
        self._mailbox.close()
        await flusher

    async def _wait_for_change(self) -> None:
        """Sleep until the reconcile loop has something to look at.

        Signal and update handlers and the task coroutines (activity results,
        placements) set ``_dirty``; the deadline :meth:`_reconcile` found
        (:meth:`_wake_by`) is the only timer. A run of the previous release
        replays, and goes on, as it was recorded: it also woke every
        RECHECK_EVERY.
        """

        def woken() -> bool:
            return self._dirty or self._killed or self._ready_to_continue()

        if self._wakes_on_change:
            self._set_alarm(self._wake_at)
            await workflow.wait_condition(woken)
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(woken, timeout=self._recheck_in())

    def _recheck_in(self) -> timedelta:
        """The previous release's wake-up: the end of a backoff, or RECHECK_EVERY."""
        if self._next_start_at is not None and self._next_start_at > workflow.now():
            return min(RECHECK_EVERY, self._next_start_at - workflow.now())
        return RECHECK_EVERY

    def _wake_by(self, at: datetime, why: str) -> None:
        """Have the loop reconcile again by ``at``, when a decision of the clock falls due."""
        if self._wake_at is None or at < self._wake_at[0]:
            self._wake_at = (at, why)

    def _set_alarm(self, wake: tuple[datetime, str] | None) -> None:
        """Keep one timer, for ``wake`` (None: none).

        The timer outlives loop iterations whose deadline stays the same, so
        a change that does not move it costs no timer events.
        """
        if wake == self._alarm_at:
            return
        if self._alarm is not None and not self._alarm.done():
            self._alarm.cancel()
        self._alarm_at = wake
        self._alarm = None if wake is None else asyncio.create_task(self._ring_at(*wake))

    async def _ring_at(self, at: datetime, why: str) -> None:
        await workflow.sleep(max(at - workflow.now(), timedelta(0)), summary=why)
        self._changed()

    def _should_continue(self) -> bool:
        assert self._input is not None
        info = workflow.info()
        length = info.get_current_history_length()
        if length <= self._continue_floor:
            return False
        return info.is_continue_as_new_suggested() or length > self._input.history_limit

    def _ready_to_continue(self) -> bool:
        if not self._should_continue():
            return False
        if not self._continues_always:
            return not self._launching() and not self._held_kills
        # Held kills travel with their tasks; launches in flight are waited for
        # (they land in seconds), but never past the hard limit.
        assert self._input is not None
        hard_limit = self._input.history_limit * HARD_HISTORY_FACTOR
        return not self._launching() or workflow.info().get_current_history_length() > hard_limit

    def _launching(self) -> list[ServiceTaskRecord]:
        """Tasks between placement and Started: those cannot be handed over."""
        return [
            t
            for t in self._live.values()
            if not (
                t.view.state in (TaskState.STARTED, TaskState.ACCEPTED)
                and (t.view.state is TaskState.STARTED or not t.view.attempts)
            )
        ]

    async def _stop_launching(self) -> None:
        """Before continuing as new past the hard limit: stop the launches in flight.

        Their launch cancellations end once their containers are gone, and
        the next run starts their replacements.
        """
        launching = self._launching()
        if not launching:
            return
        for record in launching:
            record.view.message = "stopped to hand over to a fresh history"
            self._kill(record, FinishReason.KILLED)
        await workflow.wait_condition(lambda: all(t.view.id not in self._runs for t in launching))

    def _carry_over(self) -> ServiceJobInput:
        assert self._input is not None
        started = [t for t in self._live.values() if t.view.state is TaskState.STARTED]
        for record in started:
            record.kill_held = record.view.id in self._held_kills
        if workflow.patched(COMPACT_CARRY_PATCH):
            finished = self._input.finished[-FINISHED_TASKS_KEPT:]
            return self._input.model_copy(
                update={
                    "tasks": [],
                    "finished": [t.bounded() for t in finished],
                    "carried": CarriedService.of(started, workflow.now()),
                }
            )
        return self._input.model_copy(
            update={
                "tasks": started,
                "finished": self._input.finished[-FINISHED_TASKS_KEPT:],
            }
        )

    # --- reconcile --------------------------------------------------------------

    def _reconcile(self) -> None:
        assert self._input is not None
        now = workflow.now()
        self._wake_at = None
        desired = self._capacity.desired
        update = self._spec.update
        live = list(self._live.values())
        moving = [t for t in live if t.moving]  # on a draining agent: replaced, then stopped
        replaced_first = self._replaced_first()  # held kills under a budget of 0: likewise
        staying = [t for t in live if not t.moving and t.view.id not in replaced_first]

        def by_revision(revision: int) -> tuple[list[ServiceTaskRecord], list[ServiceTaskRecord]]:
            """(current, old): the staying tasks on ``revision``, and the rest."""
            current = [t for t in staying if t.view.revision == revision]
            return current, [t for t in staying if t.view.revision != revision]

        current, old = by_revision(self._input.revision)
        self._waiting = []
        if old:
            self._check_rollback(current)  # may make the previous revision current again
            current, old = by_revision(self._input.revision)
        revision = self._input.revision

        # 1. Start tasks of the current revision (with surge while old ones run);
        # a canary stops at its size, and old-revision tasks that die meanwhile
        # are replaced on the old revision.
        canary = self._input.canary
        target = desired if canary is None else min(canary, desired)
        keep_old = desired - target
        surge = update.max_surge if old else 0
        if old and self._allowed_unavailable() == 0:
            surge = max(surge, 1)  # no old task may go before a new one is healthy
        room = desired + surge - len(staying)
        to_start = max(0, min(target - len(current), room))
        old_to_start = 0
        if canary is not None and self._input.previous is not None:
            old_to_start = max(0, min(keep_old - len(old), room - to_start))
        starting = to_start + old_to_start
        if starting and self._should_continue():
            # Launches in flight cannot be handed to the next run: let them land
            # first, so the history is continued as new even under constant churn.
            self._waiting.append("handing over to a fresh history: starts resume shortly")
        elif starting and self._next_start_at and now < self._next_start_at:
            self._wake_by(self._next_start_at, "crash-loop backoff ends")
            wait = (self._next_start_at - now).total_seconds()
            # Shown until the next start, however long: say when, not only how long.
            self._waiting.append(
                f"crash-loop backoff: next start in {wait:.0f}s"
                f" (at {self._next_start_at:%H:%M:%S} UTC)"
            )
        else:
            for _ in range(to_start):
                self._start_task(revision)
            for _ in range(old_to_start):
                self._start_task(self._input.previous_revision)

        # 2. Retire old-revision tasks as the update's budget allows (a canary
        # keeps the rest of them).
        if old:
            floor = desired - update.max_unavailable
            leaving = [t for t in old if t.view.id not in self._kill_reasons]
            leaving.sort(key=lambda t: (bool(t.view.healthy), t.view.index))
            for victim in leaving[: max(0, len(leaving) - keep_old)]:
                if victim.view.healthy and len(self._healthy()) - 1 < floor:
                    self._waiting.append(
                        f"update: {victim.view.id} stays until new tasks are healthy"
                    )
                    break
                self._disrupt(victim, FinishReason.KILLED, "replaced by rolling update")
        elif (
            canary is None
            and self._update_started_at is not None
            and len(self._healthy()) >= desired
        ):
            self._input.update = f"revision {revision} rolled out"
            self._input.rollout = RolloutPhase.ROLLED_OUT
            self._update_started_at = None
        if canary is not None:
            healthy_new = sum(1 for t in current if t.view.healthy)
            self._input.update = (
                f"canary: revision {revision} healthy on {healthy_new} of {target} task(s);"
                " promote or roll back"
            )

        # 3. Move tasks off draining agents: each goes once the job has
        # ``desired`` healthy tasks without it, and the budget allows.
        for victim in moving:
            if victim.view.id in self._kill_reasons:
                continue
            if victim.view.healthy and len(self._healthy()) - 1 < desired:
                self._waiting.append(
                    f"move: {victim.view.id} stays until its replacement is healthy"
                )
                continue
            self._disrupt(
                victim, FinishReason.KILLED, f"moved off draining agent {victim.view.agent}"
            )

        # 4. Remove surplus tasks on scale-down: unhealthy first, then newest.
        surplus = len(current) - desired if not old else 0
        victims = sorted(current, key=lambda t: (bool(t.view.healthy), -t.view.index))
        for victim in victims[: max(surplus, 0)]:
            if victim.view.id in self._kill_reasons:
                continue
            self._disrupt(victim, FinishReason.SCALED_DOWN, "scaled down", voluntary=True)

        # 5. Kill requests held back by the disruption budget.
        for task_id in list(self._held_kills):
            record = self._live.get(task_id)
            if record is None:
                self._held_kills.pop(task_id, None)
            elif self._budget_allows(record):
                self._held_kills.pop(task_id, None)
                self._kill(record, FinishReason.KILLED)
            elif task_id in replaced_first:
                self._waiting.append(
                    f"kill of {task_id} waits for its replacement to be healthy"
                    " (disruption budget 0)"
                )
            else:
                self._waiting.append(f"kill of {task_id} waits for the disruption budget")

        self._refresh_state()

    def _allowed_unavailable(self) -> int:
        """How many tasks voluntary disruptions may take down now (the disruption budget)."""
        desired = self._capacity.desired
        allowed = self._spec.disruption_budget.allowed(desired)
        if allowed == 0 and desired and not workflow.patched(ZERO_BUDGET_PATCH):
            return 1  # a history of the previous release, which raised a budget of 0 to 1
        return allowed

    def _replaced_first(self) -> set[str]:
        """Held kills whose task gets a replacement before it stops: all, under a budget of 0.

        With a budget of 0 a held kill could only wait forever for a healthy
        task more than desired; starting a replacement gives it one.
        """
        if self._held_kills and self._allowed_unavailable() == 0:
            return set(self._held_kills)
        return set()

    def _budget_allows(self, victim: ServiceTaskRecord) -> bool:
        """Whether taking ``victim`` down keeps unavailability within the budget."""
        desired = self._capacity.desired
        healthy = len(self._healthy()) - (1 if victim.view.healthy else 0)
        return desired - healthy <= self._allowed_unavailable() or not victim.view.healthy

    def _disrupt(
        self, victim: ServiceTaskRecord, reason: FinishReason, message: str, voluntary: bool = True
    ) -> None:
        if victim.view.id in self._kill_reasons:
            return
        if voluntary and not self._budget_allows(victim):
            self._waiting.append(f"{message}: {victim.view.id} waits for the disruption budget")
            return
        victim.view.message = message
        self._kill(victim, reason)

    def _kill(self, record: ServiceTaskRecord, reason: FinishReason) -> None:
        task_id = record.view.id
        run = self._runs.get(task_id)
        if run is None or run.done() or task_id in self._kill_reasons:
            return
        self._kill_reasons[task_id] = reason
        record.view.state = TaskState.KILL_INITIATED
        record.view.healthy = False  # being stopped: no longer serving
        run.cancel()

    def _check_rollback(self, current: list[ServiceTaskRecord]) -> None:
        assert self._input is not None
        if self._input.previous is None or self._update_started_at is None:
            return
        deadline = self._spec.update.healthy_deadline
        failed = sum(
            1
            for t in self._input.finished
            if t.revision == self._input.revision
            and t.reason is not FinishReason.KILLED
            and t.reason is not FinishReason.SCALED_DOWN
        )
        # When each new task that is not healthy yet was placed.
        unhealthy_since = [
            launched_at
            for t in current
            if not t.view.healthy
            and t.view.attempts
            and (launched_at := t.view.attempts[0].launched_at) is not None
        ]
        late = [since for since in unhealthy_since if workflow.now() - since > deadline]
        if failed < UPDATE_FAILURES_BEFORE_ROLLBACK and not late:
            if unhealthy_since:
                self._wake_by(min(unhealthy_since) + deadline + TICK, "update health deadline")
            return
        self._roll_back(
            f"{failed} new task(s) failed" if failed else f"not healthy within {deadline}"
        )

    def _roll_back(self, why: str) -> None:
        """Make the previous revision current again; the reconcile loop replaces the rest."""
        assert self._input is not None and self._input.previous is not None
        bad = self._input.revision
        self._input.job, self._input.previous = self._input.previous, None
        self._input.revision = self._input.previous_revision or bad - 1
        self._input.update = f"revision {bad} rolled back to {self._input.revision}: {why}"
        self._input.rollout = RolloutPhase.ROLLED_BACK
        self._input.canary = None
        self._update_started_at = None
        self._input.crash_failures = 0
        self._next_start_at = workflow.now()
        self._changed()

    def _start_task(self, revision: int | None) -> None:
        assert self._input is not None
        index = self._input.next_index
        self._input.next_index += 1
        view = TaskView(id=f"{self._job_id}-{index}", index=index, revision=revision, healthy=False)
        record = ServiceTaskRecord(view=view)
        self._live[view.id] = record
        self._runs[view.id] = asyncio.create_task(self._run_task(record, adopt=False))

    # --- one task ---------------------------------------------------------------

    async def _run_task(self, record: ServiceTaskRecord, adopt: bool) -> None:
        assert self._mailbox is not None
        view = record.view
        spec = self._spec_of(view.revision)
        placed = adopt
        try:
            if not adopt:
                placement = await self._mailbox.reserve(
                    PlacementItem.for_task(view.id, self._job_id, spec)
                )
                if isinstance(placement, Unplaced):
                    self._finish_task(
                        record, Outcome(FinishReason.INVALID_REQUEST, message=placement.reason)
                    )
                    return
                placed = True
                record.task_queue, record.ports = placement.task_queue, placement.ports
                view.ports = dict(placement.ports)
                view.agent, view.attempt = placement.agent_id, 1
                view.attempts = [
                    AttemptView(attempt=1, agent=placement.agent_id, launched_at=workflow.now())
                ]
                view.state = view.attempts[0].state = TaskState.START_INITIATED
                if self._wakes_on_change:
                    self._changed()  # during an update its health deadline runs from now
                launched = await launch(
                    LaunchInput.for_task(self._job_id, view, 1, spec, record.ports),
                    placement.task_queue,
                )
                if isinstance(launched, Outcome):
                    self._finish_task(record, self._as_killed(record, launched))
                    return
                record.started_at = launched.started_at
                if view.id in self._kill_reasons and workflow.patched(LATE_LAUNCH_PATCH):
                    # Killed while launching, and the launch won the race: its
                    # container runs. Stop it as a kill stops a Started task.
                    await self._stop_late_launch(record, spec)
                    raise asyncio.CancelledError
                view.state = view.attempts[0].state = TaskState.STARTED
                view.attempts[0].started_at = launched.started_at
                view.healthy = spec.health_check is None  # no check: running is healthy
                self._changed()
            outcome = await self._supervise(record, spec)
            self._finish_task(record, self._as_killed(record, outcome))
        except asyncio.CancelledError:
            reason = self._kill_reasons.get(view.id, FinishReason.KILLED)
            self._finish_task(record, Outcome(reason, message=view.message or "killed by request"))
        finally:
            if placed:
                self._mailbox.release(view.id)

    def _as_killed(self, record: ServiceTaskRecord, outcome: Outcome) -> Outcome:
        """The outcome of a task that was killed: the kill's reason and message.

        The kill reaches the attempt as its activity's outcome (cancelled, or
        stopped after it) and says why better than the activity can.
        """
        reason = self._kill_reasons.get(record.view.id)
        if reason is None:
            return outcome
        return Outcome(reason, message=record.view.message or "killed by request")

    async def _supervise(self, record: ServiceTaskRecord, spec: ServiceJob) -> Outcome:
        """Watch the task's (only) attempt on its agent until it ends."""
        assert record.task_queue is not None and record.started_at is not None
        return await supervise(
            SuperviseInput(
                task_id=record.view.id,
                attempt=1,
                started_at=record.started_at,
                health_check=spec.health_check,
                ports=record.ports,
                workflow_id=self._job_id,
            ),
            record.task_queue,
        )

    async def _stop_late_launch(self, record: ServiceTaskRecord, spec: ServiceJob) -> None:
        """Stop the container of a task killed while its launch was completing.

        Only runs of the previous release replay this: since
        ``stop-after-unheard-kill``, :func:`~titus_flow.workflows.attempts.launch`
        stops such a container itself and reports the task killed. That release
        scheduled a supervise and cancelled it a tick later (which the server
        withdraws unsent if no agent has picked it up by then).
        """
        supervising = asyncio.create_task(self._supervise(record, spec))
        try:
            await workflow.sleep(TICK, summary=f"stop {record.view.id}: launched after its kill")
        finally:
            supervising.cancel()
            await wait_out(supervising)  # a second kill meanwhile changes nothing

    def _finish_task(self, record: ServiceTaskRecord, outcome: Outcome) -> None:
        assert self._input is not None
        view = record.view
        view.state, view.reason, view.healthy = TaskState.FINISHED, outcome.reason, False
        view.message = outcome.message
        if view.attempts:
            attempt = view.attempts[0]
            attempt.state, attempt.reason = TaskState.FINISHED, outcome.reason
            attempt.exit_code, attempt.message = outcome.exit_code, outcome.message
            attempt.finished_at = workflow.now()
        if outcome.exit is not None and outcome.reason is not FinishReason.NORMAL:
            view.log_tail = outcome.exit.log_tail
        self._live.pop(view.id, None)
        self._runs.pop(view.id, None)
        self._kill_reasons.pop(view.id, None)
        self._input.finished = [*self._input.finished[-(FINISHED_TASKS_KEPT - 1) :], view]
        if self._crashed(record, outcome) and not self._killed:
            self._input.crash_failures += 1
            delay = crash_backoff(self._input.crash_failures)
            self._next_start_at = workflow.now() + delay
            self._last_failure = f"task {view.id} {outcome.reason.value}: {outcome.message}"
        self._changed()

    def _crashed(self, record: ServiceTaskRecord, outcome: Outcome) -> bool:
        """Whether a task's end counts toward a crash loop.

        Only tasks that never served do: one that was healthy and died later
        (a killed container, a lost agent) is replaced at once, so one event
        that takes several tasks down does not slow the recovery.
        """
        if outcome.reason in (FinishReason.KILLED, FinishReason.SCALED_DOWN):
            return False
        if self._spec.health_check is None:
            started = record.started_at
            return started is None or workflow.now() - started < MIN_HEALTHY_RUN
        # The agent's word settles it even when its health signal and the exit
        # reach this workflow in one workflow task, in either order.
        return not (
            record.was_healthy or (outcome.exit is not None and outcome.exit.became_healthy)
        )

    # --- signals, updates, queries ---------------------------------------------

    @workflow.signal(name="placement_update")
    def placement_update(self, update: PlacementUpdate) -> None:
        """The scheduler's answer to this job's capacity requests."""
        assert self._mailbox is not None
        self._mailbox.on_update(update)
        for task_id in update.evict:  # its agent is draining
            record = self._live.get(task_id)
            if record is not None and not record.moving:
                record.moving = True
                self._changed()

    @workflow.signal(name="task_health")
    def task_health(self, health: TaskHealth) -> None:
        """A task's health check changed state (sent by its agent)."""
        assert self._input is not None
        record = self._live.get(health.task_id)
        if record is None or record.view.state is not TaskState.STARTED:
            return
        record.view.healthy = health.healthy
        record.view.message = health.message
        record.was_healthy = record.was_healthy or health.healthy
        if health.healthy:
            self._input.crash_failures = 0  # a healthy task ends a crash loop
            self._last_failure = ""
        self._changed()

    @workflow.signal(name="kill")
    def kill(self) -> None:
        """Kill the job: stop every task (KillInitiated -> Finished/killed)."""
        self._killed = True
        self._set_state(JobState.KILL_INITIATED, "kill requested")

    @workflow.update(name="scale")
    def scale(self, request: ScaleRequest) -> Capacity:
        """Change desired/min/max; surplus tasks go as the disruption budget allows."""
        assert self._input is not None
        self._input.capacity = self._scaled(request)
        self._changed()
        return self._input.capacity

    @scale.validator
    def _validate_scale(self, request: ScaleRequest) -> None:
        self._scaled(request)

    def _scaled(self, request: ScaleRequest) -> Capacity:
        current = self._capacity
        values = {
            "min": current.min if request.min is None else request.min,
            "desired": current.desired if request.desired is None else request.desired,
            "max": current.max if request.max is None else request.max,
        }
        try:
            return Capacity(**values)
        except ValueError as err:
            raise _invalid(
                f"invalid scale request: need min <= desired <= max, got min={values['min']},"
                f" desired={values['desired']}, max={values['max']}"
            ) from err

    @workflow.update(name="update_job")
    def update_job(self, job: ServiceJob) -> int:
        """Roll out a new revision of the job (container, resources, checks)."""
        return self._begin_rollout(job, canary=None)

    @update_job.validator
    def _validate_update(self, job: ServiceJob) -> None:
        self._check_same_job(job)

    @workflow.update(name="canary")
    def canary(self, request: CanaryRequest) -> int:
        """Move ``request.tasks`` tasks to a new revision and hold there.

        The canary ends with :meth:`promote` (roll out to every task) or
        :meth:`rollback`; new tasks that fail or stay unhealthy past the update's
        ``healthy_deadline`` roll it back on their own, as in a rolling update.
        """
        return self._begin_rollout(request.job, canary=request.tasks)

    @canary.validator
    def _validate_canary(self, request: CanaryRequest) -> None:
        self._check_same_job(request.job)
        if request.tasks > self._capacity.desired:
            raise _invalid(
                f"a canary of {request.tasks} tasks is more than the job's desired"
                f" {self._capacity.desired}; use a plain update to replace every task"
            )

    @workflow.update(name="promote")
    def promote(self) -> int:
        """End a canary by rolling its revision out to every task."""
        assert self._input is not None
        self._input.canary = None
        self._input.rollout = RolloutPhase.ROLLING
        self._input.update = f"promoting revision {self._input.revision} to every task"
        self._update_started_at = workflow.now()  # the health deadline restarts
        self._changed()
        return self._input.revision

    @promote.validator
    def _validate_promote(self) -> None:
        assert self._input is not None
        if self._input.canary is None:
            raise _invalid("no canary to promote: start one with `titus-flow job update --canary`")

    @workflow.update(name="rollback")
    def rollback(self, reason: str) -> int:
        """Return to the previous revision (ends a canary or a rolling update)."""
        assert self._input is not None
        self._roll_back(reason or "by request")
        return self._input.revision

    @rollback.validator
    def _validate_rollback(self, reason: str) -> None:
        assert self._input is not None
        if self._input.previous is None:
            raise _invalid("nothing to roll back to: the job has no update in progress")

    def _begin_rollout(self, job: ServiceJob, canary: int | None) -> int:
        assert self._input is not None
        if (
            job == self._input.job
            and canary == self._input.canary
            and self._input.previous is not None
            and workflow.patched(SAME_REVISION_PATCH)
        ):
            return self._input.revision  # this very rollout is under way or done
        self._input.previous, self._input.previous_revision = self._input.job, self._input.revision
        self._input.job = job
        self._input.latest_revision = max(self._input.latest_revision, self._input.revision) + 1
        self._input.revision = self._input.latest_revision
        self._input.canary = canary
        if canary is None:
            self._input.rollout = RolloutPhase.ROLLING
            self._input.update = f"rolling out revision {self._input.revision}"
        else:
            self._input.rollout = RolloutPhase.CANARY
            self._input.update = (
                f"canary: moving {canary} task(s) to revision {self._input.revision}"
            )
        self._update_started_at = workflow.now()
        self._changed()
        return self._input.revision

    def _check_same_job(self, job: ServiceJob) -> None:
        if job.name != self._spec.name:
            raise _invalid(
                f"job name {job.name!r} does not match {self._spec.name!r};"
                " an update keeps the name"
            )

    @workflow.update(name="kill_task")
    def kill_task(self, request: KillTaskRequest) -> str:
        """Kill one task: replaced, or with ``shrink`` desired drops by one."""
        assert self._input is not None
        record = self._live[request.task_id]
        # A retried or repeated shrink of a task already being killed is one shrink.
        again = request.task_id in self._kill_reasons or request.task_id in self._held_kills
        if request.shrink and not (again and workflow.patched(SHRINK_ONCE_PATCH)):
            capacity = self._capacity
            self._input.capacity = capacity.model_copy(update={"desired": capacity.desired - 1})
        if request.force or self._budget_allows(record):
            record.view.message = "killed by request"
            self._kill(record, FinishReason.KILLED)
            self._changed()
            return "killed"
        self._held_kills[request.task_id] = None
        self._changed()
        if self._allowed_unavailable() == 0:
            return "waiting for the disruption budget (0): a replacement starts first"
        return "waiting for the disruption budget"

    @kill_task.validator
    def _validate_kill_task(self, request: KillTaskRequest) -> None:
        if request.task_id not in self._live:
            raise _invalid(f"job has no running task {request.task_id!r}")
        if request.shrink and self._capacity.desired - 1 < self._capacity.min:
            raise _invalid(
                f"--shrink would take desired below min ({self._capacity.min}); lower min first"
            )

    @workflow.query(name="describe")
    def describe(self) -> JobView:
        """The job, its live tasks and the most recent finished ones.

        Bounded like a batch job's: a service whose rows pass the view's byte
        budget shows its counts by state and the first rows (failed first);
        the ``tasks`` query pages through the rest.
        """
        view = self._describe()
        bounded = view.bounded()
        return view if bounded.total_tasks is None else bounded

    @workflow.query(name="tasks")
    def tasks(self, query: TaskQuery) -> TaskPage:
        """One page of the job's tasks (live and latest finished): ``query``'s, failed first."""
        return page_tasks(self._task_views(), query)

    # --- views ------------------------------------------------------------------

    def _task_views(self) -> list[TaskView]:
        """The latest finished tasks, then the live ones (with why they wait for capacity)."""
        assert self._input is not None and self._mailbox is not None
        for record in self._live.values():
            record.view.pending_reason = self._mailbox.pending_reasons.get(record.view.id)
        return [*self._input.finished, *(t.view for t in self._live.values())]

    def _describe(self) -> JobView:
        assert self._input is not None
        capacity = self._capacity
        live_by_revision: dict[int, int] = {}
        healthy_by_revision: dict[int, int] = {}
        for record in self._live.values():
            revision = record.view.revision or 0
            live_by_revision[revision] = live_by_revision.get(revision, 0) + 1
            if record.view.healthy:
                healthy_by_revision[revision] = healthy_by_revision.get(revision, 0) + 1
        return JobView(
            id=self._job_id,
            name=self._spec.name,
            type="service",
            owner=self._spec.owner,
            state=self._state,
            message=self._message,
            submitted_at=self._input.submitted_at,
            tasks=self._task_views(),
            service=ServiceStatus(
                desired=capacity.desired,
                min=capacity.min,
                max=capacity.max,
                revision=self._input.revision,
                healthy=len(self._healthy()),
                update=self._input.update,
                rollout=self._input.rollout,
                canary=self._input.canary,
                waiting=self._waiting,
                live_by_revision=live_by_revision,
                healthy_by_revision=healthy_by_revision,
            ),
        )

    def _refresh_state(self) -> None:
        assert self._input is not None
        if self._killed:
            return
        healthy = len(self._healthy())
        desired = self._capacity.desired
        if healthy >= desired:
            self._set_state(JobState.RUNNING, "")
        elif self._input.crash_failures > 0:
            waiting = f"; {self._waiting[0]}" if self._waiting else ""
            self._set_state(
                JobState.DEGRADED, f"{healthy}/{desired} healthy; {self._last_failure}{waiting}"
            )
        elif self._state is not JobState.ACCEPTED:
            self._set_state(JobState.RUNNING, f"{healthy}/{desired} healthy")

    def _set_state(self, state: JobState, message: str) -> None:
        self._message = message
        if self._state is state:
            return
        self._state = state
        if workflow.info().typed_search_attributes.get(visibility.JOB_STATE) is not None:
            workflow.upsert_search_attributes([visibility.JOB_STATE.value_set(state.value)])


def _invalid(message: str) -> ApplicationError:
    """An update rejected by its validator: nothing was changed."""
    return ApplicationError(message, type="InvalidRequest", non_retryable=True)
