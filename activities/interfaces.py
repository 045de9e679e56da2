"""The activities workflows call, declared apart from their implementations.

Each class here holds the ``@activity.defn`` of a group of activities: its
name, argument and result types, and no body. Workflows invoke them by typed
reference, ``workflow.execute_activity_method(AgentActivityInterface.launch,
request, ...)``, so the name is never written at the call and mypy checks the
argument and result types. The implementations subclass these and define each
method with :func:`implements`, which reads the name from here.

Why apart: the agent's and the service activities import
:mod:`titus_flow.client`, which imports the job workflows, so a workflow
importing them would close an import cycle; the fleet's import boto3, which has
no place in a workflow module. This module imports only message types. (The
control activities import neither, so the scheduler workflow names
:class:`~titus_flow.activities.control.ControlActivities` directly.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

from titus_flow.contracts import (
    AttemptExit,
    AutoscalingPauseInput,
    LaunchInput,
    LaunchResult,
    LogsChunk,
    LogsInput,
    PutMetricInput,
    ServiceRolloutInput,
    ServiceWaitInput,
    StopInput,
    SuperviseInput,
)
from titus_flow.contracts.autoscaling import ScalingSchedules
from titus_flow.contracts.load_balancers import (
    GroupInfo,
    LoadBalancersView,
    RegisteredTarget,
    RegisterInput,
    TargetsInput,
    TargetView,
)
from titus_flow.contracts.metric_sources import (
    RequestCountInput,
    RequestRate,
    ScrapeInput,
    ScrapeResult,
)
from titus_flow.contracts.task_gates import FinishedTasks, FinishedTasksInput
from titus_flow.fleet import messages as fleet
from titus_flow.refs import activity_name
from titus_flow.views import JobView

F = TypeVar("F", bound=Callable[..., Any])


def implements(declared: Callable[..., Any]) -> Callable[[F], F]:
    """Define the decorated method as the activity ``declared`` declares (same name).

    Example::

        class AgentActivities(AgentActivityInterface):
            @implements(AgentActivityInterface.launch)
            async def launch(self, request: LaunchInput) -> LaunchResult: ...
    """
    return activity.defn(name=activity_name(declared))


class AgentActivityInterface:
    """The activities of an agent, run on its own task queue (``agent_task_queue``)."""

    @activity.defn(name="launch")
    async def launch(self, request: LaunchInput) -> LaunchResult:
        """Start the attempt's container (adopting one a previous try made)."""
        raise NotImplementedError

    @activity.defn(name="supervise")
    async def supervise(self, request: SuperviseInput) -> AttemptExit:
        """Heartbeat until the container exits, overruns its limit or turns unhealthy."""
        raise NotImplementedError

    @activity.defn(name="stop")
    async def stop(self, request: StopInput) -> None:
        """Stop and remove the attempt's container, keeping its output; a no-op once gone."""
        raise NotImplementedError

    @activity.defn(name="read_logs")
    async def read_logs(self, request: LogsInput) -> LogsChunk:
        """Read an attempt's output from ``offset``: live while it runs, the kept log after."""
        raise NotImplementedError


class FleetActivityInterface:
    """The fleet workflow's EC2 calls and its reading of the scheduler's demand."""

    @activity.defn(name="fleet_launch")
    async def launch(self, request: fleet.LaunchInput) -> fleet.LaunchOutput:
        """Launch instances (idempotent per launch number; falls back on capacity errors)."""
        raise NotImplementedError

    @activity.defn(name="fleet_describe")
    async def describe(self, ref: fleet.FleetRef) -> list[fleet.Instance]:
        """Every instance tagged with the fleet's name."""
        raise NotImplementedError

    @activity.defn(name="fleet_terminate")
    async def terminate(self, request: fleet.TerminateInput) -> list[str]:
        """Terminate instances (unknown ids count as terminated)."""
        raise NotImplementedError

    @activity.defn(name="fleet_observe")
    async def observe(self, scheduler_id: str) -> fleet.ClusterDemand:
        """The scheduler's pending demand and every agent (fleet runs of earlier releases)."""
        raise NotImplementedError

    @activity.defn(name="fleet_observe_own")
    async def observe_own(self, request: fleet.ObserveInput) -> fleet.ClusterDemand:
        """The scheduler's pending demand, and the agents of ``request.agent_ids`` only."""
        raise NotImplementedError


