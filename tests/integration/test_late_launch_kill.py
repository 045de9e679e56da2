"""A kill that arrives while a launch completes stops the container (issue 13, item 1).

The job cancels the launch activity, but the agent finishes the launch before
it hears the cancel (it heartbeats between steps): the activity completes and
the container runs. The job must then stop it with the agent's ``stop``
activity and end Killed, for batch and service jobs alike; the previous
release's batch workflow supervised the task as if no kill had come.

The agent is scripted (its launch ignores the cancel; supervise runs until
cancelled) so that the race is won by the launch every time; the real agent's
side of ``stop`` is covered by ``test_kill_unheard.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from temporalio import activity
from titus_cluster import Cluster, eventually, fake_agent_worker

from titus_flow import BatchJob, Capacity, Container, Resources, ServiceJob
from titus_flow.client import TitusClient
from titus_flow.config import load_settings
from titus_flow.contracts import (
    AttemptExit,
    LaunchInput,
    LaunchResult,
    StopInput,
    SuperviseInput,
)
from titus_flow.lifecycle import FinishReason, JobState, TaskState

pytestmark = pytest.mark.asyncio(loop_scope="session")

SMALL = Resources(cpu=0.1, memory=32, disk=0, network_mbps=0)
SLEEP = Container(image="busybox:latest", command=["sleep", "600"])


@dataclass
class SlowLaunchAgent:
    """An agent whose launch completes only when the test says, whatever the job asked."""

    agent_id: str = field(default_factory=lambda: f"late-{uuid.uuid4().hex[:8]}")
    launching: asyncio.Event = field(default_factory=asyncio.Event)
    finish_launch: asyncio.Event = field(default_factory=asyncio.Event)
    supervised: list[str] = field(default_factory=list)
    stopped: list[tuple[str, int]] = field(default_factory=list)

    @activity.defn(name="launch")
    async def launch(self, request: LaunchInput) -> LaunchResult:
        self.launching.set()
        await self.finish_launch.wait()  # no heartbeat: the cancel cannot reach it
        return LaunchResult(agent_id=self.agent_id, started_at=datetime.now(UTC))

    @activity.defn(name="supervise")
    async def supervise(self, request: SuperviseInput) -> AttemptExit:
        self.supervised.append(request.task_id)
        while True:
            await asyncio.sleep(0.5)
            activity.heartbeat()

    @activity.defn(name="stop")
    async def stop(self, request: StopInput) -> None:
        self.stopped.append((request.task_id, request.attempt))


def _batch() -> BatchJob:
    return BatchJob(name="late-batch", container=SLEEP, resources=SMALL)


def _service() -> ServiceJob:
    return ServiceJob(
        name="late-web", container=SLEEP, resources=SMALL, capacity=Capacity(desired=1, max=1)
    )


@pytest.mark.parametrize("make_job", [_batch, _service], ids=["batch", "service"])
async def test_a_launch_that_completes_after_its_kill_is_stopped(
    cluster_factory: Callable[[], Cluster], make_job: Callable[[], BatchJob | ServiceJob]
) -> None:
    cluster = cluster_factory()
    cluster.start_worker()
    agent = SlowLaunchAgent()
    activities = [agent.launch, agent.supervise, agent.stop]
    async with fake_agent_worker(cluster, agent.agent_id, activities) as client:
        titus = TitusClient(client, load_settings(environ=cluster.env))
        job_id = await titus.submit(make_job())
        await asyncio.wait_for(agent.launching.wait(), 60)
        await titus.kill(job_id)

        async def kill_recorded() -> bool:
            view = await titus.describe(job_id)
            return view.state is JobState.KILL_INITIATED or any(
                t.state is TaskState.KILL_INITIATED for t in view.tasks
            )

        await eventually(kill_recorded, 30, "the job to record the kill")
        agent.finish_launch.set()  # the launch wins: its container now "runs"

        view = await asyncio.wait_for(titus.wait(job_id), 60)
    assert view.state is JobState.KILLED, view.model_dump_json()[:2000]
    (task,) = view.tasks
    assert agent.stopped == [(task.id, 1)]
    assert (task.state, task.reason) == (TaskState.FINISHED, FinishReason.KILLED)
    assert agent.supervised == []  # stopped, never watched as if it ran
