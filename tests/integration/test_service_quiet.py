"""A service job's history grows with what happens, not with time (issue 18, item 7).

Real dev server, control worker and process-driver agent. The previous release
reconciled every 5 s whether or not anything had changed: an idle one-task
service added about 60 events a minute, most of its history timers. Now the
loop wakes on changes (signals, updates, activity results) and sets a timer
only for a decision the clock makes, for exactly that moment.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Container, ExecCheck, Resources, ServiceJob
from titus_flow.client import TitusClient
from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.lifecycle import TaskState
from titus_flow.worker import SANDBOX
from titus_flow.workflows.service import ServiceJobWorkflow, crash_backoff

pytestmark = pytest.mark.asyncio(loop_scope="session")

SMALL = Resources(cpu=0.01, memory=8, disk=0, network_mbps=0)
# The bounded idle window this test is about (the previous release: 5 timers in it).
IDLE_SECONDS = 25
# Events an idle window may still add (none are expected).
IDLE_EVENTS_ALLOWED = 3


@pytest.fixture
def proc_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A control worker and a process-driver agent."""
    cluster = cluster_factory()
    cluster.start_worker()
    cluster.start_agent("proc", "--driver", "process", "--cpu", "2", "--memory", "2Gi")
    return cluster


def service(name: str, command: list[str], **fields: object) -> ServiceJob:
    """A one-task service job running ``command`` as a local process."""
    return ServiceJob(
        name=name,
        container=Container(image="busybox:latest", command=command),
        resources=SMALL,
        capacity=Capacity(min=0, desired=1, max=2),
        **fields,  # type: ignore[arg-type]
    )


async def history_of(client: TitusClient, job_id: str) -> WorkflowHistory:
    """The job workflow's history (its current run)."""
    return await client.temporal.get_workflow_handle(job_id).fetch_history()


def timers_started(history: WorkflowHistory) -> int:
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)


async def kill_and_replay(cluster: Cluster, client: TitusClient, job_id: str) -> WorkflowHistory:
    """Kill the job and replay its whole history through the workflow code."""
    await client.kill(job_id)
    await cluster.wait_for(job_id, timeout=60)
    history = await history_of(client, job_id)
    replayer = Replayer(
        workflows=[ServiceJobWorkflow],
        data_converter=WORKER_DATA_CONVERTER,
        workflow_runner=SANDBOX,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    return history


async def test_idle_service_adds_no_history(proc_cluster: Cluster) -> None:
    client = await proc_cluster.client()
    # A health check probed every second: only its changes reach the job.
    job_id = await client.submit(
        service("quiet", ["sleep", "600"], health_check=ExecCheck(command="true", interval="1s"))
    )
    try:
        await client.wait_healthy(job_id, timeout=60)
        before = await history_of(client, job_id)
        await asyncio.sleep(IDLE_SECONDS)  # the idle window under test
        after = await history_of(client, job_id)
        view = await client.describe(job_id)
    finally:
        history = await kill_and_replay(proc_cluster, client, job_id)
    assert view.healthy_tasks() == 1 and len(view.tasks) == 1, view  # idle indeed
    added = after.events[len(before.events) :]
    assert timers_started(after) == timers_started(before), [e.event_type for e in added]
    assert len(added) <= IDLE_EVENTS_ALLOWED, [e.event_type for e in added]
    # A kill is a change: the job still ends at once.
    assert len(history.events) - len(after.events) < 40


async def test_crash_loop_sleeps_exactly_until_each_backoff_ends(proc_cluster: Cluster) -> None:
    client = await proc_cluster.client()
    job_id = await client.submit(service("crashy", ["sh", "-c", "exit 1"]))
    try:

        async def four_failed() -> bool:
            view = await client.describe(job_id)
            return sum(1 for t in view.tasks if t.state is TaskState.FINISHED) >= 4

        await eventually(four_failed, 60, "four tasks to fail")
        view = await client.describe(job_id)
        assert "crash-loop backoff: next start in" in view.message, view.message
    finally:
        history = await kill_and_replay(proc_cluster, client, job_id)
    tasks = sorted((t for t in view.tasks if t.attempts), key=lambda t: t.index)
    gaps = []
    for failures, (ended, started) in enumerate(itertools.pairwise(tasks), 1):
        finished_at, launched_at = ended.attempts[0].finished_at, started.attempts[0].launched_at
        assert finished_at is not None and launched_at is not None
        gap = launched_at - finished_at
        gaps.append(gap)
        # Never before the backoff ends, and soon after (a placement round trip).
        assert crash_backoff(failures) <= gap < crash_backoff(failures) + timedelta(seconds=3), gaps
    # One timer per backoff (2 s, 4 s, 8 s, and the one the kill cut short),
    # not one every few seconds while it runs.
    backoffs = sum(1 for n in range(1, len(tasks) + 1) if crash_backoff(n) > timedelta(0))
    assert timers_started(history) <= backoffs, (timers_started(history), backoffs)
