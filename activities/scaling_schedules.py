"""The Temporal Schedules of service jobs' scheduled actions (run by the control worker).

One schedule per action, named by
:func:`~titus_flow.autoscaling.scheduled.schedule_id`, with the action's cron
(UTC); each run starts :class:`~titus_flow.workflows.scheduled_scaling.ScheduledScalingWorkflow`
on the control task queue, which signals the job. Idempotent: a retried call
creates nothing twice, updates in place and treats a schedule already gone as
deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.activities.interfaces import ScalingScheduleActivityInterface, implements
from titus_flow.autoscaling.scheduled import schedule_id
from titus_flow.contracts.autoscaling import ScalingSchedules, ScheduledScalingInput
from titus_flow.spec.autoscaling import ScheduledAction
from titus_flow.workflows.scheduled_scaling import ScheduledScalingWorkflow

# A run missed while the server was down is made up only within this window:
# hours later, the action would undo what happened since.
CATCHUP_WINDOW = timedelta(minutes=1)
# Errors a retry cannot fix (a cron the server refuses, no right to schedule).
FINAL_STATUSES = frozenset({RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.PERMISSION_DENIED})


def scaling_schedule(job_id: str, task_queue: str, action: ScheduledAction) -> Schedule:
    """The schedule of ``action`` of job ``job_id``: its cron, starting the scaling workflow."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ScheduledScalingWorkflow.run,
            ScheduledScalingInput(job_id=job_id, action=action),
            id=schedule_id(job_id, action.name),  # Temporal appends the scheduled time
            task_queue=task_queue,
            static_summary=f"scheduled action {action.name!r} of {job_id}",
        ),
        spec=ScheduleSpec(cron_expressions=[action.cron]),  # no time zone: UTC
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(note=f"scheduled action {action.name!r} of service job {job_id}"),
    )


class ScalingScheduleActivities(ScalingScheduleActivityInterface):
    """Create, update and delete the schedules of scheduled actions."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @implements(ScalingScheduleActivityInterface.sync_scaling_schedules)
    async def sync_scaling_schedules(self, request: ScalingSchedules) -> None:
        """Make the job's schedules those of ``request.actions``; delete ``request.remove``'s."""
        try:
            for action in request.actions:
                await self._put(request.job_id, request.task_queue, action)
            for name in request.remove:
                await self._delete(schedule_id(request.job_id, name))
        except RPCError as err:
            if err.status in FINAL_STATUSES:
                raise ApplicationError(
                    err.message, type="ScheduleRefused", non_retryable=True
                ) from err
            raise

    async def _put(self, job_id: str, task_queue: str, action: ScheduledAction) -> None:
        """Create the schedule of ``action``, or replace the one there (the action changed)."""
        schedule = scaling_schedule(job_id, task_queue, action)
        sid = schedule_id(job_id, action.name)
        try:
            await self.client.create_schedule(sid, schedule)
        except ScheduleAlreadyRunningError:

            def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await self.client.get_schedule_handle(sid).update(replace)

    async def _delete(self, sid: str) -> None:
        """Delete schedule ``sid``; one already gone counts as deleted."""
        try:
            await self.client.get_schedule_handle(sid).delete()
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for a worker's ``activities=``."""
        return [self.sync_scaling_schedules]
