"""A service job's autoscaling on the time-skipping test server: evaluation, cooldown, pause.

The service job and scheduler workflows are the real ones; no agent runs, so
the tasks a decision asks for stay pending: the test reads desired, the
decisions and the events, which is what autoscaling changes. Timers of the
evaluation loop are skipped, not waited for.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from titus_cluster import time_skipping_server

from titus_flow import Capacity, Container, Resources, ServiceJob
from titus_flow.activities.control import ControlActivities
from titus_flow.client import TitusClient
from titus_flow.cluster import scheduler_workflow_id
from titus_flow.config import Settings
from titus_flow.contracts import ServiceJobInput
from titus_flow.contracts.autoscaling import AutoscalingView
from titus_flow.contracts.metric_reports import MetricReport, MetricSample
from titus_flow.errors import UserError
from titus_flow.events import EventQuery
from titus_flow.ledger import LedgerState
from titus_flow.spec import Autoscaling, StepPolicy
from titus_flow.worker import SANDBOX
from titus_flow.workflows.scheduler import SchedulerWorkflow
from titus_flow.workflows.service import ServiceJobWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTROL = "ts-autoscaling"
QUEUE_METRIC = "custom:queue"

# Two tasks more at a queue of 10 or more, one less below 2; 30 s cooldown.
QUEUE_STEPS = StepPolicy.model_validate(
    {
        "name": "queue",
        "metric": QUEUE_METRIC,
        "threshold": 10,
        "cooldown": "30s",
        "steps": [{"lower": 0, "adjustment": 2}],
    }
)
QUEUE_LOW = StepPolicy.model_validate(
    {
        "name": "queue-low",
        "metric": QUEUE_METRIC,
        "threshold": 2,
        "cooldown": "30s",
        "steps": [{"upper": 0, "adjustment": -1}],
    }
)


def service(paused: bool = False) -> ServiceJob:
    """A service of 0..4 tasks whose queue policies evaluate every 5 s over 10 s."""
    return ServiceJob(
        name="queue-worker",
        container=Container(image="busybox:latest", command="sleep 1d"),
        resources=Resources(cpu=1, memory=64),
        capacity=Capacity(min=0, desired=0, max=4),
        autoscaling=Autoscaling(
            policies=[QUEUE_STEPS, QUEUE_LOW], interval="5s", window="10s", paused=paused
        ),
    )


async def push(env: WorkflowEnvironment, titus: TitusClient, job_id: str, value: float) -> None:
    """One sample of the queue metric, at the test server's (skipped) time."""
    at = await env.get_current_time()
    sample = MetricSample(metric=QUEUE_METRIC, value=value, at=at)
    await titus.report_metrics(job_id, MetricReport(source="test", samples=[sample]))


async def view(handle: WorkflowHandle[ServiceJobWorkflow, object]) -> AutoscalingView:
    return await handle.query(ServiceJobWorkflow.autoscaling)


async def test_policies_scale_out_hold_in_cooldown_scale_in_and_pause() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    async with env:
        client = env.client
        titus = TitusClient(client, Settings(control_task_queue=CONTROL))
        worker = Worker(
            client,
            task_queue=CONTROL,
            workflows=[ServiceJobWorkflow, SchedulerWorkflow],
            activities=ControlActivities(client).all(),
            workflow_runner=SANDBOX,
        )
        async with worker:
            await client.start_workflow(
                SchedulerWorkflow.run,
                LedgerState(agent_silence_seconds=10**9),
                id=scheduler_workflow_id(CONTROL),
                task_queue=CONTROL,
            )
            handle = await client.start_workflow(
                ServiceJobWorkflow.run,
                # A low history limit: the job continues as new after ~200 events (40 evaluations).
                ServiceJobInput(job=service(), submitted_at=datetime.now(UTC), history_limit=10),
                id="queue-worker-1",
                task_queue=CONTROL,
            )
            job_id = handle.id
            shown = await view(handle)
            assert shown.enabled and not shown.paused and shown.desired == 0
            assert [p.name for p in shown.policies] == ["queue", "queue-low"]

            # A queue of 15: +2 at the next evaluation.
            await push(env, titus, job_id, 15)
            await env.sleep(timedelta(seconds=6))
            shown = await view(handle)
            assert shown.desired == 2, shown.decisions
            assert shown.metrics == {QUEUE_METRIC: 15}
            change = shown.decisions[-1]
            assert (change.old_desired, change.new_desired, change.policy) == (0, 2, "queue")
            assert change.metric_value == 15

            # Still 15 within the cooldown: no larger step, so no change.
            await push(env, titus, job_id, 15)
            await env.sleep(timedelta(seconds=5))
            shown = await view(handle)
            assert shown.desired == 2, shown.decisions
            assert not shown.decisions[-1].changed

            # Low queue once the cooldown is over: one task less per evaluation.
            await env.sleep(timedelta(seconds=25))
            await push(env, titus, job_id, 0)
            await env.sleep(timedelta(seconds=5))
            shown = await view(handle)
            assert shown.desired == 1, shown.decisions
            assert shown.decisions[-1].policy == "queue-low"

            # Paused: the low queue changes nothing any more.
            assert await titus.set_autoscaling_paused(job_id, True) is True
            await env.sleep(timedelta(seconds=35))
            await push(env, titus, job_id, 0)
            await env.sleep(timedelta(seconds=5))
            shown = await view(handle)
            assert shown.paused and shown.held == "autoscaling is paused"
            assert shown.desired == 1, shown.decisions
            assert shown.decisions[-1].reason.startswith("paused")

            # Resumed: it goes on.
            assert await titus.set_autoscaling_paused(job_id, False) is False
            await push(env, titus, job_id, 0)
            await env.sleep(timedelta(seconds=5))
            assert (await view(handle)).desired == 0

            changes = [d for d in (await view(handle)).decisions if d.changed]
            assert [(d.old_desired, d.new_desired) for d in changes] == [(0, 2), (2, 1), (1, 0)]
            events = await handle.query(ServiceJobWorkflow.events, EventQuery(limit=500))
            texts = [e.message for e in events.events if "autoscaling" in e.message]
            assert any("desired 0 -> 2 by queue" in t for t in texts), texts
            assert any("paused by request" in t for t in texts), texts

            # Continued as new: the decisions (and the cooldowns they start) are carried.
            first_run = (await handle.describe()).run_id
            await env.sleep(timedelta(minutes=5))
            again = client.get_workflow_handle_for(ServiceJobWorkflow.run, job_id)
            assert (await again.describe()).run_id != first_run
            carried = await view(again)
            assert [d.new_desired for d in carried.decisions if d.changed] == [2, 1, 0]
            handle = again

            # Unused metrics are dropped; a wrong name or value never leaves the client.
            with pytest.raises(UserError, match="no policy of job queue-worker-1 reads"):
                await titus.put_metric(job_id, "other", 1)
            with pytest.raises(UserError, match="bad metric name"):
                await titus.put_metric(job_id, "no spaces", 1)
            with pytest.raises(UserError, match="finite"):
                await titus.put_metric(job_id, "queue", float("nan"))
            assert await titus.put_metric(job_id, "queue", 3) == QUEUE_METRIC
            await asyncio.wait_for(handle.signal(ServiceJobWorkflow.kill), 10)
