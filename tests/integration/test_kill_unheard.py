"""A kill that its agent never heard still stops the container (issue 13, chaos seed 1933835013).

An agent dies while it supervises; a new agent process comes up on the same
queue and adopts the containers. A kill now cancels the supervise activity
the dead process held: the cancel can only reach it through a heartbeat, so the
activity times out instead, and the server never retries a cancelled activity.
The job must still stop the container (a ``stop`` activity on the agent's
queue), not release the capacity and leave it running for the next reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Capacity, Container, Resources, ServiceJob
from titus_flow.lifecycle import JobState

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.docker]

SMALL = Resources(cpu=0.1, memory=32, disk=0, network_mbps=0)
SLEEP = Container(image="busybox:latest", command=["sleep", "600"])
AGENT = ("--driver", "docker", "--cpu", "1", "--memory", "1Gi")
SERVING = "serving titus-agent-"  # the agent's line once its start-up reconcile is done


def _serving_lines(cluster: Cluster) -> int:
    log = cluster.home / "logs" / "agent-a.log"
    return log.read_text(errors="replace").count(SERVING) if log.exists() else 0


async def test_a_kill_sent_while_the_agent_was_replaced_stops_its_containers(
    cluster_factory: Callable[[], Cluster],
) -> None:
    # No periodic reconcile during the test: it would hide a container the kill left.
    cluster = cluster_factory()
    cluster.env["TITUS_FLOW_RECONCILE_SECONDS"] = "3600"
    cluster.start_worker()
    cluster.start_agent("a", *AGENT)
    client = await cluster.wait_for_agents(1)
    web = await client.submit(
        ServiceJob(
            name="unheard-web",
            container=SLEEP,
            resources=SMALL,
            capacity=Capacity(min=0, desired=1, max=1),
        )
    )
    batch = await client.submit(BatchJob(name="unheard-batch", container=SLEEP, resources=SMALL))
    await client.wait_healthy(web, timeout=60)

    async def both_started() -> bool:
        return len(await asyncio.to_thread(cluster.containers)) == 2

    await eventually(both_started, 60, "the service and batch containers to run")

    # The agent dies mid-supervise; a new process adopts both containers. Its
    # predecessor's supervise activities stay "started" until their heartbeat
    # timeout (10 s): the kills below cancel those.
    cluster.kill9("agent-a")
    cluster.start_agent("a", *AGENT)

    async def restarted() -> bool:
        return _serving_lines(cluster) >= 2

    await eventually(restarted, 60, "the new agent process to serve its queue")
    assert len(await asyncio.to_thread(cluster.containers)) == 2  # adopted, not removed
    await client.kill(web)
    await client.kill(batch)

    async def gone() -> bool:
        return not await asyncio.to_thread(cluster.containers)

    try:
        await eventually(gone, 60, "the killed jobs' containers to be removed")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{cluster.logs()}") from None
    for job_id in (web, batch):
        view = await cluster.wait_for(job_id, timeout=30)
        assert view.state is JobState.KILLED, view.model_dump_json()[:2000]
    (agent,) = await client.agents()
    assert agent.task_count == 0 and agent.reserved_cpu == 0
