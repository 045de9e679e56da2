"""An agent's CPU reports to the service jobs that scale on ``cpu_utilization``.

Supervise registers each task whose :class:`~titus_flow.contracts.SuperviseInput`
carries :class:`~titus_flow.contracts.CpuReporting` (:meth:`CpuReporter.watch`)
and unregisters it when the task ends. For each job with at least one such
task, one loop on the agent reads every task's CPU counter through the driver
(:class:`~titus_flow.runtime.base.CpuUsage`) once per period and sends the job
ONE ``metrics`` signal: the average percent of the tasks' CPU requests over the
period, weighted by the tasks it stands for. So a job's history grows with its
agents and the period, never with its tasks; a job on three agents gets three
reports a period, which its buffer merges by weight.

A report that cannot be sent (the job ended, the server is briefly away) is
dropped: the next period sends a fresh one, and a stale CPU value is worth
nothing to a scaling decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from titus_flow.contracts import CpuReporting, SuperviseInput
from titus_flow.contracts.agents import CPU_METRIC
from titus_flow.contracts.metric_reports import MetricReport, MetricSample
from titus_flow.runtime.base import CpuUsage, Driver, DriverError
from titus_flow.runtime.usage import CpuReading, TaskCpuAverage
from titus_flow.workflows.service import ServiceJobWorkflow

# Not activity.logger: a job's loop outlives the supervise that started it.
logger = logging.getLogger(__name__)


@dataclass
class _JobTasks:
    """The tasks of one job this agent reports on, and the loop that reports."""

    workflow_id: str
    client: Client
    tasks: dict[str, CpuReporting] = field(default_factory=dict)  # attempt name -> reporting
    average: TaskCpuAverage = field(default_factory=TaskCpuAverage)
    loop: asyncio.Task[None] | None = None

    @property
    def period(self) -> float:
        """The shortest period its tasks ask for (tasks of two revisions may differ)."""
        return min(reporting.period_seconds for reporting in self.tasks.values())


class CpuReporter:
    """The CPU reports of one agent: one loop per job it runs autoscaled tasks of."""

    def __init__(self, agent_id: str, driver: Driver) -> None:
        """Report for agent ``agent_id``, reading tasks' CPU through ``driver``."""
        self.source = f"agent:{agent_id}"
        self._driver = driver if isinstance(driver, CpuUsage) else None
        self._jobs: dict[str, _JobTasks] = {}
        self._warned = False

    def watch(self, request: SuperviseInput, name: str, client: Client | None = None) -> None:
        """Report on attempt ``name`` while it runs, if its job asks.

        Called from supervise: the reports go through ``client``, by default the
        activity's.
        """
        reporting, workflow_id = request.cpu_report, request.workflow_id
        if reporting is None or workflow_id is None:
            return
        if self._driver is None:
            if not self._warned:  # once: every task of such a job would say the same
                logger.warning("cannot report the CPU of %s: the driver cannot tell", name)
                self._warned = True
            return
        job = self._jobs.get(workflow_id)
        if job is None:
            job = self._jobs[workflow_id] = _JobTasks(workflow_id, client or activity.client())
        job.tasks[name] = reporting
        if job.loop is None:
            job.loop = asyncio.create_task(self._report(job), name=f"cpu reports {workflow_id}")

    def unwatch(self, request: SuperviseInput, name: str) -> None:
        """Stop reporting on attempt ``name``; its job's loop ends with its last task."""
        job = self._jobs.get(request.workflow_id or "")
        if job is None or job.tasks.pop(name, None) is None or job.tasks:
            return
        del self._jobs[job.workflow_id]
        if job.loop is not None:
            job.loop.cancel()

    async def _report(self, job: _JobTasks) -> None:
        """Read the job's tasks every period; send one report per period once there is a value."""
        while True:
            try:
                measured = job.average.observe(await self._readings(job))
                if measured is not None:
                    await self._send(job, *measured)
            except Exception:  # a bug must not end the reports for good
                logger.exception("CPU report to %s failed", job.workflow_id)
            await asyncio.sleep(job.period)

    async def _readings(self, job: _JobTasks) -> dict[str, tuple[CpuReading | None, float]]:
        names = list(job.tasks)
        counters = await asyncio.gather(*(self._read(name) for name in names))
        return {
            name: (reading, job.tasks[name].cpu)
            for name, reading in zip(names, counters, strict=True)
            if name in job.tasks  # not ended while it was read
        }

    async def _read(self, name: str) -> CpuReading | None:
        assert self._driver is not None
        try:
            seconds = await self._driver.cpu_seconds(name)
        except DriverError as err:  # the engine is away: no reading this period
            logger.debug("no CPU reading of %s: %s", name, err)
            return None
        return None if seconds is None else CpuReading(seconds, time.monotonic())

    async def _send(self, job: _JobTasks, percent: float, tasks: int) -> None:
        report = MetricReport(
            source=self.source,
            samples=[
                MetricSample(
                    metric=CPU_METRIC, value=percent, at=datetime.now(UTC), weight=float(tasks)
                )
            ],
        )
        handle = job.client.get_workflow_handle(job.workflow_id)
        try:
            sending = handle.signal(ServiceJobWorkflow.metrics, report)
            await asyncio.wait_for(sending, timeout=job.period)
        except (RPCError, TimeoutError) as err:
            logger.warning("could not report CPU to %s: %s", job.workflow_id, err)
