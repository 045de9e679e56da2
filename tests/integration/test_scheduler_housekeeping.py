"""The scheduler's housekeeping asks in bounded pages (issue 11), on the real dev server.

Agent liveness and the search for ended jobs are activities whose input once
held every agent's task queue and every requester: a payload that grew with the
cluster. With a page of 3, seven agents must be asked about in pages of 3, 3
and 1, every agent exactly once per round, and every agent stays active.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.worker import Worker
from titus_cluster import Cluster, eventually

from titus_flow import Resources
from titus_flow.client import ensure_scheduler
from titus_flow.cluster import agent_task_queue
from titus_flow.config import load_settings
from titus_flow.contracts import AgentInfo
from titus_flow.workflows import scheduler
from titus_flow.workflows.scheduler import SchedulerWorkflow

AGENTS = 7
PAGE = 3


async def test_liveness_is_asked_in_pages_of_bounded_size(
    cluster_factory: Callable[[], Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = cluster_factory()
    client = await cluster.client()
    settings = load_settings(environ=cluster.env)
    # The scheduler workflow is not sandboxed: the in-process worker sees these.
    monkeypatch.setattr(scheduler, "HOUSEKEEPING_PAGE", PAGE)
    monkeypatch.setattr(scheduler, "HOUSEKEEPING_EVERY", timedelta(seconds=1))
    pages: list[list[str]] = []

    @activity.defn(name="agent_pollers")
    async def agent_pollers(task_queues: list[str]) -> dict[str, float]:
        pages.append(task_queues)
        return dict.fromkeys(
            task_queues, activity.info().current_attempt_scheduled_time.timestamp()
        )

    @activity.defn(name="closed_workflows")
    async def closed_workflows(workflow_ids: list[str]) -> list[str]:
        return []

    queues = [agent_task_queue(cluster.agent_id(f"a{i}")) for i in range(AGENTS)]
    async with Worker(
        client.temporal,
        task_queue=cluster.control_queue,
        workflows=[SchedulerWorkflow],
        activities=[agent_pollers, closed_workflows],
    ):
        for i in range(AGENTS):
            agent_id = cluster.agent_id(f"a{i}")
            info = AgentInfo(
                agent_id=agent_id,
                task_queue=agent_task_queue(agent_id),
                resources=Resources(cpu=1, memory="1Gi"),
            )
            await ensure_scheduler(client.temporal, settings, info)

        async def two_rounds() -> bool:
            return len(pages) >= 6

        await eventually(two_rounds, 60, "two rounds of liveness pages")
        first, second = pages[:3], pages[3:6]
        for round_ in (first, second):
            assert [len(p) for p in round_] == [3, 3, 1]
            assert sorted(q for p in round_ for q in p) == sorted(queues)

        states = {a.agent_id: a.state for a in await client.agents()}
        assert states == {cluster.agent_id(f"a{i}"): "active" for i in range(AGENTS)}