class ServiceActivityInterface:
    """Service job updates, waits and controls, for user workflows.

    Called by :mod:`titus_flow.flow.services`.
    """

    @activity.defn(name="service_rollout")
    async def rollout(self, request: ServiceRolloutInput) -> int:
        """Start an update or canary, promote or roll back; the revision it leaves current."""
        raise NotImplementedError

    @activity.defn(name="service_wait")
    async def wait(self, request: ServiceWaitInput) -> JobView:
        """Wait as ``request.until`` says; the job's view at that point (or at the timeout)."""
        raise NotImplementedError

    @activity.defn(name="service_autoscaling_paused")
    async def autoscaling_paused(self, request: AutoscalingPauseInput) -> bool:
        """Pause or resume a service job's autoscaling; the new state."""
        raise NotImplementedError

    @activity.defn(name="service_put_metric")
    async def put_metric(self, request: PutMetricInput) -> str:
        """Push one value of a metric to a service job; the metric's full name."""
        raise NotImplementedError

    @activity.defn(name="service_load_balancers")
    async def load_balancers(self, job_id: str) -> LoadBalancersView:
        """A service job's target groups, each task's target and state in them."""
        raise NotImplementedError


class TaskGateActivityInterface:
    """What gated batch tasks ask of other jobs (:mod:`titus_flow.workflows.batch_gates`)."""

    @activity.defn(name="finished_tasks")
    async def finished_tasks(self, request: FinishedTasksInput) -> FinishedTasks:
        """Which of the asked tasks of another job have finished, and how."""
        raise NotImplementedError


class LoadBalancerActivityInterface:
    """The elbv2 calls of a service's targets (:mod:`titus_flow.workflows.service_targets`)."""

    @activity.defn(name="describe_target_groups")
    async def describe_groups(self, target_groups: list[str]) -> list[GroupInfo]:
        """Each group's target type and deregistration delay."""
        raise NotImplementedError

    @activity.defn(name="register_endpoints")
    async def register_endpoints(self, request: RegisterInput) -> list[TargetView]:
        """Register tasks (their agents' addresses looked up); the targets registered."""
        raise NotImplementedError

    @activity.defn(name="register_targets")
    async def register_targets(self, request: TargetsInput) -> None:
        """Register targets whose addresses are known (drift repair)."""
        raise NotImplementedError

    @activity.defn(name="deregister_targets")
    async def deregister_targets(self, request: TargetsInput) -> None:
        """Deregister targets (AWS starts their drain)."""
        raise NotImplementedError

    @activity.defn(name="registered_targets")
    async def registered_targets(self, target_group: str) -> list[RegisteredTarget]:
        """The targets AWS holds in a group, draining ones marked."""
        raise NotImplementedError


class ScalingScheduleActivityInterface:
    """The schedules of scheduled actions (:mod:`titus_flow.workflows.service_autoscaling`)."""

    @activity.defn(name="sync_scaling_schedules")
    async def sync_scaling_schedules(self, request: ScalingSchedules) -> None:
        """Create or update the schedules of ``request.actions``; delete ``request.remove``'s."""
        raise NotImplementedError


class MetricSourceActivityInterface:
    """Metrics a service job reads itself: CloudWatch (control queue), Prometheus (agents)."""

    @activity.defn(name="read_request_counts")
    async def read_request_counts(self, request: RequestCountInput) -> RequestRate:
        """``requests_per_task`` of ALB target groups, from CloudWatch (control task queue)."""
        raise NotImplementedError

    @activity.defn(name="scrape_metric")
    async def scrape_metric(self, request: ScrapeInput) -> ScrapeResult:
        """One metric from each task's Prometheus endpoint (the agent's task queue)."""
        raise NotImplementedError
