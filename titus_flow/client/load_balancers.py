"""A service job's load balancer targets, as its workflow records them."""

from __future__ import annotations

from temporalio.client import WorkflowQueryFailedError

from titus_flow.client.base import not_found_as_no_job
from titus_flow.client.jobs import JobsClient
from titus_flow.contracts.load_balancers import LoadBalancersView
from titus_flow.errors import UserError
from titus_flow.workflows.service import ServiceJobWorkflow


class LoadBalancersClient(JobsClient):
    """The ``load_balancers`` query of service jobs."""

    async def load_balancers(self, job_id: str) -> LoadBalancersView:
        """Every target group of service job ``job_id``, each task's target and state in it.

        A job without load balancers answers no groups. Raises
        :class:`~titus_flow.client.JobNotFoundError` for an unknown job and
        :class:`~titus_flow.errors.UserError` for a job that is not a service.
        """
        handle = self.temporal.get_workflow_handle(job_id)
        with not_found_as_no_job(f"no job {job_id!r}"):
            try:
                view = await handle.query(ServiceJobWorkflow.load_balancers)
            except WorkflowQueryFailedError as err:
                if "known queries" not in str(err):
                    raise
                raise UserError(
                    f"job {job_id} has no load balancers: it is not a service job"
                    " (or was submitted before this release)"
                ) from err
        return view
