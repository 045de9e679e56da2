"""A service job through 250 replacements: history is continued-as-new and
the job's state survives it.

The dev server and the control worker (its own process, as users run it) are
real; only the agent's activities are fakes in this process, so 250 task
lifecycles take half a minute instead of 250 container starts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from titus_cluster import Cluster, fake_agent_worker

from titus_flow import Capacity, Container, Resources, ServiceJob, TcpCheck
from titus_flow.contracts import (
    AttemptExit,
    LaunchInput,
    LaunchResult,
    ScaleRequest,
    ServiceJobInput,
    SuperviseInput,
    TaskHealth,
)
from titus_flow.lifecycle import FinishReason, JobState
from titus_flow.views import JobView
from titus_flow.workflows.service import ServiceJobWorkflow, crash_backoff

AGENT = "fake-agent"
REPLACEMENTS = 250  # with a 600-event limit: about four continue-as-news


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


async def _describe(handle: WorkflowHandle[Any, Any]) -> JobView | None:
    """The job's view, or None while a query cannot be answered right now.

    On a loaded 2-core machine a workflow task can miss Temporal's 2 s deadlock
    deadline; the server retries it and a query meanwhile times out. That is a
    hiccup of the poll, not of the job.
    """
    try:
        view: JobView = await handle.query(ServiceJobWorkflow.describe)
        return view
    except RPCError:
        return None


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="session")
async def test_many_replacements_continue_as_new_and_keep_state(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    cluster.start_worker()
    async with fake_agent_worker(cluster, AGENT, [launch, supervise_healthy_then_exit]) as client:
        job = ServiceJob(
            name="churn",
            container=Container(image="busybox:latest", command="true", ports=["http"]),
            health_check=TcpCheck(port="http"),  # the fake agent reports healthy
            resources=Resources(cpu=0.1, memory=64),
            capacity=Capacity(min=1, desired=4, max=8),
        )
        handle = await client.start_workflow(
            ServiceJobWorkflow.run,
            ServiceJobInput(job=job, submitted_at=datetime.now(UTC), history_limit=600),
            id=f"churn-{uuid.uuid4().hex[:8]}",
            task_queue=cluster.control_queue,
        )
        first_run = handle.result_run_id
        await handle.execute_update(ServiceJobWorkflow.scale, ScaleRequest(desired=6))
        view: JobView | None = None
        replaced = 0
        for _ in range(600):
            view = await _describe(handle) or view
            replaced = max((t.index for t in view.tasks), default=0) if view else 0
            if replaced >= REPLACEMENTS:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"only {replaced} tasks started\n{cluster.logs()}")
        latest = await client.get_workflow_handle(handle.id).describe()
        await handle.signal(ServiceJobWorkflow.kill)
    assert view is not None
    assert latest.run_id != first_run  # the history was continued as new
    assert view.state in (JobState.RUNNING, JobState.DEGRADED, JobState.ACCEPTED)
    assert view.service is not None
    assert view.service.revision == 1 and view.service.desired == 6  # carried over
    assert len(view.tasks) <= 20 + 6  # finished tasks kept are bounded
