"""CPU utilization from agents: the drivers' counters of a task's CPU use.

The process driver's /proc session and a Docker container's cgroup, each with
a task that burns a little CPU.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from titus_cluster import eventually

from titus_flow import Container, Resources
from titus_flow.config import load_settings
from titus_flow.runtime.base import LaunchRequest
from titus_flow.runtime.docker import DockerDriver
from titus_flow.runtime.process import ProcessDriver

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A light burner (a few percent of a core), so the suite's CPU stays for the others.
BURN = "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.5; done"
SMALL = Resources(cpu=0.01, memory=8, disk=0, network_mbps=0)


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
