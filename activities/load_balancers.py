"""Activities of service jobs' load balancers: elbv2 calls and the agents' addresses.

Run on the control task queue. A failed call is retryable when AWS throttled
or failed itself; a missing group or a target AWS refuses is not
(``TargetGroupNotFound``, ``InvalidTarget``), nor an agent without the address
a group needs (``AgentAddressUnknown``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from titus_flow.activities.interfaces import LoadBalancerActivityInterface, implements
from titus_flow.contracts.load_balancers import (
    GroupInfo,
    RegisteredTarget,
    RegisterInput,
    TargetsInput,
    TargetState,
    TargetType,
    TargetView,
)
from titus_flow.load_balancers import aws
from titus_flow.load_balancers.rules import LOCAL_TARGET
from titus_flow.scheduler.queries import AgentQuery
from titus_flow.workflows.scheduler import SchedulerWorkflow

T = TypeVar("T")

PRIVATE_IP_ATTRIBUTE = "private_ip"
INSTANCE_ID_ATTRIBUTE = "instance_id"


class LoadBalancerActivities(LoadBalancerActivityInterface):
    """elbv2 calls (boto3, in a thread) and the scheduler query for agents' addresses.

    ``make_client`` is swappable so tests can wrap the client.
    """

    def __init__(self, client: Client, make_client: Callable[[str], Any] = aws.make_client) -> None:
        self._client = client
        self._make_client = make_client

    async def _elb(self, arn: str, call: Callable[[Any], T]) -> T:
        def run() -> T:
            return call(self._make_client(arn))

        try:
            return await asyncio.to_thread(run)
        except aws.ElbError as err:
            raise ApplicationError(
                str(err),
                type="TargetGroupNotFound" if err.code in aws.NOT_FOUND_CODES else err.code,
                non_retryable=not err.retryable,
            ) from err

    @implements(LoadBalancerActivityInterface.describe_groups)
    async def describe_groups(self, target_groups: list[str]) -> list[GroupInfo]:
        """Each group's target type and deregistration delay (groups not ip/instance left out)."""
        found = []
        for arn in target_groups:
            _, info = await self._describe(arn)
            if info is not None:
                found.append(info)
        return found

    async def _describe(self, arn: str) -> tuple[dict[str, Any], GroupInfo | None]:
        return await self._elb(arn, lambda c: aws.describe_group(c, arn))

    @implements(LoadBalancerActivityInterface.register_endpoints)
    async def register_endpoints(self, request: RegisterInput) -> list[TargetView]:
        """Register tasks by their agents' addresses (``private_ip`` or ``instance_id``)."""
        arn = request.target_group
        _, info = await self._describe(arn)
        if info is None:
            raise ApplicationError(f"{arn} takes no ip or instance targets", type="InvalidTarget")
        addresses = {
            agent: await self._address(request.scheduler_id, agent, info.target_type)
            for agent in dict.fromkeys(e.agent_id for e in request.endpoints)
        }
        targets = [
            TargetView(
                task_id=e.task_id,
                target=addresses[e.agent_id],
                port=e.port,
                state=TargetState.REGISTERED,
            )
            for e in request.endpoints
        ]
        pairs = [(t.target, t.port) for t in targets]
        await self._elb(arn, lambda c: aws.register(c, arn, pairs))
        return targets

    async def _address(self, scheduler_id: str, agent_id: str, kind: TargetType) -> str:
        """The agent's address for a group of ``kind``: its private IP or its instance id.

        An agent without a ``private_ip`` attribute (one on this machine) is on
        loopback; an ``instance`` group needs the agent's ``instance_id``.
        """
        handle = self._client.get_workflow_handle(scheduler_id)
        agents = await handle.query(SchedulerWorkflow.agents, AgentQuery(agent_id=agent_id))
        attributes = agents[0].attributes if agents else {}
        if kind is TargetType.IP:
            return attributes.get(PRIVATE_IP_ATTRIBUTE, LOCAL_TARGET)
        if INSTANCE_ID_ATTRIBUTE not in attributes:
            raise ApplicationError(
                f"agent {agent_id} has no {INSTANCE_ID_ATTRIBUTE} attribute for an instance group",
                type="AgentAddressUnknown",
                non_retryable=True,
            )
        return attributes[INSTANCE_ID_ATTRIBUTE]

    @implements(LoadBalancerActivityInterface.register_targets)
    async def register_targets(self, request: TargetsInput) -> None:
        """Register targets whose addresses are known (drift repair)."""
        pairs = [(t.target, t.port) for t in request.targets if t.target]
        arn = request.target_group
        await self._elb(arn, lambda c: aws.register(c, arn, pairs))

    @implements(LoadBalancerActivityInterface.deregister_targets)
    async def deregister_targets(self, request: TargetsInput) -> None:
        """Deregister targets (those never given an address were never registered)."""
        pairs = [(t.target, t.port) for t in request.targets if t.target]
        if pairs:
            arn = request.target_group
            await self._elb(arn, lambda c: aws.deregister(c, arn, pairs))

    @implements(LoadBalancerActivityInterface.registered_targets)
    async def registered_targets(self, target_group: str) -> list[RegisteredTarget]:
        """The targets AWS holds in a group, draining ones marked."""
        return await self._elb(target_group, lambda c: aws.registered(c, target_group))

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for a worker's ``activities=``."""
        return [
            self.describe_groups,
            self.register_endpoints,
            self.register_targets,
            self.deregister_targets,
            self.registered_targets,
        ]
