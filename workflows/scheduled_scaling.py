"""The workflow a scaling schedule starts: tell a service job that a scheduled action is due.

Each scheduled action of a service job has a Temporal Schedule
(:mod:`titus_flow.activities.scaling_schedules`); at every cron time it starts
this workflow, which signals the job (``scheduled_action``). The job applies
the action itself, so it is recorded with its other decisions; a job that no
longer runs makes this a no-op (its schedule is being deleted).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts.autoscaling import ScheduledScalingInput
    from titus_flow.workflows.service import ServiceJobWorkflow


@workflow.defn(name="ScheduledScaling")
class ScheduledScalingWorkflow:
    """Signals ``scheduled_action`` to the job; returns whether the job was there."""

    @workflow.run
    async def run(self, request: ScheduledScalingInput) -> bool:
        """Send the action to the job: True if sent, False if the job no longer runs."""
        job: workflow.ExternalWorkflowHandle[ServiceJobWorkflow]
        job = workflow.get_external_workflow_handle_for(ServiceJobWorkflow.run, request.job_id)
        try:
            await job.signal(ServiceJobWorkflow.scheduled_action, request.action)
        except FailureError:  # the job ended: nothing to scale
            return False
        return True
