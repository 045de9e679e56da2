"""No container outlives its job on a real agent and Docker (issue 13, finding 1).

Terminating a job's workflow (no cleanup code of the job runs) must still
leave no container: the agent's ``supervise`` hears ``not_found`` and removes
it, and the periodic reconcile (every 2 s here) catches anything else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Container, Resources
from titus_flow.lifecycle import TaskState

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


async def test_terminating_a_job_leaves_no_container(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    cluster.env["TITUS_FLOW_RECONCILE_SECONDS"] = "2"
    cluster.start_worker()
    cluster.start_agent("local", "--cpu", "2", "--memory", "2Gi")
    client = await cluster.wait_for_agents(1)
    job = BatchJob(
        name="orphaned",
        instances=2,
        container=Container(image="busybox:latest", command=["sleep", "300"]),
        resources=Resources(cpu=0.1, memory=32),
    )
    job_id = await client.submit(job)

    async def running() -> bool:
        view = await client.describe(job_id)
        return sum(t.state is TaskState.STARTED for t in view.tasks) == 2

    await eventually(running, 90, "both tasks to start")
    assert len(cluster.containers()) == 2

    await client.temporal.get_workflow_handle(job_id).terminate("test: no cleanup runs")

    async def gone() -> bool:
        return not cluster.containers()

    await eventually(gone, 60, "the agent to remove the terminated job's containers")
    # The reason, logged (the whole log: cluster.logs() keeps only each file's tail).
    agent_log = (cluster.home / "logs" / "agent-local.log").read_text()
    assert f"job {job_id} is no longer running" in agent_log
