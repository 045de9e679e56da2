"""Hollow agents: many simulated agents in one process, for tests and benchmarks.

After Kubernetes' Kubemark hollow nodes and Nomad's nodesim. Each hollow agent
is the real agent (:func:`titus_flow.agent.run_agent`): its own id, capacity,
attributes and task queue, registration and heartbeats, and the real launch,
supervise and read_logs activities. Only its driver is the
:mod:`~titus_flow.runtime.sim` driver, whose tasks run on timers. All agents of
the process share one Temporal client and one event loop.

They prove the control plane holds at many agents and tasks, never that real
containers work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from titus_flow import agent as agent_module
from titus_flow.agent import (
    DEFAULT_AGENT_DISK_MIB,
    DEFAULT_AGENT_NETWORK_MBPS,
    AgentConfig,
    run_agent,
)
from titus_flow.config import Settings
from titus_flow.spec import Resources

log = logging.getLogger(__name__)

HOLLOW_RESOURCES = Resources(
    cpu=16, memory="64Gi", disk=DEFAULT_AGENT_DISK_MIB, network_mbps=DEFAULT_AGENT_NETWORK_MBPS
)
"""What each hollow agent offers unless told: a mid-sized EC2 host."""
DEFAULT_ZONES = ("zone-a", "zone-b", "zone-c")
ZONE_ATTRIBUTE = "zone"
HOLLOW_ATTRIBUTE = "hollow"
"""Every hollow agent carries ``hollow=true``: a job can demand (or avoid) them."""
STARTS_PER_SECOND = 50.0
"""How fast agents come up. Each new agent makes the server create its task queue:
the embedded (SQLite) server timed out at 200 a second on a loaded 2-core host."""
RESTART_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class HollowFleet:
    """What N hollow agents offer: the same capacity each, zones spread round-robin."""

    count: int
    prefix: str = "hollow"
    resources: Resources = HOLLOW_RESOURCES
    zones: tuple[str, ...] = DEFAULT_ZONES
    attributes: dict[str, str] = field(default_factory=dict)
    port_range: tuple[int, int] = (20000, 29999)
    activity_pollers: int = 1
    """Activity pollers per agent (the SDK's default is 5): one is plenty for a
    simulated host, and 5,000 long polls would load the server for nothing."""
    starts_per_second: float = STARTS_PER_SECOND

    def agent_ids(self) -> list[str]:
        """``<prefix>-0001`` ... in order (zero-padded, so they sort)."""
        width = max(4, len(str(self.count)))
        return [f"{self.prefix}-{i:0{width}d}" for i in range(1, self.count + 1)]

    def configs(self) -> list[AgentConfig]:
        """One :class:`AgentConfig` per agent, driver ``sim``."""
        configs = []
        for i, agent_id in enumerate(self.agent_ids()):
            attributes = {**self.attributes, HOLLOW_ATTRIBUTE: "true"}
            if self.zones:
                attributes[ZONE_ATTRIBUTE] = self.zones[i % len(self.zones)]
            configs.append(
                AgentConfig(
                    agent_id=agent_id,
                    resources=self.resources,
                    attributes=attributes,
                    driver="sim",
                    port_range=self.port_range,
                )
            )
        return configs


def _lean_workers(activity_pollers: int) -> contextlib.AbstractContextManager[Any]:
    """Make the agent module build its workers with ``activity_pollers`` pollers.

    :func:`run_agent` builds its own :class:`Worker` and takes no worker options;
    the process runs nothing but hollow agents, so swapping the class it calls
    for these agents' lifetime is enough and leaves the agent's code as it runs
    on a real host.
    """
    lean = functools.partial(
        Worker, activity_task_poller_behavior=PollerBehaviorSimpleMaximum(activity_pollers)
    )
    return mock.patch.object(agent_module, "Worker", lean)


async def run_hollow_agents(
    client: Client, settings: Settings, fleet: HollowFleet, stop: asyncio.Event
) -> None:
    """Run ``fleet``'s agents until ``stop`` is set.

    Agents start at ``fleet.starts_per_second``. An agent that fails (its worker
    could not start on a loaded server, say) is restarted after a backoff, as a
    host's service manager restarts a real one.
    """
    interval = 1.0 / fleet.starts_per_second if fleet.starts_per_second > 0 else 0.0

    async def one(config: AgentConfig, delay: float) -> None:
        backoff = RESTART_BACKOFF_SECONDS
        while not await _stopped(stop, delay):
            try:
                await run_agent(client, settings, config, stop)
            except Exception as err:  # as a host's service manager would, restart it
                log.warning("hollow agent %s failed (%r); restarting", config.agent_id, err)
                delay, backoff = backoff, min(backoff * 2, 60.0)
            else:
                return

    with _lean_workers(fleet.activity_pollers):
        configs = fleet.configs()
        log.info("starting %d hollow agents (%s...)", len(configs), fleet.prefix)
        await asyncio.gather(*(one(config, i * interval) for i, config in enumerate(configs)))


async def _stopped(stop: asyncio.Event, delay: float) -> bool:
    """Wait ``delay`` seconds, or less if ``stop`` is set; whether it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()
