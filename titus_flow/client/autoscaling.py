"""Service job autoscaling: push metrics to a job's policies, show and pause them.

Agents, load balancers and users send :class:`~titus_flow.contracts.metric_reports.MetricReport`
objects with :meth:`AutoscalingClient.report_metrics`; the job keeps the samples of
the metrics its policies read (see ``docs/services.md``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from temporalio.client import WorkflowQueryFailedError

from titus_flow.client.base import not_found_as_no_job
from titus_flow.client.jobs import JobsClient
from titus_flow.contracts.autoscaling import AutoscalingView
from titus_flow.contracts.metric_reports import MetricReport, MetricSample
from titus_flow.errors import UserError
from titus_flow.spec.autoscaling import BUILTIN_METRICS, CUSTOM_PREFIX, metric_name
from titus_flow.workflows.service import ServiceJobWorkflow

SERVICE_WORKFLOW = "ServiceJob"


def put_metric_name(name: str) -> str:
    """The metric ``titus-flow metrics put`` sets for ``name``: a bare name is ``custom:<name>``.

    Raises :class:`UserError` for a name no policy could read.
    """
    full = name if name in BUILTIN_METRICS or name.startswith(CUSTOM_PREFIX) else None
    try:
        return metric_name(full or f"{CUSTOM_PREFIX}{name}")
    except ValueError as err:
        raise UserError(f"bad metric name {name!r}: {err}") from err


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

    async def put_metric(self, job_id: str, name: str, value: float, source: str = "client") -> str:
        """Push one value of a custom (or built-in) metric to ``job_id``'s policies, now.

        ``name`` is ``custom:<name>``, a bare ``<name>`` (the same) or a
        built-in metric. Raises :class:`UserError` (and sends nothing) for a
        value that is not a finite number, a job that is not a service job, or
        a metric none of its policies reads. Returns the metric's full name.
        """
        metric = put_metric_name(name)
        if isinstance(value, bool) or not math.isfinite(value):
            raise UserError(f"metric value must be a finite number, got {value!r}")
        view = await self.autoscaling(job_id)
        read = sorted({policy.metric for policy in view.policies})
        if metric not in read:
            readers = ", ".join(read) or "none: the job has no autoscaling policy"
            raise UserError(
                f"no policy of job {job_id} reads {metric} (its policies read {readers})"
            )
        sample = MetricSample(metric=metric, value=float(value), at=datetime.now(UTC))
        await self.report_metrics(job_id, MetricReport(source=source, samples=[sample]))
        return metric

    async def autoscaling(self, job_id: str) -> AutoscalingView:
        """Service job ``job_id``'s policies, metric values, latest decisions and schedules."""
        handle = self.temporal.get_workflow_handle(job_id)
        with not_found_as_no_job(f"no job {job_id!r}"):
            try:
                return await handle.query(ServiceJobWorkflow.autoscaling)
            except WorkflowQueryFailedError as err:
                kind = (await handle.describe()).workflow_type
                if kind != SERVICE_WORKFLOW:
                    raise UserError(f"job {job_id} is not a service job: no autoscaling") from err
                raise UserError(
                    f"job {job_id} runs on a release without autoscaling ({err})"
                ) from err

    async def set_autoscaling_paused(self, job_id: str, paused: bool) -> bool:
        """Pause (True) or resume (False) ``job_id``'s policies and scheduled actions.

        While paused nothing changes desired; metrics are still kept. Raises
        :class:`UserError` for a job without autoscaling. Returns the new state.
        """
        await self.autoscaling(job_id)  # a clear error for a batch job or an unknown one
        return await self._update(job_id, ServiceJobWorkflow.autoscaling_control, paused)
