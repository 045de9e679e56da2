"""CPU utilization from agents: what the workflow asks, and the agent's reports."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from titus_flow.activities.agent_usage import CpuReporter
from titus_flow.contracts import CpuReporting, SuperviseInput
from titus_flow.contracts.metric_reports import MetricReport
from titus_flow.runtime.base import Driver
from titus_flow.spec import ServiceJob
from titus_flow.workflows.service import ServiceJobWorkflow

# --- what the workflow asks ------------------------------------------------------------------


def _service(autoscaling: dict[str, Any] | None, cpu: float = 0.5) -> ServiceJob:
    return ServiceJob.model_validate(
        {
            "name": "web",
            "container": {"image": "busybox:latest"},
            "resources": {"cpu": cpu},
            "autoscaling": autoscaling,
        }
    )


def test_cpu_reporting_only_for_a_policy_on_cpu_utilization() -> None:
    cpu_policy = {
        "kind": "target_tracking",
        "name": "cpu",
        "metric": "cpu_utilization",
        "target": 60,
    }
    other = {"kind": "target_tracking", "name": "rps", "metric": "requests_per_task", "target": 10}
    assert CpuReporting.for_job(_service(None)) is None
    assert CpuReporting.for_job(_service({"policies": [other]})) is None
    reporting = CpuReporting.for_job(_service({"policies": [other, cpu_policy]}, cpu=0.25))
    assert reporting is not None
    assert reporting.cpu == 0.25
    assert reporting.period_seconds == 7.5  # half the default interval (15 s)
    quick = _service({"policies": [cpu_policy], "interval": "2s"})
    assert CpuReporting.for_job(quick) == CpuReporting(period_seconds=5.0, cpu=0.5)


def test_supervise_input_of_old_histories_has_no_cpu_reporting() -> None:
    old = {"task_id": "t", "attempt": 1, "started_at": "2026-01-01T00:00:00Z"}
    assert SuperviseInput.model_validate(old).cpu_report is None


# --- the reporter ------------------------------------------------------------------------------


class FakeDriver:
    """Each task's counter grows by ``per_read`` CPU seconds at every read."""

    name = "fake"

    def __init__(self, per_read: dict[str, float]) -> None:
        self.per_read = per_read
        self.counters: dict[str, float] = dict.fromkeys(per_read, 0.0)

    async def cpu_seconds(self, name: str) -> float | None:
        if name not in self.per_read:
            return None
        self.counters[name] += self.per_read[name]
        return self.counters[name]


class FakeClient:
    """Records the signals sent to each workflow."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, Any, MetricReport]] = []

    def get_workflow_handle(self, workflow_id: str) -> Any:
        client = self

        class Handle:
            async def signal(self, name: Any, report: MetricReport) -> None:
                client.signals.append((workflow_id, name, report))

        return Handle()


def _supervise(task: str, job: str, period: float = 0.05) -> SuperviseInput:
    return SuperviseInput(
        task_id=task,
        attempt=1,
        started_at=datetime.now(UTC),
        workflow_id=job,
        cpu_report=CpuReporting(period_seconds=period, cpu=1.0),
    )


async def test_one_report_per_job_and_period_for_all_its_tasks() -> None:
    driver = FakeDriver({"a1": 0.01, "a2": 0.01, "b1": 0.0})
    client = FakeClient()
    reporter = CpuReporter("agent-7", cast(Driver, driver))
    watched = [("a1", "job-a"), ("a2", "job-a"), ("b1", "job-b")]

    async def supervise_all() -> None:
        for name, job in watched:
            reporter.watch(_supervise(name, job), name)

    await ActivityEnvironment(client=cast(Client, client)).run(supervise_all)
    try:
        while {wid for wid, _, _ in client.signals} != {"job-a", "job-b"}:
            await asyncio.sleep(0.01)
    finally:
        for name, job in watched:
            reporter.unwatch(_supervise(name, job), name)
    sent = len(client.signals)
    await asyncio.sleep(0.2)
    assert len(client.signals) == sent  # every loop ended with its job's last task
    for workflow_id, name, report in client.signals:
        assert name is ServiceJobWorkflow.metrics
        assert report.source == "agent:agent-7"
        [sample] = report.samples
        assert sample.metric == "cpu_utilization"
        assert sample.weight == (2.0 if workflow_id == "job-a" else 1.0)
        if workflow_id == "job-b":
            assert sample.value == 0.0


async def test_no_reports_without_cpu_reporting_or_a_driver_that_can_tell() -> None:
    client = FakeClient()
    plain = SuperviseInput(task_id="t", attempt=1, started_at=datetime.now(UTC), workflow_id="j")
    reporter = CpuReporter("a", cast(Driver, FakeDriver({"t": 1.0})))
    reporter.watch(plain, "t", cast(Client, client))
    blind = CpuReporter("a", cast(Driver, object()))
    blind.watch(_supervise("t", "j"), "t", cast(Client, client))
    await asyncio.sleep(0.2)
    assert client.signals == []
