"""The local load balancer's ends on a service job: its targets and its metric reports.

:class:`JobTargets` reads the registered targets of the group ``local:<name>``
from the job's ``load_balancers`` query; :class:`JobMetricReports` sends the
``requests_per_task`` reports to the job's ``metrics`` signal. Both go through
the Python client.
"""

from __future__ import annotations

from collections.abc import Sequence

from titus_flow.client import TitusClient
from titus_flow.contracts.load_balancers import TargetGroupView, TargetState
from titus_flow.contracts.metric_reports import MetricReport
from titus_flow.errors import UserError
from titus_flow.lb.targets import Target

LOCAL_PREFIX = "local:"


class JobTargets:
    """The targets of group ``local:<name>`` of a service job that are ``registered``."""

    def __init__(self, client: TitusClient, job_id: str, name: str) -> None:
        self._client = client
        self.job_id = job_id
        self.group = f"{LOCAL_PREFIX}{name}"

    async def check(self) -> None:
        """Raise a :class:`UserError` unless the job exists and has the group."""
        groups = (await self._client.load_balancers(self.job_id)).groups
        if self._find(groups) is None:
            names = ", ".join(g.target_group for g in groups) or "none"
            raise UserError(
                f"job {self.job_id} has no load balancer {self.group} (its load_balancers:"
                f" {names}); add {self.group!r} to the job's load_balancers"
            )

    async def registered(self) -> Sequence[Target]:
        """The group's targets in state ``registered``: the only ones routed to."""
        group = self._find((await self._client.load_balancers(self.job_id)).groups)
        if group is None:
            raise LookupError(f"job {self.job_id} has no load balancer {self.group}")
        return [
            Target(task_id=t.task_id, host=t.target, port=t.port)
            for t in group.targets
            if t.state is TargetState.REGISTERED
        ]

    def _find(self, groups: Sequence[TargetGroupView]) -> TargetGroupView | None:
        return next((g for g in groups if g.target_group == self.group), None)


class JobMetricReports:
    """Sends reports to a service job's ``metrics`` signal."""

    def __init__(self, client: TitusClient, job_id: str) -> None:
        self._client = client
        self._job_id = job_id

    async def report(self, report: MetricReport) -> None:
        """Deliver ``report`` to the job."""
        await self._client.report_metrics(self._job_id, report)
