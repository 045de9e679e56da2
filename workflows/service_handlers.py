"""A service job's signals, updates and queries: the requests it answers.

:class:`ServiceHandlers` sits between :class:`~titus_flow.workflows.service_tasks.ServiceTasks`
(the state) and :class:`~titus_flow.workflows.service.ServiceJobWorkflow` (the
loop). Each handler asks :mod:`titus_flow.service_plan.requests` what the
request does, stores the answer and wakes the loop; the validators turn the
plan's :class:`~titus_flow.service_plan.requests.Rejected` into an
``InvalidRequest`` error, which leaves the job unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts import (
        CanaryRequest,
        KillTaskRequest,
        PlacementUpdate,
        ScaleRequest,
        TaskHealth,
    )
    from titus_flow.lifecycle import FinishReason, JobState, TaskState
    from titus_flow.service_plan import requests as rules
    from titus_flow.service_plan.reconcile import roll_back
    from titus_flow.spec import Capacity, ServiceJob
    from titus_flow.views import JobView, TaskPage, TaskQuery, page_tasks
    from titus_flow.workflows.journal import JobJournal, Journaling
    from titus_flow.workflows.requester import PlacementRequester
    from titus_flow.workflows.service_tasks import ServiceTasks

# ``workflow.patched`` id of "a disruption budget of 0 allows no voluntary
# disruption": the previous release raised it to 1.
ZERO_BUDGET_PATCH = "zero-disruption-budget"
# ``workflow.patched`` id of "``kill_task --shrink`` of a task already being
# killed lowers desired only once".
SHRINK_ONCE_PATCH = "service-shrink-once-per-task"
# ``workflow.patched`` id of "an update or canary to the revision already
# current (same spec, same canary size) is a no-op answering that revision": a
# command sent again after an error it could not see the end of.
SAME_REVISION_PATCH = "service-same-revision-no-op"


def zero_budget() -> bool:
    """:data:`ZERO_BUDGET_PATCH`, for the plan to ask where its budget rule needs it."""
    return workflow.patched(ZERO_BUDGET_PATCH)


class ServiceHandlers(ServiceTasks, PlacementRequester, Journaling[JobJournal]):
    """The signals, updates and queries of a service job."""

    def on_placement_update(self, update: PlacementUpdate) -> None:
        """The scheduler's answer to this job's capacity requests (``placement_update``)."""
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
        record = self._live.get(health.task_id)
        if record is None or record.view.state is not TaskState.STARTED:
            return
        record.view.healthy = health.healthy
        record.view.message = health.message
        record.was_healthy = record.was_healthy or health.healthy
        self.journal.health(record.view)
        if health.healthy:
            self._crash = rules.healed(self._crash)  # a healthy task ends a crash loop
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
        capacity = self._input.capacity
        self.journal.scaling(f"desired {capacity.desired} (min {capacity.min}, max {capacity.max})")
        self._changed()
        return self._input.capacity

    @scale.validator
    def _validate_scale(self, request: ScaleRequest) -> None:
        self._scaled(request)

    def _scaled(self, request: ScaleRequest) -> Capacity:
        with _refused():
            return rules.scaled(self._capacity, request.desired, request.min, request.max)

    @workflow.update(name="update_job")
    def update_job(self, job: ServiceJob) -> int:
        """Roll out a new revision of the job (container, resources, checks)."""
        return self._begin_rollout(job, canary=None)

    @update_job.validator
    def _validate_update(self, job: ServiceJob) -> None:
        with _refused():
            rules.check_same_job(self._spec, job)

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
        with _refused():
            rules.check_canary(self._spec, request.job, request.tasks, self._capacity.desired)

    @workflow.update(name="promote")
    def promote(self) -> int:
        """End a canary by rolling its revision out to every task."""
        self._rollout = rules.promote(self._rollout, workflow.now())
        self._changed()
        return self._rollout.revision

    @promote.validator
    def _validate_promote(self) -> None:
        with _refused():
            rules.check_promote(self._rollout)

    @workflow.update(name="rollback")
    def rollback(self, reason: str) -> int:
        """Return to the previous revision (ends a canary or a rolling update)."""
        why = reason or "by request"
        self._rollout, self._crash = roll_back(self._rollout, self._crash, why, workflow.now())
        self._changed()  # the reconcile loop replaces the rest
        return self._rollout.revision

    @rollback.validator
    def _validate_rollback(self, reason: str) -> None:
        with _refused():
            rules.check_rollback(self._rollout)

    def _begin_rollout(self, job: ServiceJob, canary: int | None) -> int:
        rollout = rules.begin_rollout(
            self._rollout,
            job,
            canary,
            workflow.now(),
            same_revision=lambda: workflow.patched(SAME_REVISION_PATCH),
        )
        if rollout is not None:
            self._rollout = rollout
            self._changed()
        return self._rollout.revision

    @workflow.update(name="kill_task")
    def kill_task(self, request: KillTaskRequest) -> str:
        """Kill one task: replaced, or with ``shrink`` desired drops by one."""
        assert self._input is not None
        record = self._live[request.task_id]
        decision = rules.kill_task(
            job=self._spec,
            capacity=self._capacity,
            healthy=len(self._healthy()),
            victim_healthy=bool(record.view.healthy),
            # A retried or repeated shrink of a task already being killed is one shrink.
            again=request.task_id in self._kill_reasons or request.task_id in self._held_kills,
            shrink=request.shrink,
            force=request.force,
            shrink_once=lambda: workflow.patched(SHRINK_ONCE_PATCH),
            zero_budget=zero_budget,
        )
        if decision.shrunk is not None:
            self._input.capacity = decision.shrunk
        if decision.kill_now:
            record.view.message = "killed by request"
            self._kill(record, FinishReason.KILLED)
        else:
            self._held_kills[request.task_id] = None
        self._changed()
        return decision.answer

    @kill_task.validator
    def _validate_kill_task(self, request: KillTaskRequest) -> None:
        with _refused():
            known = request.task_id in self._live
            rules.check_kill_task(known, request.task_id, request.shrink, self._capacity)

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


@contextmanager
def _refused() -> Iterator[None]:
    """Turn the plan's refusal into the update's ``InvalidRequest`` (with the same cause)."""
    try:
        yield
    except rules.Rejected as err:
        raise _invalid(str(err)) from err.__cause__


def _invalid(message: str) -> ApplicationError:
    """An update rejected by its validator: nothing was changed."""
    return ApplicationError(message, type="InvalidRequest", non_retryable=True)
