"""The agent: one per host, runs containers for the tasks placed on it.

On start it registers its resources and attributes with the scheduler,
removes containers of attempts that are no longer current (orphans left by a
crash), then serves its task queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from titus_flow.activities.agent import AgentActivities
from titus_flow.client import describe_job, ensure_scheduler
from titus_flow.config import Settings
from titus_flow.contracts import AgentInfo, agent_task_queue
from titus_flow.lifecycle import TaskState
from titus_flow.runtime import make_driver
from titus_flow.runtime.base import Driver, DriverError, ManagedContainer
from titus_flow.spec import Resources
from titus_flow.spot import watch_for_interruption
from titus_flow.workflows.common import scheduler_workflow_id
from titus_flow.workflows.scheduler import AGENT_HEARTBEAT

log = logging.getLogger(__name__)

# What an agent offers when not told: a 10 Gbit/s NIC and 100 GiB of disk.
DEFAULT_AGENT_NETWORK_MBPS = 10_000
DEFAULT_AGENT_DISK_MIB = 100 * 1024


def host_resources() -> Resources:
    """Cores and memory of this host,, the agent's default capacity."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return Resources(
        cpu=float(os.cpu_count() or 1),
        memory=pages // (1024 * 1024),
        disk=DEFAULT_AGENT_DISK_MIB,
        network_mbps=DEFAULT_AGENT_NETWORK_MBPS,
    )


@dataclass
class AgentConfig:
    """What an agent declares and how it runs containers."""

    agent_id: str
    resources: Resources = field(default_factory=host_resources)
    attributes: dict[str, str] = field(default_factory=dict)
    driver: str = "docker"
    port_range: tuple[int, int] = (20000, 29999)
    max_concurrent_activities: int = 1000
    # Where to watch for spot interruption notices (the instance metadata
    # service); None: not a spot instance, or not on EC2.
    spot_notice_url: str | None = None

    def info(self) -> AgentInfo:
        """The registration message."""
        return AgentInfo(
            agent_id=self.agent_id,
            task_queue=agent_task_queue(self.agent_id),
            resources=self.resources,
            attributes=self.attributes,
            port_range=self.port_range,
        )


async def _is_current(client: Client, container: ManagedContainer) -> bool:
    """Whether the job may still run this attempt of this task.

    Only a definite answer removes a container: a job that is gone or ended, or a
    task that finished or moved to another attempt. When the job cannot be
    asked right now (a worker restarting, a query failing) the container stays;
    its job's own supervise activity settles its fate.
    """
    handle = client.get_workflow_handle(container.job_id)
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return False
    except RPCError as err:
        return err.status != RPCStatusCode.NOT_FOUND
    try:
        view = await describe_job(client, container.job_id)
    except RPCError as err:
        log.warning("cannot tell if %s is current (%s); keeping it", container.name, err.message)
        return True
    task = next((t for t in view.tasks if t.id == container.task_id), None)
    return (
        task is not None
        and task.state is not TaskState.FINISHED
        and task.attempt == container.attempt
    )


async def remove_orphans(client: Client, driver: Driver, activities: AgentActivities) -> int:
    """Remove containers whose attempt the job no longer runs; return how many."""
    removed = 0
    for container in await driver.list_managed():
        # Only this agent's containers: other agents may share the engine.
        if container.agent_id != activities.agent_id or await _is_current(client, container):
            continue  # a current attempt: its supervise activity is retried here and adopts it
        log.warning("removing orphan container %s", container.name)
        try:
            await driver.stop(container.name, 5.0)
            await driver.remove(
                container.name, activities.log_path(container.task_id, container.attempt)
            )
        except DriverError as err:
            log.warning("could not remove orphan %s: %s", container.name, err)
            continue
        removed += 1
    return removed


async def run_agent(
    client: Client, settings: Settings, config: AgentConfig, stop: asyncio.Event
) -> None:
    """Register, reconcile, then serve the agent's task queue until ``stop`` is set."""
    driver = make_driver(
        config.driver,
        state_dir=settings.home / "agents" / config.agent_id,
        labels=settings.container_labels,
    )
    activities = AgentActivities(
        config.agent_id, driver, Path(settings.home) / "agents" / config.agent_id / "logs"
    )
    await remove_orphans(client, driver, activities)
    worker = Worker(
        client,
        task_queue=agent_task_queue(config.agent_id),
        activities=[activities.launch, activities.supervise, activities.read_logs],
        max_concurrent_activities=config.max_concurrent_activities,
    )
    async with worker, _spot_watch(client, settings, config, stop):
        log.info("agent %s serving %s", config.agent_id, agent_task_queue(config.agent_id))
        # Registering again is the heartbeat: the ledger marks silent agents lost.
        while not stop.is_set():
            try:
                await ensure_scheduler(client, settings, config.info())
            except RPCError as err:
                log.warning("heartbeat to the scheduler failed: %s", err.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), AGENT_HEARTBEAT.total_seconds())


@contextlib.asynccontextmanager
async def _spot_watch(
    client: Client, settings: Settings, config: AgentConfig, stop: asyncio.Event
) -> AsyncIterator[None]:
    """While the agent runs, drain it as soon as EC2 announces its spot interruption."""
    if config.spot_notice_url is None:
        yield
        return

    async def drain_self(notice: str) -> None:
        scheduler = client.get_workflow_handle(scheduler_workflow_id(settings.control_task_queue))
        while not stop.is_set():
            try:
                await scheduler.signal("drain_agent", config.agent_id)
            except RPCError as err:  # the two minutes matter: keep trying
                log.warning("could not drain after a spot notice: %s", err.message)
                await asyncio.sleep(2.0)
                continue
            log.warning("agent %s drains itself: spot interruption %s", config.agent_id, notice)
            return

    watch = asyncio.create_task(watch_for_interruption(drain_self, stop, config.spot_notice_url))
    try:
        yield
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
