"""A service job's own faults (issue 13, findings 1, 4 and 5).

* a workflow cancel stops every task (their supervise activities are
  cancelled and finish) before the run ends;
* a degraded service holding a kill still continues as new, and the held kill
  travels to the next run;
* ``task kill --shrink`` of a task already being killed lowers desired once;
* a retried ``service_rollout`` (and the same update sent again) makes one revision.

The dev server and the control worker are real; the agent is a fake in this
process (its tasks never exit; the first two report healthy), so the tests
control health exactly and take seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment
from titus_cluster import Cluster, eventually, fake_agent_worker

from titus_flow import Capacity, Container, Resources, ServiceJob, TcpCheck
from titus_flow.activities.services import ServiceActivities
from titus_flow.client import TitusClient, update_id
from titus_flow.config import load_settings
from titus_flow.contracts import (
    AttemptExit,
    KillTaskRequest,
    LaunchInput,
    LaunchResult,
    ScaleRequest,
    ServiceJobInput,
    ServiceRolloutInput,
    SuperviseInput,
    TaskHealth,
)
from titus_flow.lifecycle import TaskState
from titus_flow.spec import DisruptionBudget
from titus_flow.views import JobView
from titus_flow.workflows.service import ServiceJobWorkflow

HEALTHY_TASKS = 2  # tasks 0 and 1 turn healthy; replacements never do


@dataclass
class FakeAgent:
    """Launch and supervise activities whose tasks run until cancelled."""

    agent_id: str = field(default_factory=lambda: f"fake-{uuid.uuid4().hex[:8]}")
    supervising: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)  # supervise cancelled and finished

    @activity.defn(name="launch")
    async def launch(self, request: LaunchInput) -> LaunchResult:
        return LaunchResult(agent_id=self.agent_id, started_at=datetime.now(UTC))

    @activity.defn(name="supervise")
    async def supervise(self, request: SuperviseInput) -> AttemptExit:
        assert request.workflow_id is not None
        self.supervising.add(request.task_id)
        if int(request.task_id.rpartition("-")[2]) < HEALTHY_TASKS:
            handle = activity.client().get_workflow_handle(request.workflow_id)
            health = TaskHealth(
                task_id=request.task_id, attempt=1, healthy=True, at=datetime.now(UTC)
            )
            await handle.signal("task_health", health)
        try:
            while True:
                await asyncio.sleep(0.5)
                activity.heartbeat()
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is None or not details.not_found:  # a kill, not a hand-over
                self.stopped.add(request.task_id)
            raise


@pytest.fixture
def worker_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    cluster = cluster_factory()
    cluster.start_worker()
    return cluster


@pytest.fixture
async def fake_agent(worker_cluster: Cluster) -> AsyncIterator[tuple[Client, FakeAgent]]:
    agent = FakeAgent()
    activities = [agent.launch, agent.supervise]
    async with fake_agent_worker(worker_cluster, agent.agent_id, activities) as client:
        yield client, agent


def _job(name: str, desired: int = 2, max_unavailable: int = 1) -> ServiceJob:
    return ServiceJob(
        name=name,
        container=Container(image="busybox:latest", command="true", ports=["http"]),
        health_check=TcpCheck(port="http"),  # the fake agent reports health
        resources=Resources(cpu=0.1, memory=64),
        capacity=Capacity(min=0, desired=desired, max=8),
        disruption_budget=DisruptionBudget(max_unavailable=max_unavailable),
    )


async def _start(
    client: Client, cluster: Cluster, job: ServiceJob, history_limit: int = 10_000
) -> WorkflowHandle[Any, Any]:
    handle = await client.start_workflow(
        ServiceJobWorkflow.run,
        ServiceJobInput(job=job, submitted_at=datetime.now(UTC), history_limit=history_limit),
        id=f"{job.name}-{uuid.uuid4().hex[:8]}",
        task_queue=cluster.control_queue,
    )
    await _until(handle, lambda v: v.service is not None and v.service.healthy == HEALTHY_TASKS)
    return handle


async def _until(
    handle: WorkflowHandle[Any, Any], done: Callable[[JobView], bool], timeout: float = 60
) -> JobView:
    seen: list[JobView] = []

    async def check() -> bool:
        view: JobView = await handle.query(ServiceJobWorkflow.describe)
        seen.append(view)
        return done(view)

    await eventually(check, timeout, "the service to reach the expected state")
    return seen[-1]


def _live(view: JobView) -> Iterator[str]:
    return (t.id for t in view.tasks if t.state is not TaskState.FINISHED)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_cancelled_service_stops_every_task_before_it_ends(
    worker_cluster: Cluster, fake_agent: tuple[Client, FakeAgent]
) -> None:
    client, agent = fake_agent
    handle = await _start(client, worker_cluster, _job("cancelled"))
    await handle.cancel()
    await eventually(_closed(handle), 60, "the cancelled run to end")
    assert agent.supervising and agent.stopped == agent.supervising


def _closed(handle: WorkflowHandle[Any, Any]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await handle.describe()).close_time is not None

    return check


@pytest.mark.asyncio(loop_scope="session")
async def test_a_degraded_service_holding_a_kill_continues_as_new_and_keeps_it(
    worker_cluster: Cluster, fake_agent: tuple[Client, FakeAgent]
) -> None:
    client, _ = fake_agent
    handle = await _start(client, worker_cluster, _job("held"), history_limit=150)
    view = await _until(handle, lambda v: True)
    first, second = sorted(_live(view))
    # One task down (its replacement never turns healthy): the second kill is held.
    assert await handle.execute_update(ServiceJobWorkflow.kill_task, KillTaskRequest(task_id=first))
    held = await handle.execute_update(
        ServiceJobWorkflow.kill_task, KillTaskRequest(task_id=second)
    )
    assert held.startswith("waiting for the disruption budget")
    run = (await handle.describe()).run_id

    # Events the job must not run out of history for: health reports of a task
    # it no longer has (each one a signal and a workflow task).
    async def continued() -> bool:
        stale = TaskHealth(task_id=first, attempt=1, healthy=False, at=datetime.now(UTC))
        await asyncio.gather(*(handle.signal("task_health", stale) for _ in range(10)))
        return (await client.get_workflow_handle(handle.id).describe()).run_id != run

    await eventually(continued, 90, "the history to continue as new")
    latest = client.get_workflow_handle(handle.id)
    view = await _until(latest, lambda v: second in list(_live(v)))
    assert view.service is not None
    assert any(f"kill of {second} waits" in w for w in view.service.waiting)
    await latest.signal(ServiceJobWorkflow.kill)


@pytest.mark.asyncio(loop_scope="session")
async def test_shrinking_a_task_already_being_killed_lowers_desired_once(
    worker_cluster: Cluster, fake_agent: tuple[Client, FakeAgent]
) -> None:
    client, _ = fake_agent
    handle = await _start(client, worker_cluster, _job("shrink", desired=3, max_unavailable=0))
    view = await _until(handle, lambda v: True)
    victim = sorted(_live(view))[0]
    shrink = KillTaskRequest(task_id=victim, shrink=True)
    for _ in range(2):  # a retried command, or the same one typed twice
        await handle.execute_update(ServiceJobWorkflow.kill_task, shrink)
    view = await _until(handle, lambda v: True)
    assert view.service is not None and view.service.desired == 2
    await handle.signal(ServiceJobWorkflow.kill)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_retried_rollout_makes_one_revision(
    worker_cluster: Cluster, fake_agent: tuple[Client, FakeAgent]
) -> None:
    client, _ = fake_agent
    job = _job("rollout")
    handle = await _start(client, worker_cluster, job)
    titus = TitusClient(client, load_settings(environ=worker_cluster.env))
    update = job.model_copy(update={"labels": {"revision": "two"}})
    request = ServiceRolloutInput(job_id=handle.id, action="update", job=update)
    env = ActivityEnvironment()
    first = await env.run(ServiceActivities(titus).rollout, request)
    env.info = dataclasses.replace(env.info, attempt=2)  # the activity retried after a timeout
    again = await env.run(ServiceActivities(titus).rollout, request)
    # The same spec sent again by another caller (a command typed twice).
    typed_again = await titus.update_service(handle.id, update)
    view = await _until(handle, lambda v: True)
    assert first == again == typed_again == 2
    assert view.service is not None and view.service.revision == 2
    await handle.signal(ServiceJobWorkflow.kill)


def test_update_ids_are_derived_from_the_request() -> None:
    args = [ScaleRequest(desired=3)]
    assert update_id("j", "scale", args, "r1") == update_id("j", "scale", args, "r1")
    assert update_id("j", "scale", args, "r1") != update_id("j", "scale", args, "r2")
    assert update_id("j", "scale", args, "r1") != update_id("j", "scale", [ScaleRequest()], "r1")
    assert update_id("j", "scale", args) != update_id("j", "scale", args)  # two plain calls
