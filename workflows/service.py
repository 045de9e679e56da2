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

The decisions are pure functions in :mod:`titus_flow.service_plan`: each pass
builds a :class:`~titus_flow.service_plan.model.Snapshot` of what the job
holds, :func:`~titus_flow.service_plan.reconcile.reconcile` turns it into a
:class:`~titus_flow.service_plan.model.Plan`, and this module applies it. The
tasks and the job's state are in :mod:`~titus_flow.workflows.service_tasks`,
the signals, updates and queries in :mod:`~titus_flow.workflows.service_handlers`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts import CarriedService, ServiceJobInput, ServiceTaskRecord
    from titus_flow.lifecycle import FinishReason, JobState, RolloutPhase, TaskState
    from titus_flow.outcomes import end_job
    from titus_flow.service_plan import requests as rules
    from titus_flow.service_plan.model import EndedTask, LiveTask, Plan, Snapshot, StartTask
    from titus_flow.service_plan.reconcile import reconcile
    from titus_flow.service_plan.requests import crash_backoff
    from titus_flow.views import JobView
    from titus_flow.workflows.common import SchedulerMailbox
    from titus_flow.workflows.journal import JobJournal
    from titus_flow.workflows.service_autoscaling import ServiceAutoscaling
    from titus_flow.workflows.service_handlers import zero_budget
    from titus_flow.workflows.service_tasks import FINISHED_TASKS_KEPT

__all__ = ["ServiceJobWorkflow", "crash_backoff"]

# ``workflow.patched`` id of "the loop wakes on changes and on its own
# deadlines only": the previous release also woke every RECHECK_EVERY.
WAKE_ON_CHANGE_PATCH = "service-wakes-on-change"
# ``workflow.patched`` id of "continue as new whatever the job holds": held
# kills travel with their tasks, and past rules.HARD_HISTORY_FACTOR times the history
# limit tasks still launching are stopped (the next run replaces them). The
# previous release waited for no held kill and no launch in flight, which a
# degraded service with a held kill never reached.
CONTINUE_ALWAYS_PATCH = "service-continues-whatever-it-holds"
# ``workflow.patched`` id of "a workflow cancel stops every task, as a kill
# does": the previous release ended the run and left its tasks running.
CANCEL_KILLS_PATCH = "service-cancel-kills-tasks"
# ``workflow.patched`` id of "continue as new with compact task rows"
# (:class:`~titus_flow.contracts.CarriedService`) and bounded finished rows: the
# previous release carried whole records, ~620 bytes a task, which passed
# Temporal's 2 MB payload limit near 3,300 live tasks.
COMPACT_CARRY_PATCH = "service-compact-carry"
# ``workflow.patched`` id of "a run that adopted N tasks continues only past
# N + max(N / 2, rules.CONTINUE_FLOOR_EVENTS) history events": it schedules N
# supervise activities before anything else, so with N past the limit (or
# Temporal's suggestion, ~4,000 events) the previous release continued as new
# again at once, run after run.
CONTINUE_FLOOR_PATCH = "service-continue-floor"


