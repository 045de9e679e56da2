"""A service job's state and its tasks: each task one attempt, from placement to its end.

:class:`ServiceTasks` is the base of
:class:`~titus_flow.workflows.service.ServiceJobWorkflow`: what the workflow
holds (the live tasks, their runs, the rollout), how one task runs (reserve,
launch, supervise, release) and how the job is shown. It decides nothing
beyond bookkeeping: the decisions are in :mod:`titus_flow.service_plan`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow import attempt_machine, visibility
    from titus_flow.contracts import (
        CpuReporting,
        LaunchInput,
        PlacementItem,
        ServiceJobInput,
        ServiceTaskRecord,
        SuperviseInput,
        Unplaced,
    )
    from titus_flow.lifecycle import FinishReason, JobState, TaskState
    from titus_flow.service_plan.model import TICK, CrashLoop, Rollout
    from titus_flow.service_plan.requests import after_crash, crashed
    from titus_flow.spec import Capacity, ServiceJob
    from titus_flow.views import JobView, ServiceStatus, TaskView
    from titus_flow.workflows.attempts import Outcome, launch, supervise, wait_out
    from titus_flow.workflows.common import SchedulerMailbox
    from titus_flow.workflows.journal import JobJournal
    from titus_flow.workflows.service_targets import ServiceTargets

FINISHED_TASKS_KEPT = 20
# ``workflow.patched`` id of "a launch that completes after its task was killed
# is stopped": the launch activity ignores a cancel that reaches it after the
# container started, so the previous release supervised a killed task as if it
# ran, its kill lost; a handover (or a job kill) then waited for it forever.
LATE_LAUNCH_PATCH = "service-stop-late-launch"


class ServiceTasks(ServiceTargets):
    """What a service job holds, and the coroutine that runs each of its tasks."""

    _input: ServiceJobInput | None
    _job_id: str
    _live: dict[str, ServiceTaskRecord]
    _runs: dict[str, asyncio.Task[None]]
    _kill_reasons: dict[str, FinishReason]
    # Kill requests waiting for the disruption budget, in arrival order (a
    # dict, not a set: workflow code must not depend on hash order).
    _held_kills: dict[str, None]
    _waiting: list[str]
    _mailbox: SchedulerMailbox | None
    _dirty: bool
    _killed: bool
    _state: JobState
    _message: str
    _last_failure: str  # why the latest task that never served ended
    _next_start_at: datetime | None
    _update_started_at: datetime | None
    _wakes_on_change: bool  # WAKE_ON_CHANGE_PATCH: this release, or a replay of the last
    journal: JobJournal  # the job's events (the ``events`` query)

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
        self._targets_changed()

    @property
    def _rollout(self) -> Rollout:
        """The rollout as the plan reads it (carried in the input, but for its start)."""
        i = self._input
        assert i is not None
        return Rollout(
            job=i.job,
            revision=i.revision,
            latest_revision=i.latest_revision,
            previous=i.previous,
            previous_revision=i.previous_revision,
            canary=i.canary,
            phase=i.rollout,
            message=i.update,
            started_at=self._update_started_at,
        )

    @_rollout.setter
    def _rollout(self, rollout: Rollout) -> None:
        i = self._input
        assert i is not None
        interval = rollout.job.load_balancer_check_interval
        if interval != i.job.load_balancer_check_interval:
            self._follow_check_interval(interval)
        i.job, i.previous, i.previous_revision = (
            rollout.job,
            rollout.previous,
            rollout.previous_revision,
        )
        i.revision, i.latest_revision = rollout.revision, rollout.latest_revision
        i.canary, i.rollout, i.update = rollout.canary, rollout.phase, rollout.message
        self._update_started_at = rollout.started_at

    @property
    def _crash(self) -> CrashLoop:
        assert self._input is not None
        return CrashLoop(self._input.crash_failures, self._next_start_at, self._last_failure)

    @_crash.setter
    def _crash(self, crash: CrashLoop) -> None:
        assert self._input is not None
        self._input.crash_failures = crash.failures
        self._next_start_at, self._last_failure = crash.next_start_at, crash.last_failure

    # --- one task ---------------------------------------------------------------

    def _start_task(self, revision: int | None) -> None:
        assert self._input is not None
        index = self._input.next_index
        self._input.next_index += 1
        view = TaskView(id=f"{self._job_id}-{index}", index=index, revision=revision, healthy=False)
        record = ServiceTaskRecord(view=view)
        self.journal.task(view)
        self._live[view.id] = record
        self._runs[view.id] = asyncio.create_task(self._run_task(record, adopt=False))

    def _kill(self, record: ServiceTaskRecord, reason: FinishReason) -> None:
        task_id = record.view.id
        run = self._runs.get(task_id)
        if run is None or run.done() or task_id in self._kill_reasons:
            return
        self._kill_reasons[task_id] = reason
        record.view.state = TaskState.KILL_INITIATED
        record.view.healthy = False  # being stopped: no longer serving
        self.journal.task(record.view)
        self._stop_task_run(task_id, run)  # out of its load balancers first

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
                # A new task: its one attempt (a service task is replaced, not retried).
                attempt = attempt_machine.place(view, placement.agent_id, workflow.now())
                self.journal.task(view)
                attempt_machine.launching(view, attempt)
                self.journal.task(view)
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
                attempt_machine.started(view, attempt, launched.started_at)
                self.journal.task(view)
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
                cpu_report=CpuReporting.for_job(spec),
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
        self.journal.task(view, outcome.reason, outcome.message)
        if view.attempts:
            attempt_machine.ended(view.attempts[0], outcome, workflow.now(), log=outcome.log)
        if outcome.exit is not None and outcome.reason is not FinishReason.NORMAL:
            view.log_tail = outcome.exit.log_tail
        self._live.pop(view.id, None)
        self._runs.pop(view.id, None)
        self._kill_reasons.pop(view.id, None)
        self._input.finished = [*self._input.finished[-(FINISHED_TASKS_KEPT - 1) :], view]
        never_served = crashed(
            outcome.reason,
            has_health_check=self._spec.health_check is not None,
            started_at=record.started_at,
            # The agent's word settles it even when its health signal and the exit
            # reach this workflow in one workflow task, in either order.
            served=record.was_healthy or (outcome.exit is not None and outcome.exit.became_healthy),
            now=workflow.now(),
        )
        if never_served and not self._killed:
            why = f"task {view.id} {outcome.reason.value}: {outcome.message}"
            self._crash = after_crash(self._crash, why, workflow.now())
        self._changed()

    # --- how the job shows ------------------------------------------------------

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
            security=self._spec.security if self._spec.security.is_set else None,
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

    def _set_state(self, state: JobState, message: str) -> None:
        self._message = message
        if self._state is state:
            return
        self._state = state
        self.journal.job_state(state, message)
        if workflow.info().typed_search_attributes.get(visibility.JOB_STATE) is not None:
            workflow.upsert_search_attributes([visibility.JOB_STATE.value_set(state.value)])
