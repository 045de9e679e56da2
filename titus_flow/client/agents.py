"""The cluster's scheduler: starting it, its agents and capacity groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Literal

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.client.base import ClientBase, JobNotFoundError, scheduler_handle
from titus_flow.cluster import scheduler_workflow_id
from titus_flow.config import Settings
from titus_flow.contracts import AgentInfo, AgentView, CapacityGroupView, PutCapacityGroup
from titus_flow.errors import ClusterError, UserError
from titus_flow.fleet.messages import DemandQuery
from titus_flow.refs import signal_name
from titus_flow.scheduler.filters import matches
from titus_flow.scheduler.from_spec import rules_from_spec
from titus_flow.scheduler.queries import AGENTS_PAGE, AgentQuery, AgentTasks, AgentTasksQuery
from titus_flow.spec import CapacityGroup, Constraints
from titus_flow.workflows.scheduler import SchedulerWorkflow

SCHEDULER_CALL_TIMEOUT = timedelta(seconds=10)


async def ensure_scheduler(
    temporal: Client, settings: Settings, agent: AgentInfo | None = None
) -> None:
    """Start the cluster's scheduler workflow unless it runs (idempotent).

    With ``agent``, also register that agent in the same call (signal-with-start);
    without, tell a running scheduler of an earlier release to continue as new
    (``renew``) so it takes this release's behaviour. A scheduler that ended
    (e.g. failed: its ledger too large to carry) is never started over with an
    empty ledger, which would overcommit hosts: this raises an :class:`RPCError`
    naming the fix instead.
    """
    workflow_id = scheduler_workflow_id(settings.control_task_queue)
    try:
        await temporal.start_workflow(
            SchedulerWorkflow.run,
            None,
            id=workflow_id,
            task_queue=settings.control_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary="titus-flow capacity ledger and scheduler",
            # start_signal takes only a name: read from the signal's definition.
            start_signal=signal_name(
                SchedulerWorkflow.register_agent if agent else SchedulerWorkflow.renew
            ),
            start_signal_args=[agent] if agent else [],
            # An agent's heartbeat must fail, and be tried again, rather than hang
            # on an overloaded server: a hung one reads as a silent agent.
            rpc_timeout=SCHEDULER_CALL_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        raise RPCError(
            f"the scheduler workflow {workflow_id} has ended and holds the cluster's"
            " capacity ledger; it is not started again empty. See why with `temporal"
            f" workflow show -w {workflow_id}`; fix the cause and `temporal workflow reset`"
            f" it, or `temporal workflow delete -w {workflow_id}` to start over with an"
            " empty ledger (running tasks are then unknown to it).",
            RPCStatusCode.FAILED_PRECONDITION,
            b"",
        ) from None


_log = logging.getLogger(__name__)


class AgentsClient(ClientBase):
    """The scheduler's agents and capacity groups."""

    async def agents(self, query: AgentQuery | None = None) -> list[AgentView]:
        """Agents the scheduler knows, with their reserved capacity and task counts.

        The page ``query`` asks for; without one, every agent (page after page:
        one answer is bounded, issue 11).
        """
        handle = scheduler_handle(self.temporal, self.settings)
        with self._scheduler_answers():
            if query is not None:
                return await handle.query(SchedulerWorkflow.agents, query)
            views: list[AgentView] = []
            while True:
                page = await handle.query(SchedulerWorkflow.agents, AgentQuery(offset=len(views)))
                views += page
                if len(page) < AGENTS_PAGE:
                    return views

    async def agent_tasks(self, query: AgentTasksQuery) -> AgentTasks:
        """A page of the keys of the tasks holding capacity on one agent."""
        handle = scheduler_handle(self.temporal, self.settings)
        with self._scheduler_answers():
            return await handle.query(SchedulerWorkflow.agent_tasks, query)

    async def _agents_if_known(self) -> list[AgentView] | None:
        """The registered agents, or None if no scheduler answers (yet)."""
        try:
            return await self.agents()
        except (UserError, ClusterError, RPCError):
            return None

    async def fleet_vpcs(self, constraints: Constraints | None = None) -> list[str]:
        """The VPCs the cluster's running fleets start instances in; [] without fleets.

        Only the fleets an agent of which could take a task of ``constraints``
        (their hard attributes, e.g. ``fleet: web-pool``) count. The fleets'
        subnets are resolved to VPCs with EC2 ``DescribeSubnets``. [] as well
        when no scheduler answers, or a fleet's subnets cannot be described
        (logged): then nothing is known of the agents' VPCs.
        """
        handle = scheduler_handle(self.temporal, self.settings)
        try:
            demand = await handle.query(SchedulerWorkflow.demand, DemandQuery(agent_ids=[]))
        except (RPCError, WorkflowQueryFailedError):
            return []
        rules = rules_from_spec(constraints.hard).matchers if constraints is not None else ()
        names = [
            fleet.workflow_id
            for fleet in demand.fleets or []
            if any(matches(shape.attributes, rules) for shape in fleet.shapes)
        ]
        if not names:
            return []
        from titus_flow.workflows.fleet import FleetWorkflow  # only for clusters with fleets

        specs = []
        for workflow_id in names:
            fleet_handle = self.temporal.get_workflow_handle(workflow_id)
            try:
                specs.append(await fleet_handle.query(FleetWorkflow.current_spec))
            except (RPCError, WorkflowQueryFailedError):
                continue  # deleted since the scheduler heard of it
        if not specs:
            return []
        from titus_flow.load_balancers import aws  # boto3 only when a fleet runs

        try:
            return await asyncio.to_thread(aws.fleet_vpcs, specs)
        except aws.ElbError as err:
            _log.warning("fleet subnets not described (%s): target groups' VPCs not checked", err)
            return []

    async def drain_agent(self, agent_id: str) -> None:
        """Place nothing more on ``agent_id``; its running tasks finish where they are."""
        if agent_id not in {a.agent_id for a in await self.agents()}:
            raise UserError(f"no agent {agent_id!r}; see `titus-flow agents list`")
        handle = scheduler_handle(self.temporal, self.settings)
        await handle.signal(SchedulerWorkflow.drain_agent, agent_id)

    async def capacity_groups(self) -> list[CapacityGroupView]:
        """Every capacity group (and the implicit ``default``) with what its tasks use now."""
        handle = scheduler_handle(self.temporal, self.settings)
        with self._scheduler_answers():
            return await handle.query(SchedulerWorkflow.capacity_groups)

    async def put_capacity_group(
        self, group: CapacityGroup, expect: Literal["any", "new", "existing"] = "any"
    ) -> CapacityGroupView:
        """Create or replace ``group``; tasks waiting for capacity are placed again under it.

        ``expect="new"`` refuses to replace an existing group, ``"existing"`` to
        create one (both raise :class:`UserError`, changing nothing).
        """
        workflow_id = scheduler_workflow_id(self.settings.control_task_queue)
        request = PutCapacityGroup(group=group, expect=expect)
        try:
            return await self._update(workflow_id, SchedulerWorkflow.put_capacity_group, request)
        except JobNotFoundError as err:  # the scheduler workflow is not running
            raise self._no_scheduler(err) from err

    @contextlib.contextmanager
    def _scheduler_answers(self) -> Iterator[None]:
        """Say to start a control worker when the scheduler workflow is not there.

        Any other RPCError (a server that cannot be reached or was lost, a query
        that timed out) is raised as is.
        """
        try:
            yield
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            raise self._no_scheduler(err) from err

    def _no_scheduler(self, err: Exception) -> UserError:
        return UserError(
            f"the scheduler of control queue {self.settings.control_task_queue!r} does not"
            f" answer ({err}); start a control worker (`titus-flow up` or `titus-flow worker`)"
        )
