"""Backoffs of minutes, on the time-skipping test server with fake agent activities.

The job and scheduler workflows are the real ones; only the agent's activities
are replaced (launch succeeds, supervise fails twice then succeeds), so the
durable timers between attempts can be checked without waiting for them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from titus_cluster import time_skipping_server

from titus_flow import BatchJob, Container, ExponentialBackoff, Resources, Retry
from titus_flow.activities.control import ControlActivities
from titus_flow.cluster import agent_task_queue, scheduler_workflow_id
from titus_flow.contracts import (
    AgentInfo,
    AttemptExit,
    BatchJobInput,
    LaunchInput,
    LaunchResult,
    SuperviseInput,
)
from titus_flow.ledger import LedgerState
from titus_flow.lifecycle import FinishReason, JobState
from titus_flow.views import JobView
from titus_flow.worker import SANDBOX
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.scheduler import SchedulerWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTROL = "ts-control"
AGENT = "fake-agent"


@activity.defn(name="launch")
async def fake_launch(request: LaunchInput) -> LaunchResult:
    return LaunchResult(agent_id=AGENT, started_at=datetime.now(UTC))


@activity.defn(name="supervise")
async def fake_supervise(request: SuperviseInput) -> AttemptExit:
    code = 0 if request.attempt >= 3 else 1
    return AttemptExit(
        reason=FinishReason.NORMAL if code == 0 else FinishReason.FAILED,
        exit_code=code,
        finished_at=datetime.now(UTC),
    )


async def _register_agent(client: Client) -> None:
    await client.start_workflow(
        SchedulerWorkflow.run,
        # Skipped time would outrun the fake agent's (absent) heartbeats.
        LedgerState(agent_silence_seconds=10**9),
        id=scheduler_workflow_id(CONTROL),
        task_queue=CONTROL,
        start_signal="register_agent",
        start_signal_args=[
            AgentInfo(
                agent_id=AGENT,
                task_queue=agent_task_queue(AGENT),
                resources=Resources(cpu=4, memory=4096, disk="100Gi", network_mbps=100_000),
            )
        ],
    )


async def test_minutes_long_exponential_backoff_uses_durable_timers() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    async with env:
        client = env.client
        control = Worker(
            client,
            task_queue=CONTROL,
            workflows=[BatchJobWorkflow, SchedulerWorkflow],
            activities=ControlActivities(client).all(),
            workflow_runner=SANDBOX,  # as the control worker runs them
        )
        agent = Worker(
            client, task_queue=agent_task_queue(AGENT), activities=[fake_launch, fake_supervise]
        )
        async with control, agent:
            await _register_agent(client)
            job = BatchJob(
                name="slow-backoff",
                container=Container(image="busybox:latest", command="true"),
                resources=Resources(cpu=1, memory=64),
                retry=Retry(
                    attempts=3,
                    backoff=ExponentialBackoff(initial="2m", max="1h", multiplier=2),
                ),
            )
            started = datetime.now(UTC)
            # Bounded: a time-skipping server that stalls (it did once, in a loaded
            # full run) must fail this test, not hang the test command.
            view: JobView = await asyncio.wait_for(
                client.execute_workflow(
                    BatchJobWorkflow.run,
                    BatchJobInput(job=job, submitted_at=started),
                    id="slow-backoff-1",
                    task_queue=CONTROL,
                ),
                timeout=120,
            )
            wall = datetime.now(UTC) - started
    assert view.state is JobState.SUCCEEDED, view
    attempts = view.tasks[0].attempts
    assert [a.exit_code for a in attempts] == [1, 1, 0]
    gaps = [
        (attempts[i + 1].launched_at - attempts[i].finished_at)  # type: ignore[operator]
        for i in range(2)
    ]
    assert timedelta(minutes=2) <= gaps[0] < timedelta(minutes=2, seconds=30), gaps
    assert timedelta(minutes=4) <= gaps[1] < timedelta(minutes=4, seconds=30), gaps
    assert wall < timedelta(minutes=1)  # the six minutes of backoff were skipped
