"""Metrics a service job's workflow reads itself, just before each evaluation of its policies.

:class:`ServiceMetricSources` sits between
:class:`~titus_flow.workflows.service_handlers.ServiceHandlers` and
:class:`~titus_flow.workflows.service_autoscaling.ServiceAutoscaling`. Pushers
(agents, the local proxy, ``titus-flow metrics put``) send samples as signals;
two sources are pulled instead, by activities (:data:`METRIC_SOURCES_PATCH`):

- ``requests_per_task`` of a job whose ``load_balancers`` include ALB target
  groups: ``RequestCountPerTarget`` from CloudWatch (control task queue), one
  sample weighted by the tasks serving;
- a ``custom:`` metric whose policy has a ``metric_source.prometheus``: one
  ``scrape_metric`` activity per agent running tasks of the job (on the agent's
  task queue), averaged over the tasks that answered, weighted by their number.

A read that fails adds no sample: the policy sees the other samples of its
window, or holds without any. Why the last read of a metric failed is kept
until a read succeeds, and shown by the ``autoscaling`` query (``titus-flow job
autoscaling``) and the workflow log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from titus_flow.activities.interfaces import MetricSourceActivityInterface
    from titus_flow.autoscaling.counters import Reading, counter_rates
    from titus_flow.autoscaling.histograms import histogram_quantile
    from titus_flow.contracts.metric_reports import MetricReport, MetricSample
    from titus_flow.contracts.metric_sources import (
        RequestCountInput,
        ScrapeInput,
        ScrapeTarget,
    )
    from titus_flow.lifecycle import TaskState
    from titus_flow.spec import Autoscaling, MetricSource
    from titus_flow.spec.load_balancers import is_local
    from titus_flow.workflows.service_handlers import ServiceHandlers

# ``workflow.patched`` id of "before each evaluation, read requests_per_task from
# CloudWatch (ALB target groups) and custom metrics from the tasks' Prometheus
# endpoints". Asked only of jobs with such a source.
METRIC_SOURCES_PATCH = "service-metric-sources"
REQUESTS_METRIC = "requests_per_task"
CLOUDWATCH_SOURCE = "cloudwatch"
PROMETHEUS_SOURCE = "prometheus"
# A read is worth something only for the evaluation it precedes.
_MIN_READ = timedelta(seconds=10)
_MAX_READ = timedelta(seconds=30)
_MAX_ERROR_CHARS = 300
_NO_BUCKET = ""  # the bucket of a counter that is not a histogram's
_READ_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)


class ServiceMetricSources(ServiceHandlers):
    """The metrics a service job reads itself (CloudWatch, the tasks' Prometheus endpoints)."""

    _sources_on: bool | None = None  # the patch's answer, asked once a run

    def _init_metric_sources(self) -> None:
        """No failed reads and no counter readings yet (neither is carried to a next run)."""
        self._read_errors: dict[str, str] = {}  # metric -> why its last read failed
        # metric -> (task id, bucket bound) -> its last reading
        self._counter_readings: dict[str, dict[tuple[str, str], Reading]] = {}

    def _cloudwatch_groups(self, autoscaling: Autoscaling) -> list[str]:
        """The ALB target groups whose request counts make ``requests_per_task``."""
        if REQUESTS_METRIC not in autoscaling.metrics:
            return []
        return [group for group in self._spec.load_balancers if not is_local(group)]

    async def _read_metric_sources(self, autoscaling: Autoscaling) -> list[MetricReport]:
        """The reports of this evaluation's reads (none for a job without such sources)."""
        groups = self._cloudwatch_groups(autoscaling)
        sources = autoscaling.metric_sources
        if not groups and not sources:
            return []
        if self._sources_on is None:
            self._sources_on = workflow.patched(METRIC_SOURCES_PATCH)
        if not self._sources_on:
            return []
        timeout = min(max(autoscaling.interval, _MIN_READ), _MAX_READ)
        reads: list[Awaitable[MetricReport | None]] = []
        if groups:
            reads.append(self._read_requests(groups, autoscaling, timeout))
        reads += [self._scrape(metric, source, timeout) for metric, source in sources.items()]
        reports = await asyncio.gather(*reads)
        return [report for report in reports if report is not None]

    def _serving(self) -> int:
        """Tasks Started and healthy (those a load balancer sends requests to)."""
        return sum(
            1
            for record in self._live.values()
            if record.view.state is TaskState.STARTED and record.view.healthy
        )

    async def _read_requests(
        self, groups: list[str], autoscaling: Autoscaling, timeout: timedelta
    ) -> MetricReport | None:
        now = workflow.now()
        request = RequestCountInput(target_groups=groups, at=now, window=autoscaling.window)
        try:
            rate = await workflow.execute_activity_method(
                MetricSourceActivityInterface.read_request_counts,
                request,
                schedule_to_close_timeout=timeout,
                retry_policy=_READ_RETRY,
                summary=f"CloudWatch RequestCountPerTarget of {len(groups)} target group(s)",
            )
        except ActivityError as err:
            self._note_read(REQUESTS_METRIC, [f"CloudWatch: {err.cause or err}"], 1)
            return None
        self._note_read(REQUESTS_METRIC, [], 1)
        sample = MetricSample(
            metric=REQUESTS_METRIC, value=rate.value, at=now, weight=max(self._serving(), 1)
        )
        return MetricReport(source=CLOUDWATCH_SOURCE, samples=[sample])

    async def _scrape(
        self, metric: str, source: MetricSource, timeout: timedelta
    ) -> MetricReport | None:
        """``metric`` from every Started task, one activity per agent; their average."""
        port = source.prometheus.port
        by_queue: dict[str, list[ScrapeTarget]] = {}
        for record in self._live.values():
            view = record.view
            if (
                view.state is not TaskState.STARTED
                or record.task_queue is None
                or port not in record.ports
                or view.id in self._kill_reasons
            ):
                continue
            target = ScrapeTarget(task_id=view.id, port=record.ports[port])
            by_queue.setdefault(record.task_queue, []).append(target)
        if not by_queue:
            return None
        now = workflow.now()
        results = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    MetricSourceActivityInterface.scrape_metric,
                    ScrapeInput(
                        source=source.prometheus,
                        tasks=targets,
                        timeout_seconds=min(timeout.total_seconds(), 5.0),
                    ),
                    task_queue=queue,
                    schedule_to_close_timeout=timeout,
                    retry_policy=_READ_RETRY,
                    summary=f"scrape {source.prometheus.metric} of {len(targets)} task(s)",
                )
                for queue, targets in by_queue.items()
            ),
            return_exceptions=True,
        )
        values: dict[str, float] = {}
        buckets: dict[str, dict[str, float]] = {}
        errors: list[str] = []
        for targets, result in zip(by_queue.values(), results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, ActivityError):
                    raise result
                errors += [f"{target.task_id}: {result.cause or result}" for target in targets]
                continue
            values |= result.values
            buckets |= result.buckets
            errors += [f"{task_id}: {error}" for task_id, error in result.errors.items()]
        tasks = sum(len(targets) for targets in by_queue.values())
        self._note_read(metric, errors, tasks)
        prometheus = source.prometheus
        if prometheus.quantile is not None:
            value, weight = self._histogram_quantile(metric, prometheus.quantile, buckets, now)
        else:
            if prometheus.rate:
                counters = {(task, _NO_BUCKET): value for task, value in values.items()}
                rates = self._counter_rates(metric, counters, now)
                values = {task: rate for (task, _), rate in rates.items()}
            value = sum(values.values()) / len(values) if values else None
            weight = len(values)
        if value is None:
            return None
        sample = MetricSample(metric=metric, value=value, at=now, weight=weight)
        return MetricReport(source=PROMETHEUS_SOURCE, samples=[sample])

    def _histogram_quantile(
        self, metric: str, quantile: float, buckets: dict[str, dict[str, float]], at: datetime
    ) -> tuple[float | None, int]:
        """The quantile of the tasks' observations since their previous scrapes; tasks counted.

        Each bucket of each task is a counter (its rate since the last scrape),
        summed over the tasks bound by bound, as ``sum(rate(<metric>_bucket))``.
        """
        counts = {
            (task, bound): count
            for task, by_bound in buckets.items()
            for bound, count in by_bound.items()
        }
        summed: dict[float, float] = {}
        tasks: set[str] = set()
        for (task, bound), rate in self._counter_rates(metric, counts, at).items():
            summed[float(bound)] = summed.get(float(bound), 0.0) + rate
            tasks.add(task)
        return histogram_quantile(quantile, summed), len(tasks)

    def _counter_rates(
        self, metric: str, counters: dict[tuple[str, str], float], at: datetime
    ) -> dict[tuple[str, str], float]:
        """Each counter, by (task id, bucket bound), as a rate since its previous scrape.

        The readings of tasks gone are forgotten.
        """
        previous = self._counter_readings.get(metric, {})
        rates, kept = counter_rates(previous, counters, at)
        self._counter_readings[metric] = {
            key: reading for key, reading in kept.items() if key[0] in self._live
        }
        return rates

    def _note_read(self, metric: str, errors: list[str], tried: int) -> None:
        """Record (and log) why ``metric`` was not read from some of ``tried`` sources.

        With no ``errors`` the read succeeded: an earlier failure is forgotten.
        """
        if not errors:
            self._read_errors.pop(metric, None)
            return
        what = "not read" if tried == 1 else f"{len(errors)} of {tried} not read"
        message = f"{what} at {workflow.now():%H:%M:%S} UTC; {errors[0]}"
        self._read_errors[metric] = message[:_MAX_ERROR_CHARS]
        workflow.logger.warning("%s: %s", metric, message)
