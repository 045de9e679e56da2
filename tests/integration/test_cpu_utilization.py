"""CPU utilization from agents: the drivers' counters, and the reports a service job gets.

Real dev server, control worker and process-driver agent (the cheapest agent):
a service that scales on ``cpu_utilization`` runs two tasks that burn a little
CPU; the agent sends the job one ``metrics`` signal per period for both (read
back from the job's history), with CPU use above 0. The drivers' counters are checked
directly too: the process driver's /proc session and a Docker container's
cgroup.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Container, Resources, ServiceJob
from titus_flow.client import TitusClient
from titus_flow.config import load_settings
from titus_flow.contracts.metric_reports import MetricReport
from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.runtime.base import LaunchRequest
from titus_flow.runtime.docker import DockerDriver
from titus_flow.runtime.process import ProcessDriver
from titus_flow.spec import Autoscaling, TargetTrackingPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A light burner (a few percent of a core), so the suite's CPU stays for the others.
BURN = "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.5; done"
SMALL = Resources(cpu=0.01, memory=8, disk=0, network_mbps=0)


def burner(name: str, tasks: int) -> ServiceJob:
    """``tasks`` burning tasks that scale on CPU, held at that size by min = max."""
    return ServiceJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", BURN]),
        resources=SMALL,
        capacity=Capacity(min=tasks, desired=tasks, max=tasks),
        autoscaling=Autoscaling(
            policies=[TargetTrackingPolicy(name="cpu", metric="cpu_utilization", target=50)],
            interval="2s",  # reports every 5 s, the shortest period
        ),
    )


async def cpu_reports(client: TitusClient, job_id: str) -> list[MetricReport]:
    """The ``metrics`` signals in the job's history so far."""
    history = await client.temporal.get_workflow_handle(job_id).fetch_history()
    reports = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        signaled = event.workflow_execution_signaled_event_attributes
        if signaled.signal_name == "metrics":
            [report] = await WORKER_DATA_CONVERTER.decode(signaled.input.payloads, [MetricReport])
            reports.append(report)
    return reports


@pytest.fixture
def proc_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A control worker and a process-driver agent."""
    cluster = cluster_factory()
    cluster.start_worker()
    cluster.start_agent("proc", "--driver", "process", "--cpu", "2", "--memory", "2Gi")
    return cluster


async def test_agent_reports_its_tasks_cpu_once_per_period(proc_cluster: Cluster) -> None:
    client = await proc_cluster.client()
    job_id = await client.submit(burner("burner", tasks=2))
    try:

        async def reported_both_busy() -> bool:
            return any(
                sample.weight == 2 and sample.value > 0
                for report in await cpu_reports(client, job_id)
                for sample in report.samples
            )

        await eventually(reported_both_busy, 60, "a CPU report for both tasks")
        reports = await cpu_reports(client, job_id)
    finally:
        await client.kill(job_id)
        await proc_cluster.wait_for(job_id, timeout=60)
    agent = f"agent:{proc_cluster.agent_id('proc')}"
    assert {report.source for report in reports} == {agent}
    for report in reports:
        [sample] = report.samples  # one sample for both tasks, never one per task
        assert sample.metric == "cpu_utilization"
        assert sample.weight in (1, 2)  # 1 only while the second task had no reading yet
    # One report per period (5 s), not one per task.
    times = [report.samples[0].at for report in reports]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert all(gap > 4.5 for gap in gaps), gaps


# --- the drivers' counters -------------------------------------------------------------------


def launch_request(agent_id: str) -> LaunchRequest:
    return LaunchRequest(
        job_id="job-cpu",
        task_id=f"t{uuid.uuid4().hex[:10]}",
        task_index=0,
        attempt=1,
        agent_id=agent_id,
        container=Container(image="busybox:latest", command=["sh", "-c", BURN]),
        resources=SMALL,
    )


async def counter_grows(driver: ProcessDriver | DockerDriver, request: LaunchRequest) -> None:
    """Launch ``request``; its CPU counter must grow while it runs, and end with it."""
    await driver.launch(request)
    first = await driver.cpu_seconds(request.name)
    assert first is not None

    async def grew() -> bool:
        now = await driver.cpu_seconds(request.name)
        return now is not None and now > first

    await eventually(grew, 20, "the CPU counter to grow")
    await driver.remove(request.name, None)
    assert await driver.cpu_seconds(request.name) is None


@pytest.fixture
async def process_driver(tmp_path: Path) -> AsyncIterator[ProcessDriver]:
    driver = ProcessDriver(state_dir=tmp_path / "state")
    yield driver
    for managed in await driver.list_managed():
        await driver.remove(managed.name, None)


async def test_process_driver_counts_the_session(process_driver: ProcessDriver) -> None:
    await counter_grows(process_driver, launch_request("pytest-cpu"))


@pytest.mark.docker
async def test_docker_driver_counts_the_cgroup() -> None:
    driver = DockerDriver(network_mode="none", extra_labels=load_settings().container_labels)
    request = launch_request(f"pytest-cpu-{uuid.uuid4().hex[:8]}")
    try:
        await counter_grows(driver, request)
    finally:
        await driver.remove(request.name, None)
        await driver.close()
