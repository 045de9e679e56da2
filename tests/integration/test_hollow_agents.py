"""Hollow agents (``titus-flow agent --hollow N``): a large job stays within Temporal's bounds.

Issue 11: the real control worker and the real agent code (on the sim driver,
in one process) run a 300-task job (three partitions of 100) on 30 agents; the job
must succeed and no history may pass 10,240 events, no payload 512 KiB. And a
hollow agent's task is killed through the real kill path. (bench/scale.py runs
the full sizes: 10,000 tasks on 1,000 agents.)
"""

from __future__ import annotations

import pytest
from titus_cluster import Cluster, ClusterFactory, eventually

from titus_flow import BatchJob, Container, Resources
from titus_flow.client import TitusClient
from titus_flow.history_stats import HISTORY_EVENTS_WARN, PAYLOAD_BYTES_WARN, history_stats
from titus_flow.lifecycle import FinishReason, JobState, TaskState

pytestmark = pytest.mark.asyncio(loop_scope="session")

PARTITION_SIZE = 100  # the default is 500: the same paths, at a fraction of the work
TASKS = 3 * PARTITION_SIZE
AGENTS = 30


async def hollow_cluster(
    cluster_factory: ClusterFactory, count: int
) -> tuple[Cluster, TitusClient]:
    """A control worker and ``count`` hollow agents of 2 cores each (20 tasks), in one
    process; returns once they have registered, with a client."""
    cluster = cluster_factory(TITUS_FLOW_PARTITION_SIZE=str(PARTITION_SIZE))
    cluster.start_worker()
    cluster.start(
        "hollow", "agent", "--hollow", str(count), "--id", cluster.agent_id("h"), "--cpu", "2"
    )
    return cluster, await cluster.wait_for_agents(count, timeout=90)


def job(name: str, tasks: int, command: str) -> BatchJob:
    """A batch job of ``tasks`` tiny simulated tasks."""
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=command),
        resources=Resources(cpu=0.1, memory=64, disk=0, network_mbps=0),
        instances=tasks,
    )


@pytest.mark.slow
async def test_a_large_job_on_hollow_agents_stays_within_temporal_bounds(
    cluster_factory: ClusterFactory,
) -> None:
    cluster, client = await hollow_cluster(cluster_factory, AGENTS)
    zones = {a.attributes.get("zone") for a in await client.agents()}
    assert zones == {"zone-a", "zone-b", "zone-c"}

    job_id = await client.submit(job("hollow", TASKS, "true"))
    view = await cluster.wait_for(job_id, timeout=240)

    assert view.state is JobState.SUCCEEDED, view.message
    assert view.counts() == {"Finished/normal": TASKS}
    assert {(t.attempts[-1].agent or "")[:-5] for t in view.tasks} == {cluster.agent_id("h")}
    stats = await history_stats(
        client.temporal, [job_id], query=f"TaskQueue = '{cluster.control_queue}'"
    )
    assert stats.runs > 1
    assert not stats.problems(HISTORY_EVENTS_WARN, PAYLOAD_BYTES_WARN), stats.problems()


async def test_job_kill_of_a_hollow_agents_task_ends_it_killed(
    cluster_factory: ClusterFactory,
) -> None:
    cluster, client = await hollow_cluster(cluster_factory, 2)
    job_id = await client.submit(job("hollow-kill", 1, "sleep 3600"))

    async def started() -> bool:
        return (await client.progress(job_id)).counts == {"Started": 1}

    await eventually(started, 60, "the task to start")
    killed = cluster.cli("job", "kill", job_id)
    assert killed.returncode == 0, killed.stderr
    view = await cluster.wait_for(job_id, timeout=60)

    assert view.state is JobState.KILLED, view.message
    [task] = view.tasks
    assert (task.state, task.reason) == (TaskState.FINISHED, FinishReason.KILLED)
    assert (task.attempts[-1].agent or "").startswith(cluster.agent_id("h"))
