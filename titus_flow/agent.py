"""The agent: one per host, runs containers for the tasks placed on it.

On start it registers its resources and attributes with the scheduler,
removes containers of attempts that are no longer current (orphans left by a
crash), then serves its task queue, and every ``reconcile_seconds`` (setting
``TITUS_FLOW_RECONCILE_SECONDS``) removes the orphans that appeared meanwhile
and prunes the output kept of ended attempts (``log_retention_hours``,
``log_max_total_mib``). With ``log_bucket`` set, it uploads each ended
attempt's log to S3 (:mod:`titus_flow.activities.agent_uploads`).

What tasks may do is the operator's to set (docs/security.md): host networking
only with ``allow_host_network``, images from ``allowed_images``, ports published
on ``publish_address``, ``env_file:`` secrets only from ``secrets_dir``, host path
volumes only under ``allowed_host_paths``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from titus_flow.activities.agent import AgentActivities
from titus_flow.activities.agent_files import prune_kept_output
from titus_flow.activities.agent_uploads import LogUploader
from titus_flow.activities.metric_sources import MetricSourceActivities
from titus_flow.client import ensure_scheduler
from titus_flow.cluster import AGENT_HEARTBEAT, agent_task_queue, scheduler_workflow_id
from titus_flow.config import Settings
from titus_flow.contracts import AgentInfo
from titus_flow.log_store import S3Store, log_location
from titus_flow.logs_json import TaskContextInterceptor
from titus_flow.reconcile import jobs_running, judge
from titus_flow.runtime import make_driver
from titus_flow.runtime.base import Driver, DriverError, ScratchVolumes
from titus_flow.spec import Resources
from titus_flow.spec.constraints import HOST_NETWORK_ATTRIBUTE
from titus_flow.spot import watch_for_interruption
from titus_flow.telemetry import process_meter
from titus_flow.workflows.scheduler import SchedulerWorkflow

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
    # Whether tasks may ask for the host's network (and so reach its loopback).
    allow_host_network: bool = False
    # Host directories host_path volumes may lie under, beside the settings' own.
    allowed_host_paths: tuple[str, ...] = ()

    def info(self) -> AgentInfo:
        """The registration message; host networking shows as an attribute constraints match."""
        attributes = dict(self.attributes)
        if self.allow_host_network:
            attributes[HOST_NETWORK_ATTRIBUTE] = "allowed"
        return AgentInfo(
            agent_id=self.agent_id,
            task_queue=agent_task_queue(self.agent_id),
            resources=self.resources,
            attributes=attributes,
            port_range=self.port_range,
        )

    def driver_options(self, settings: Settings) -> dict[str, object]:
        """What the driver is told of the operator's policy (the docker driver's options)."""
        if self.driver != "docker":
            return {}
        return {
            "task_network": settings.task_network,
            "publish_address": settings.publish_address,
            "allow_host_network": self.allow_host_network,
            "allowed_images": settings.allowed_images,
            "pids_limit": settings.task_pids_limit,
            "log_max_mib": settings.container_log_max_mib,
            "allowed_host_paths": (*settings.allowed_host_paths, *self.allowed_host_paths),
            # Never mounted into a task: the agent's state, logs and secrets.
            "protected_paths": (str(settings.home), str(settings.agent_secrets_dir)),
        }


def probe_host(publish_address: str) -> str:
    """Where health checks reach ports published on ``publish_address``."""
    return "127.0.0.1" if publish_address in ("0.0.0.0", "") else publish_address


def prune_logs(settings: Settings, activities: AgentActivities) -> None:
    """Delete kept output of ended attempts beyond the settings' age and total size."""
    removed = prune_kept_output(
        activities.log_dir,
        max_age=settings.log_retention_hours * 3600,
        max_total_bytes=settings.log_max_total_mib * 1024 * 1024,
    )
    if removed:
        log.info("pruned the kept output of %d ended attempt(s)", removed)


async def remove_orphans(client: Client, driver: Driver, activities: AgentActivities) -> int:
    """Stop and remove this agent's containers whose attempt no job runs; return how many.

    Each removal is logged with its reason. Containers whose job cannot be
    asked now stay (see :mod:`titus_flow.reconcile`).
    """
    # Only this agent's containers: other agents may share the engine.
    mine = [c for c in await driver.list_managed() if c.agent_id == activities.agent_id]
    removed = 0
    for verdict in await judge(client, mine):
        if verdict.current:
            continue  # its supervise activity runs here, or is retried here and adopts it
        name = verdict.container.name
        log.warning("removing orphan container %s: %s", name, verdict.reason)
        try:
            await activities.stop_and_remove(
                name, verdict.container.task_id, verdict.container.attempt, verdict.reason
            )
        except DriverError as err:
            log.warning("could not remove orphan %s: %s", name, err)
            continue
        removed += 1
    if isinstance(driver, ScratchVolumes):
        await remove_ended_scratch_volumes(client, driver)
    return removed


async def remove_ended_scratch_volumes(client: Client, driver: ScratchVolumes) -> int:
    """Remove the scratch volumes on this host of jobs that no longer run; return how many.

    Any agent of the host may: the volume is the job's, not an agent's. One a
    container still uses (a task being removed) stays for the next round.
    """
    volumes = [(name, job_id) for name, job_id in await driver.scratch_volumes() if job_id]
    running = await jobs_running(client, {job_id for _, job_id in volumes})
    removed = 0
    for name, job_id in volumes:
        if running.get(job_id) is False and await driver.remove_scratch_volume(name):
            log.info("removed scratch volume %s: job %s is no longer running", name, job_id)
            removed += 1
    return removed