@workflow.defn(name="ServiceJob")
class ServiceJobWorkflow(ServiceAutoscaling):
    """Keeps a :class:`~titus_flow.spec.ServiceJob` at its desired healthy size."""

    @workflow.init
    def __init__(self, request: ServiceJobInput) -> None:
        # Initialised from the input here, not in run(): an update or signal that
        # arrives with the first workflow task is handled before run() starts.
        self._input = request
        self._job_id = workflow.info().workflow_id
        self._live = {}
        self._runs = {}
        self._kill_reasons = {}
        self._held_kills = {}
        self._waiting = []
        self._mailbox = SchedulerMailbox(self._job_id)
        self._dirty = True
        self._killed = False
        self._state = JobState.ACCEPTED
        self._message = ""
        self._last_failure = ""
        self._next_start_at = None
        self._update_started_at = None
        self._wakes_on_change = False  # set by run(): this release, or a replay of the last
        self._continues_always = False  # likewise, CONTINUE_ALWAYS_PATCH
        self._continue_floor = 0  # history events before which this run does not continue
        self._wake_at: tuple[datetime, str] | None = None  # next clock-driven decision, and why
        self._alarm: asyncio.Task[None] | None = None
        self._alarm_at: tuple[datetime, str] | None = None
        self.journal = JobJournal(self._job_id, "service", request.events)
        self._init_autoscaling(request)
        if request.events is None and workflow.info().continued_run_id is None:  # a new job
            self.journal.accepted([], f"desired {self._capacity.desired} task(s)")

    # --- the run --------------------------------------------------------------

    @workflow.run
    async def run(self, request: ServiceJobInput) -> JobView:
        """Hold the job at its desired size until it is killed.

        A service job only ends Killed: its workflow then fails with type
        ``JobKilled`` and the final view (:func:`~titus_flow.outcomes.end_job`).
        """
        self._wakes_on_change = workflow.patched(WAKE_ON_CHANGE_PATCH)
        self._continues_always = workflow.patched(CONTINUE_ALWAYS_PATCH)
        self._start_autoscaler()
        self._next_start_at = workflow.now()
        if rules.update_resumes(request.rollout):
            self._update_started_at = workflow.now()
        assert self._mailbox is not None
        flusher = asyncio.create_task(self._mailbox.run())
        carried = request.tasks
        if request.carried is not None:
            carried = request.carried.records(self._job_id)
            request.carried = None  # the next carry is made from the live tasks
        if workflow.patched(CONTINUE_FLOOR_PATCH):
            self._continue_floor = rules.continue_floor(len(carried))
        for record in carried:  # carried over: adopt, do not relaunch
            self._live[record.view.id] = record
            if record.kill_held:
                self._held_kills[record.view.id] = None
            adopt = record.view.state is TaskState.STARTED
            self._runs[record.view.id] = asyncio.create_task(self._run_task(record, adopt))
        self._targets_changed()  # a job with load balancers starts their loop
        try:
            while not self._killed:
                self._apply(reconcile(self._snapshot()))
                await self._wait_for_change()
                self._dirty = False
                if self._ready_to_continue():
                    await self._targets_settled()
                    await self._stop_launching()
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    self._mailbox.close()
                    await flusher
                    events = {"events": self.journal.tail()}
                    workflow.continue_as_new(self._carry_over().model_copy(update=events))
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
        await self._stop_autoscaler()
        await self._drain_all_targets()
        for run in self._runs.values():
            run.cancel()
        await asyncio.gather(*self._runs.values(), return_exceptions=True)
        self._mailbox.close()
        await flusher

    # --- one reconcile pass: snapshot, plan, apply ------------------------------

    def _snapshot(self) -> Snapshot:
        """What the plan reads: the live tasks, the rollout, the budget, the clock."""
        assert self._input is not None
        return Snapshot(
            now=workflow.now(),
            rollout=self._rollout,
            tasks=tuple(
                LiveTask(
                    id=t.view.id,
                    number=t.view.index,
                    revision=t.view.revision,
                    healthy=bool(t.view.healthy),
                    launched_at=t.view.attempts[0].launched_at if t.view.attempts else None,
                    agent=t.view.agent,
                    moving=t.moving,
                    stopping=t.view.id in self._kill_reasons,
                )
                for t in self._live.values()
            ),
            scaled=self._input.capacity,
            crash=self._crash,
            held_kills=tuple(self._held_kills),
            ended=tuple(EndedTask(t.revision, t.reason) for t in self._input.finished),
            continue_due=self._should_continue(),
            state=self._state,
            zero_budget=zero_budget,
        )

    def _apply(self, plan: Plan) -> None:
        """Act on a plan: start and kill tasks in its order, keep what it decided."""
        self._rollout, self._crash = plan.rollout, plan.crash
        if plan.actions:
            self.journal.scaling(f"start {len(plan.starts)} task(s), stop {len(plan.kills)}")
        self._count_update(plan)
        for action in plan.actions:
            if isinstance(action, StartTask):
                self._start_task(action.revision)
                continue
            record = self._live[action.task_id]
            if action.message is not None:
                record.view.message = action.message
            self._kill(record, action.reason)
        self._held_kills = dict.fromkeys(plan.held_kills)
        self._waiting = list(plan.waiting)
        self._wake_at = plan.wake
        if plan.rolled_back:
            self._changed()
        if plan.state is not None:
            self._set_state(*plan.state)

    def _count_update(self, plan: Plan) -> None:
        """Metrics of a rolling update (or canary): its tasks started and retired, a rollback."""
        rollout = plan.rollout
        if plan.rolled_back:
            self.journal.rolling_update("rolled_back")
        if rollout.phase not in (RolloutPhase.ROLLING, RolloutPhase.CANARY):
            return
        new = sum(1 for a in plan.starts if a.revision == rollout.revision)
        old = sum(
            1
            for a in plan.kills
            if a.task_id in self._live and self._live[a.task_id].view.revision != rollout.revision
        )
        self.journal.rolling_update("started", new)
        self.journal.rolling_update("retired", old)

    # --- waiting for the next change --------------------------------------------

    async def _wait_for_change(self) -> None:
        """Sleep until the reconcile loop has something to look at.

        Signal and update handlers and the task coroutines (activity results,
        placements) set ``_dirty``; the deadline the plan found (``wake``) is
        the only timer. A run of the previous release replays, and goes on, as
        it was recorded: it also woke every RECHECK_EVERY.
        """

        def woken() -> bool:
            return self._dirty or self._killed or self._ready_to_continue()

        if self._wakes_on_change:
            self._set_alarm(self._wake_at)
            await workflow.wait_condition(woken)
            return
        with contextlib.suppress(TimeoutError):
            recheck = rules.recheck_in(workflow.now(), self._next_start_at)
            await workflow.wait_condition(woken, timeout=recheck)

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

    # --- handing over to a fresh history ----------------------------------------

    def _should_continue(self) -> bool:
        assert self._input is not None
        info = workflow.info()
        return rules.continue_due(
            info.get_current_history_length(),
            self._continue_floor,
            info.is_continue_as_new_suggested(),
            self._input.history_limit,
        )

    def _ready_to_continue(self) -> bool:
        assert self._input is not None
        due = self._should_continue()
        return rules.ready_to_continue(
            due=due,
            launching=bool(due and self._launching()),
            held_kills=bool(self._held_kills),
            always=self._continues_always,
            length=workflow.info().get_current_history_length(),
            limit=self._input.history_limit,
        )

    def _launching(self) -> list[ServiceTaskRecord]:
        """Tasks between placement and Started: those cannot be handed over."""
        return [
            t for t in self._live.values() if rules.launching(t.view.state, bool(t.view.attempts))
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
                    "autoscaling": self._autoscaling_carry(),
                }
            )
        return self._input.model_copy(
            update={
                "tasks": started,
                "finished": self._input.finished[-FINISHED_TASKS_KEPT:],
            }
        )
