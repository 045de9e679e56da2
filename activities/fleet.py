"""Activities of the fleet workflow: every boto3 call, and reading the scheduler's demand.

Run on the control task queue. EC2 errors become Temporal errors by kind:
throttling and a lack of capacity are retryable (``Ec2Throttled``,
``Ec2NoCapacity``); a request EC2 rejects outright (bad AMI, no permission)
is not (``Ec2Rejected``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from temporalio import activity
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError

from titus_flow.activities.interfaces import FleetActivityInterface, implements
from titus_flow.fleet import ec2
from titus_flow.fleet.messages import (
    ClusterDemand,
    DemandQuery,
    FleetRef,
    Instance,
    LaunchInput,
    LaunchOutput,
    ObserveInput,
    TerminateInput,
)
from titus_flow.fleet.spec import FleetSpec
from titus_flow.refs import query_name
from titus_flow.workflows.scheduler import SchedulerWorkflow

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

T = TypeVar("T")


def _as_temporal(err: ec2.Ec2Error) -> ApplicationError:
    return ApplicationError(
        str(err), type=type(err).__name__, non_retryable=isinstance(err, ec2.Ec2Rejected)
    )


class FleetActivities(FleetActivityInterface):
    """EC2 calls (boto3, in a thread) and the scheduler query the fleet needs.

    ``make_client`` is swappable so tests can wrap the client (e.g. to inject
    capacity errors) while still talking to a real endpoint.
    """

    def __init__(
        self, client: Client, make_client: Callable[[FleetSpec], EC2Client] = ec2.make_client
    ) -> None:
        self._client = client
        self._make_client = make_client

    async def _ec2(self, spec: FleetSpec, call: Callable[[EC2Client], T]) -> T:
        def run() -> T:
            return call(self._make_client(spec))

        try:
            return await asyncio.to_thread(run)
        except ec2.Ec2Error as err:
            raise _as_temporal(err) from err

    @implements(FleetActivityInterface.launch)
    async def launch(self, request: LaunchInput) -> LaunchOutput:
        """Launch instances (idempotent per launch number; falls back on capacity errors)."""
        return await self._ec2(request.spec, lambda c: ec2.launch(c, request))

    @implements(FleetActivityInterface.describe)
    async def describe(self, ref: FleetRef) -> list[Instance]:
        """Every instance tagged with the fleet's name."""
        return await self._ec2(ref.spec, lambda c: ec2.describe(c, ref.spec.name))

    @implements(FleetActivityInterface.terminate)
    async def terminate(self, request: TerminateInput) -> list[str]:
        """Terminate instances (unknown ids count as terminated)."""
        return await self._ec2(request.spec, lambda c: ec2.terminate(c, request.instance_ids))

    @implements(FleetActivityInterface.observe)
    async def observe(self, scheduler_id: str) -> ClusterDemand:
        """The scheduler's pending demand and every agent (fleet runs of earlier releases).

        A scheduler without the ``demand`` query still answers ``agents``: the
        fleet then keeps ``min`` and replaces dead instances, but cannot grow.
        """
        return await self._demand(scheduler_id, None)

    @implements(FleetActivityInterface.observe_own)
    async def observe_own(self, request: ObserveInput) -> ClusterDemand:
        """The scheduler's pending demand, and the agents of ``request.agent_ids`` only."""
        return await self._demand(request.scheduler_id, request.agent_ids)

    async def _demand(self, scheduler_id: str, agent_ids: list[str] | None) -> ClusterDemand:
        handle = self._client.get_workflow_handle(scheduler_id)
        # No argument: every agent, as schedulers of every release answer.
        args = [] if agent_ids is None else [DemandQuery(agent_ids=agent_ids)]
        try:
            return await handle.query(SchedulerWorkflow.demand, args=args)
        except WorkflowQueryFailedError as err:
            if "known queries" not in str(err):
                raise
            activity.logger.warning(
                "scheduler has no %r query: demand unknown", query_name(SchedulerWorkflow.demand)
            )
        agents = await handle.query(SchedulerWorkflow.agents)
        return ClusterDemand(agents=agents)

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for a worker's ``activities=``."""
        return [self.launch, self.describe, self.terminate, self.observe, self.observe_own]
