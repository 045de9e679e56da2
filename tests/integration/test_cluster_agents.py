"""Three agents as cluster members (issue 5): spread by constraints, agent loss, drain.

Real dev server, control worker and three agent processes on one machine, each
with its own id and small capacity. Tasks are local processes (process driver),
so placement and the agents' lifecycle are what is under test, except in the
agent-loss test: there containers must outlive their agent, as on a real host.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import pytest
from titus_cluster import Cluster, eventually

from titus_flow import (
    BatchJob,
    Capacity,
    Constraints,
    ConstraintSet,
    Container,
    DisruptionBudget,
    Resources,
    ServiceJob,
)
from titus_flow.client import TitusClient
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.runtime.base import LABEL_AGENT_ID
from titus_flow.views import JobView

pytestmark = pytest.mark.asyncio(loop_scope="session")

AGENTS = ("a", "b", "c")
# Each agent has 1 core; a task takes half of one, so two fit per agent.
HALF_CORE = Resources(cpu=0.5, memory=32, disk=0, network_mbps=0)


async def three_agents(
    cluster_factory: Callable[[], Cluster], driver: str = "process"
) -> tuple[Cluster, TitusClient]:
    cluster = cluster_factory()
    cluster.start_worker()
    for name in AGENTS:
        agent_options = ("--cpu", "1", "--memory", "1Gi")
        cluster.start_agent(name, "--driver", driver, *agent_options)
    return cluster, await cluster.wait_for_agents(len(AGENTS))


def containers_of(agent_id: str) -> list[str]:
    """Names of the Docker containers an agent made (running or not)."""
    listing = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label={LABEL_AGENT_ID}={agent_id}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.split()


def service(name: str, desired: int = 3) -> ServiceJob:
    """Long-running tasks, spread over agents where possible (soft unique_host)."""
    return ServiceJob(
        name=name,
        container=Container(image="busybox:latest", command=["sleep", "600"]),
        resources=HALF_CORE,
        capacity=Capacity(min=1, desired=desired, max=desired + 2),
        constraints=Constraints(soft=ConstraintSet(unique_host=True)),
        disruption_budget=DisruptionBudget(max_unavailable=1),
    )


def agents_of(view: JobView) -> dict[str, str]:
    """Live task id -> the agent it runs on."""
    return {t.id: t.agent or "" for t in view.live_tasks()}


async def test_unique_host_spreads_tasks_and_the_rest_start_when_capacity_frees(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster, client = await three_agents(cluster_factory)
    # 4 tasks that only fit 2 per agent, but unique_host allows 1 per agent.
    job_id = await client.submit(
        BatchJob(
            name="spread",
            container=Container(image="busybox:latest", command=["sleep", "4"]),
            resources=HALF_CORE,
            instances=4,
            constraints=Constraints(hard=ConstraintSet(unique_host=True)),
        )
    )

    async def three_running_one_waiting() -> bool:
        view = await client.describe(job_id)
        running = [t for t in view.tasks if t.state is TaskState.STARTED]
        waiting = [t for t in view.tasks if t.state is TaskState.ACCEPTED and t.pending_reason]
        return len(running) == 3 and len(waiting) == 1

    await eventually(three_running_one_waiting, 60, "3 tasks Started, 1 Accepted with a reason")
    view = await client.describe(job_id)
    running = [t for t in view.tasks if t.state is TaskState.STARTED]
    assert sorted(t.agent or "" for t in running) == sorted(map(cluster.agent_id, AGENTS))
    (waiting,) = [t for t in view.tasks if t.state is TaskState.ACCEPTED]
    assert "unique_host" in (waiting.pending_reason or ""), waiting.pending_reason

    view = await cluster.wait_for(job_id, timeout=90)  # the 4th starts once one ends
    assert view.state is JobState.SUCCEEDED
    first_three = [t.attempts[-1] for t in view.tasks if t.index != waiting.index]
    fourth = next(t for t in view.tasks if t.index == waiting.index).attempts[-1]
    first_end = min(a.finished_at for a in first_three if a.finished_at)
    assert fourth.started_at is not None and fourth.started_at >= first_end


@pytest.mark.slow
@pytest.mark.docker  # containers outlive a killed agent, as on a real host
async def test_killed_agent_is_lost_its_tasks_move_and_on_return_it_removes_them(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster, client = await three_agents(cluster_factory, driver="docker")
    job_id = await client.submit(service("survivor"))
    view = await client.wait_healthy(job_id, timeout=60)
    placed = agents_of(view)
    assert sorted(placed.values()) == sorted(map(cluster.agent_id, AGENTS))  # one each
    dead = cluster.agent_id("b")

    cluster.kill9("agent-b")
    lost_at = asyncio.get_running_loop().time()

    async def back_to_desired_elsewhere() -> bool:
        view = await client.describe(job_id)
        live = agents_of(view)
        return view.healthy_tasks() == 3 and dead not in live.values()

    # The agent is declared lost after 45 s of silence; its tasks' supervise
    # heartbeats time out about then too, and one iteration places them again.
    try:
        await eventually(back_to_desired_elsewhere, 120, "3 healthy tasks on the 2 live agents")
    except AssertionError as err:
        view = await client.describe(job_id)
        raise AssertionError(f"{err}\n{view.model_dump_json(indent=1)}\n{cluster.logs()}") from None
    assert asyncio.get_running_loop().time() - lost_at < 120
    view = await client.describe(job_id)
    moved = [t for t in view.tasks if t.agent == dead]
    assert moved and all(t.reason is FinishReason.LOST for t in moved), moved

    agents = {a.agent_id: a for a in await client.agents()}
    assert agents[dead].state == "lost"
    assert agents[dead].tasks == [] and agents[dead].reserved_cpu == 0  # nothing held

    # The dead agent's container still runs (the engine outlived the agent).
    # When the agent comes back it removes it: its task was moved away.
    assert containers_of(dead), "expected the lost agent's container to still exist"
    cluster.start_agent("b", "--driver", "docker", "--cpu", "1", "--memory", "1Gi")

    async def orphans_removed() -> bool:
        return not await asyncio.to_thread(containers_of, dead)

    await eventually(orphans_removed, 60, f"agent {dead} to remove its moved tasks' containers")
    assert (await client.describe(job_id)).healthy_tasks() == 3  # nothing else disturbed
    await client.kill(job_id)


async def test_drain_moves_service_tasks_within_the_disruption_budget(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster, client = await three_agents(cluster_factory)
    job_id = await client.submit(service("mover"))
    view = await client.wait_healthy(job_id, timeout=60)
    drained = cluster.agent_id("a")
    assert drained in agents_of(view).values()

    await client.drain_agent(drained)
    lowest_healthy = 3
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        view = await client.describe(job_id)
        lowest_healthy = min(lowest_healthy, view.healthy_tasks())
        if drained not in agents_of(view).values() and view.healthy_tasks() == 3:
            break
        assert asyncio.get_running_loop().time() < deadline, view.model_dump_json(indent=1)
        await asyncio.sleep(0.2)

    # The budget allows 1 unavailable; the move starts the replacement first.
    assert lowest_healthy >= 3 - 1
    moved = [t for t in view.tasks if t.agent == drained]
    assert len(moved) == 1 and moved[0].reason is FinishReason.KILLED
    assert "draining" in moved[0].message
    agents = {a.agent_id: a for a in await client.agents()}
    assert agents[drained].state == "draining" and agents[drained].tasks == []
    await client.kill(job_id)
