"""Workflow-as-code: run titus-flow jobs from your own Temporal workflows.

Use these functions inside an ordinary ``@workflow.defn`` class. Each job runs
as a child workflow of the ``BatchJob`` workflow on the current task queue, so
the user workflow must run on the control task queue (``titus-flow worker
--workflows FILE`` registers it there, ``titus-flow start FILE:Workflow`` starts
it there). Every function is deterministic: child workflow ids are derived from
the parent's id, the job name and a per-run counter, so a replay or a worker
restart finds the job it already started instead of starting it again.

Example::

    from temporalio import workflow

    with workflow.unsafe.imports_passed_through():
        from titus_flow import BatchJob, Container
        from titus_flow.flow import gather_jobs, outputs, run_job


    @workflow.defn
    class Thumbnails:
        @workflow.run
        async def run(self, count: int) -> list[str]:
            listing = await run_job(_lister(count))  # its task writes ["a.jpg", ...]
            names = outputs(listing)[0]
            views = await gather_jobs([_resizer(n) for n in names], max_concurrent=4)
            return [outputs(v)[0] for v in views]
"""

from titus_flow.contracts import CanaryCheckInput
from titus_flow.flow.ids import child_job_id, safe_id
from titus_flow.flow.jobs import (
    BATCH_JOB_WORKFLOW,
    JobFailedError,
    JobHandle,
    failure_reasons,
    gather_jobs,
    outputs,
    run_job,
    start_job,
)
from titus_flow.flow.services import (
    SERVICE_JOB_WORKFLOW,
    CanaryCheck,
    CanaryResult,
    ServiceRolloutError,
    canary,
    deploy_service,
    load_balancer_targets,
    pause_autoscaling,
    put_metric,
    resume_autoscaling,
    update_service,
)
from titus_flow.flow.testing import fake_job_view, register_search_attributes

__all__ = [
    "BATCH_JOB_WORKFLOW",
    "SERVICE_JOB_WORKFLOW",
    "CanaryCheck",
    "CanaryCheckInput",
    "CanaryResult",
    "JobFailedError",
    "JobHandle",
    "ServiceRolloutError",
    "canary",
    "child_job_id",
    "deploy_service",
    "failure_reasons",
    "fake_job_view",
    "gather_jobs",
    "load_balancer_targets",
    "outputs",
    "pause_autoscaling",
    "put_metric",
    "register_search_attributes",
    "resume_autoscaling",
    "run_job",
    "safe_id",
    "start_job",
    "update_service",
]
