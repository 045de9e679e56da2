"""The control worker: runs the control-plane workflows on the control task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from titus_flow.activities.control import ControlActivities
from titus_flow.activities.fleet import FleetActivities
from titus_flow.activities.load_balancers import LoadBalancerActivities
from titus_flow.activities.metric_sources import MetricSourceActivities
from titus_flow.activities.scaling_schedules import ScalingScheduleActivities
from titus_flow.activities.services import ServiceActivities
from titus_flow.activities.task_gates import TaskGateActivities
from titus_flow.client import TitusClient, ensure_scheduler
from titus_flow.config import Settings
from titus_flow.converter import worker_data_converter
from titus_flow.logs_json import TaskContextInterceptor
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.dag import JobDagWorkflow
from titus_flow.workflows.fleet import FleetWorkflow
from titus_flow.workflows.logs import FetchLogsWorkflow
from titus_flow.workflows.scheduled_scaling import ScheduledScalingWorkflow
from titus_flow.workflows.scheduler import SchedulerWorkflow
from titus_flow.workflows.service import ServiceJobWorkflow

log = logging.getLogger(__name__)

# titus-flow's own modules are deterministic and side-effect free at import, so
# the sandbox may share them instead of re-importing them for every workflow run
# (that re-import was most of the cost of a job's first workflow task).
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("titus_flow", "pydantic")
)

CONTROL_WORKFLOWS: tuple[type, ...] = (
    BatchJobWorkflow,
    ServiceJobWorkflow,
    SchedulerWorkflow,
    FetchLogsWorkflow,
    JobDagWorkflow,
    FleetWorkflow,
    ScheduledScalingWorkflow,
)


def control_worker(
    client: Client, settings: Settings, extra_workflows: Sequence[type] = (), **options: Any
) -> Worker:
    """A worker for the control-plane workflows (plus users' own workflows).

    Its workflows decode payloads with :data:`~titus_flow.converter.WORKER_DATA_CONVERTER`
    (and the payload codec of ``client``, if any): a workflow whose input does
    not decode fails instead of retrying forever. Its activities use ``client``
    as given.
    """
    config = client.config()
    config["data_converter"] = worker_data_converter(config["data_converter"].payload_codec)
    return Worker(
        Client(**config),
        task_queue=settings.control_task_queue,
        workflows=[*CONTROL_WORKFLOWS, *extra_workflows],
        activities=[
            *ControlActivities(client).all(),
            *FleetActivities(client).all(),
            *LoadBalancerActivities(client).all(),
            *ScalingScheduleActivities(client).all(),
            MetricSourceActivities().read_request_counts,
            *ServiceActivities(TitusClient(client, settings)).all(),
            *TaskGateActivities(client).all(),
            *options.pop("activities", []),
        ],
        workflow_runner=SANDBOX,
        interceptors=[TaskContextInterceptor(), *options.pop("interceptors", [])],
        max_concurrent_workflow_tasks=options.pop("max_concurrent_workflow_tasks", 50),
        **options,
    )


async def run_control_worker(
    client: Client,
    settings: Settings,
    stop: asyncio.Event,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
) -> None:
    """Run the control worker (and users' workflows and activities) until ``stop`` is set."""
    await ensure_scheduler(client, settings)
    async with control_worker(client, settings, extra_workflows, activities=extra_activities):
        log.info(
            "control worker running on %s with user workflows %s",
            settings.control_task_queue,
            [getattr(cls, "__name__", cls) for cls in extra_workflows],
        )
        await stop.wait()