async def _reconcile_every(
    seconds: float,
    client: Client,
    driver: Driver,
    activities: AgentActivities,
    stop: asyncio.Event,
    tidy: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Remove orphans (and ``tidy``) every ``seconds`` until ``stop`` is set.

    A failed round waits for the next.
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
            return
        try:
            await remove_orphans(client, driver, activities)
        except (RPCError, DriverError) as err:
            log.warning("reconcile failed, retrying in %gs: %s", seconds, err)
        if tidy is not None:
            await tidy()


async def tidy_logs(settings: Settings, activities: AgentActivities) -> None:
    """Prune kept output (:func:`prune_logs`), then queue the logs not uploaded yet."""
    await asyncio.to_thread(prune_logs, settings, activities)
    if activities.uploader is not None:
        queued = await activities.uploader.requeue(activities.log_dir)
        if queued:
            log.info("queued the logs of %d ended attempt(s) for upload", queued)


RETRY_PAUSE_MAX = 10.0


async def retry_pause(stop: asyncio.Event, delay: float) -> float:
    """Wait ``delay`` seconds (less if ``stop`` is set); the next delay, doubled up to 10 s."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return min(delay * 2, RETRY_PAUSE_MAX)


async def register_every(register: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Register with the scheduler every :data:`AGENT_HEARTBEAT` until ``stop``.

    Registering again refreshes the agent's record in the ledger. A failed
    registration is tried again within seconds (doubling to 10 s, jittered so
    a thousand agents refused by a busy server do not come back at once), not
    after a whole heartbeat: an agent that never registered gets no work.
    """
    delay = 0.5
    while not stop.is_set():
        try:
            await register()
        except RPCError as err:
            log.warning("registering with the scheduler failed, retrying: %s", err.message)
            delay = await retry_pause(stop, delay * random.uniform(0.5, 1.0))
            continue
        delay = 0.5
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), AGENT_HEARTBEAT.total_seconds())


async def _reconcile_at_start(
    client: Client, driver: Driver, activities: AgentActivities, stop: asyncio.Event
) -> bool:
    """Remove orphans before serving, waiting out an engine or server that is not up yet.

    An agent restarted with its engine (a host reboot, ``systemctl restart docker``)
    may ask before the engine answers: it waits rather than exits. Returns False
    when ``stop`` is set first.
    """
    delay = 0.5
    while not stop.is_set():
        try:
            await remove_orphans(client, driver, activities)
            return True
        except (RPCError, DriverError) as err:
            log.warning("cannot reconcile yet, retrying in %gs: %s", delay, err)
        delay = await retry_pause(stop, delay)
    return False


async def run_agent(
    client: Client, settings: Settings, config: AgentConfig, stop: asyncio.Event
) -> None:
    """Register, reconcile, then serve the agent's task queue until ``stop`` is set."""
    driver = make_driver(
        config.driver,
        state_dir=settings.home / "agents" / config.agent_id,
        labels=settings.container_labels,
        **config.driver_options(settings),
    )
    location = log_location(settings)
    uploader = None if location is None else LogUploader(S3Store(), location, meter=process_meter())
    activities = AgentActivities(
        config.agent_id,
        driver,
        Path(settings.home) / "agents" / config.agent_id / "logs",
        secrets_dir=settings.agent_secrets_dir,
        probe_host=probe_host(settings.publish_address),
        uploader=uploader,
    )
    try:
        await _serve(client, settings, config, driver, activities, stop)
    finally:
        if uploader is not None:
            await uploader.close()
        await driver.close()


async def _serve(
    client: Client,
    settings: Settings,
    config: AgentConfig,
    driver: Driver,
    activities: AgentActivities,
    stop: asyncio.Event,
) -> None:
    """Reconcile, then serve the agent's task queue until ``stop`` is set."""
    if not await _reconcile_at_start(client, driver, activities, stop):
        return
    await tidy_logs(settings, activities)
    worker = Worker(
        client,
        task_queue=agent_task_queue(config.agent_id),
        activities=[
            activities.launch,
            activities.supervise,
            activities.stop,
            activities.read_logs,
            # Prometheus endpoints of the tasks, where the health checks reach them.
            MetricSourceActivities(probe_host=activities.probe_host).scrape_metric,
        ],
        max_concurrent_activities=config.max_concurrent_activities,
        interceptors=[TaskContextInterceptor()],
    )
    async with worker, _spot_watch(client, settings, config, stop):
        log.info("agent %s serving %s", config.agent_id, agent_task_queue(config.agent_id))
        # Orphans appear while the agent runs too (a job terminated, an activity
        # whose workflow is gone), not only across its restarts.
        reconciling = asyncio.create_task(
            _reconcile_every(
                settings.reconcile_seconds,
                client,
                driver,
                activities,
                stop,
                functools.partial(tidy_logs, settings, activities),
            )
        )
        try:
            await register_every(
                functools.partial(ensure_scheduler, client, settings, config.info()), stop
            )
        finally:
            reconciling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciling


@contextlib.asynccontextmanager
async def _spot_watch(
    client: Client, settings: Settings, config: AgentConfig, stop: asyncio.Event
) -> AsyncIterator[None]:
    """While the agent runs, drain it as soon as EC2 announces its spot interruption."""
    if config.spot_notice_url is None:
        yield
        return

    async def drain_self(notice: str) -> None:
        scheduler = client.get_workflow_handle_for(
            SchedulerWorkflow.run, scheduler_workflow_id(settings.control_task_queue)
        )
        while not stop.is_set():
            try:
                await scheduler.signal(SchedulerWorkflow.drain_agent, config.agent_id)
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
