"""Service job autoscaling: push metrics to a job's policies.

Agents, load balancers and users send :class:`~titus_flow.contracts.metric_reports.MetricReport`
objects with :meth:`AutoscalingClient.report_metrics`; the job keeps the samples of
the metrics its policies read (see ``docs/services.md``).
"""

from __future__ import annotations

from titus_flow.client.base import not_found_as_no_job
from titus_flow.client.jobs import JobsClient
from titus_flow.contracts.metric_reports import MetricReport
from titus_flow.workflows.service import ServiceJobWorkflow


class AutoscalingClient(JobsClient):
    """Metrics and autoscaling of service jobs."""

    async def report_metrics(self, job_id: str, report: MetricReport) -> None:
        """Send ``report`` to service job ``job_id`` (its ``metrics`` signal).

        One signal, no answer: samples of metrics no policy of the job reads
        are dropped by the job. Raises JobNotFoundError when no such job runs.
        """
        handle = self.temporal.get_workflow_handle(job_id)
        with not_found_as_no_job(f"no running job {job_id!r}"):
            await handle.signal(ServiceJobWorkflow.metrics, report)
