"""A service job through 500 replacements: history is continued-as-new and the
job's state survives it (real dev server, fake agent activities)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from test_backoff_time_skipping import AGENT, CONTROL, _register_agent

from titus_flow import Capacity, Container, Resources, ServiceJob, TcpCheck
from titus_flow.activities.control import ControlActivities
from titus_flow.contracts import (
    AttemptExit,
    LaunchInput,
    LaunchResult,
    ScaleRequest,
    ServiceJobInput,
    SuperviseInput,
    TaskHealth,
    agent_task_queue,
)
from titus_flow.lifecycle import FinishReason, JobState
from titus_flow.worker import SANDBOX
from titus_flow.workflows.scheduler import SchedulerWorkflow
from titus_flow.workflows.service import ServiceJobWorkflow, crash_backoff


@activity.defn(name="launch")
async def launch(request: LaunchInput) -> LaunchResult:
    return LaunchResult(agent_id=AGENT, started_at=datetime.now(UTC))


@activity.defn(name="supervise")
async def supervise_healthy_then_exit(request: SuperviseInput) -> AttemptExit:
    """Each task turns healthy (so no crash-loop backoff) and then exits."""
    assert request.workflow_id is not None
    handle = activity.client().get_workflow_handle(request.workflow_id)
    await handle.signal(
        "task_health",
        TaskHealth(task_id=request.task_id, attempt=1, healthy=True, at=datetime.now(UTC)),
    )
    await asyncio.sleep(0.3)  # healthy for a moment: its signal lands before the exit
    return AttemptExit(
        reason=FinishReason.FAILED,
        exit_code=1,
        finished_at=datetime.now(UTC),
        message="exit 1",
        became_healthy=True,
    )


def test_crash_backoff_grows_and_is_capped() -> None:
    delays = [crash_backoff(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [0, 2, 4, 8]
    assert delays == sorted(delays)
    assert max(delays) == 300


@pytest.mark.asyncio(loop_scope="session")
async def test_five_hundred_replacements_continue_as_new_and_keep_state(dev_server: str) -> None:
    client = await Client.connect(dev_server, data_converter=pydantic_data_converter)
    if True:  # one block, as with a test environment
        control = Worker(
            client,
            task_queue=CONTROL,
            workflows=[ServiceJobWorkflow, SchedulerWorkflow],
            activities=ControlActivities(client).all(),
            workflow_runner=SANDBOX,  # as the control worker runs them
        )
        agent = Worker(
            client,
            task_queue=agent_task_queue(AGENT),
            activities=[launch, supervise_healthy_then_exit],
        )
        async with control, agent:
            await _register_agent(client)
            job = ServiceJob(
                name="churn",
                container=Container(image="busybox:latest", command="true", ports=["http"]),
                health_check=TcpCheck(port="http"),  # the fake agent reports healthy
                resources=Resources(cpu=0.1, memory=64),
                capacity=Capacity(min=1, desired=4, max=8),
            )
            handle = await client.start_workflow(
                ServiceJobWorkflow.run,
                ServiceJobInput(job=job, submitted_at=datetime.now(UTC), history_limit=1500),
                id=f"churn-{uuid.uuid4().hex[:8]}",
                task_queue=CONTROL,
            )
            first_run = handle.result_run_id
            await handle.execute_update(ServiceJobWorkflow.scale, ScaleRequest(desired=6))
            for _ in range(600):
                view = await handle.query(ServiceJobWorkflow.describe)
                replaced = max((t.index for t in view.tasks), default=0)
                if replaced >= 500:
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"only {replaced} tasks started")
            latest = await client.get_workflow_handle(handle.id).describe()
            await handle.signal(ServiceJobWorkflow.kill)
    assert latest.run_id != first_run  # the history was continued as new
    assert view.state in (JobState.RUNNING, JobState.DEGRADED, JobState.ACCEPTED)
    assert view.service is not None
    assert view.service.revision == 1 and view.service.desired == 6  # carried over
    assert len(view.tasks) <= 20 + 6  # finished tasks kept are bounded
