"""The fleet workflow: keeps an EC2 pool of agents sized to the scheduler's demand.

One workflow per fleet (id ``<control queue>-fleet-<name>``), on the control
task queue. Every ``poll_interval`` (or at once on a signal) a round:

1. observe: the scheduler's pending demand and agents (activity ``fleet_observe``);
2. reconcile: describe the fleet's instances by tag, adopt any it does not
   track yet (a launch whose answer was lost), notice those that vanished;
3. plan (pure, :func:`titus_flow.fleet.planner.plan`);
4. act: terminate dead instances, drain then terminate idle ones, launch.

Launch numbers are committed to the state before the launch activity runs, so
a retried or replayed launch reuses its number and creates nothing twice. The
whole state goes through continue-as-new.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from titus_flow import metrics as names

    # The activities' declarations: FleetActivities imports boto3.
    from titus_flow.activities.interfaces import FleetActivityInterface
    from titus_flow.cluster import scheduler_workflow_id
    from titus_flow.contracts import AgentView
    from titus_flow.events.labels import FLEET_INSTANCE_STATES, bounded_labels
    from titus_flow.fleet.messages import (
        ClusterDemand,
        FleetCapacity,
        FleetRef,
        Instance,
        LaunchInput,
        LaunchOption,
        ObserveInput,
        TerminateInput,
    )
    from titus_flow.fleet.planner import Demand, Launch, Member, is_dead, plan
    from titus_flow.fleet.shapes import fleet_capacity, fleet_gone
    from titus_flow.fleet.spec import FleetSpec
    from titus_flow.fleet.userdata import user_data
    from titus_flow.scheduler.from_spec import resources_from_spec
    from titus_flow.scheduler.model import PlacementRules
    from titus_flow.workflows.fleet_state import (
        Bounds,
        FleetInput,
        FleetState,
        FleetStatus,
        Tracked,
    )
    from titus_flow.workflows.scheduler import SchedulerWorkflow

A = TypeVar("A")

EC2_TIMEOUT = timedelta(minutes=2)
EC2_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["Ec2Rejected"],
)
# Rounds per run before continue-as-new; a round is a handful of events.
ROUNDS_PER_RUN = 200
MAX_EVENTS = 20

OWN_AGENTS_PATCH = "fleet-observes-own-agents"
"""``workflow.patched`` id of a round that describes the fleet's instances first and
then reads the scheduler's demand with only their agents (issue 11: every
agent of the cluster in each round's activity result grew the fleet's history
with the cluster). Runs started before it observe first, with every agent."""


@workflow.defn(name="Fleet")
class FleetWorkflow:
    """Grows and shrinks one fleet of EC2 agents with demand."""

    def __init__(self) -> None:
        self._input: FleetInput | None = None
        self._wake = False

    @property
    def _spec(self) -> FleetSpec:
        assert self._input is not None
        return self._input.spec

    @property
    def _state(self) -> FleetState:
        assert self._input is not None
        return self._input.state

    @workflow.run
    async def run(self, request: FleetInput) -> FleetStatus:
        """Run rounds until deleted and every instance is gone."""
        self._input = request
        for _ in range(ROUNDS_PER_RUN):
            await self._round()
            self._count_instances()
            if self._state.deleting and not self._state.instances:
                return self.status()
            if workflow.info().is_continue_as_new_suggested():
                break
            with contextlib.suppress(asyncio.TimeoutError):  # the poll interval passed
                await workflow.wait_condition(lambda: self._wake, timeout=self._spec.poll_interval)
            self._wake = False
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self._input)

    # --- signals, updates, queries ---------------------------------------------------

    @workflow.update(name="scale")
    def scale(self, bounds: Bounds) -> FleetStatus:
        """Change ``min`` and ``max``; the next round acts on them."""
        self._input = self._with_spec({**self._spec.model_dump(), **bounds.model_dump()})
        self._wake = True
        return self.status()

    @scale.validator
    def _check_scale(self, bounds: Bounds) -> None:
        if self._state.deleting:
            raise ValueError(f"fleet {self._spec.name} is being deleted")
        if not 0 <= bounds.min <= bounds.max:
            raise ValueError(f"need 0 <= min <= max (got min {bounds.min}, max {bounds.max})")

    @workflow.update(name="apply")
    def apply(self, spec: FleetSpec) -> FleetStatus:
        """Replace the fleet's spec (``titus-flow fleet apply`` on a running fleet)."""
        self._input = self._with_spec(spec.model_dump())
        self._wake = True
        return self.status()

    @apply.validator
    def _check_apply(self, spec: FleetSpec) -> None:
        if spec.name != self._spec.name:
            raise ValueError(f"this is fleet {self._spec.name!r}, not {spec.name!r}")
        if self._state.deleting:
            raise ValueError(f"fleet {self._spec.name} is being deleted")

    @workflow.signal(name="delete")
    def delete(self) -> None:
        """Drain and terminate every instance, then finish."""
        self._state.deleting = True
        self._wake = True

    @workflow.query(name="spec")
    def current_spec(self) -> FleetSpec:
        """The fleet's spec as it now runs (after scale and apply)."""
        return self._spec

    @workflow.query(name="status")
    def status(self) -> FleetStatus:
        """The fleet's instances with their agents and tasks."""
        return FleetStatus.of(self._spec, self._state)

    # --- one round ---------------------------------------------------------------------

    def _with_spec(self, raw: dict[str, object]) -> FleetInput:
        assert self._input is not None
        spec = FleetSpec.model_validate(raw)
        return self._input.model_copy(update={"spec": spec})

    def _event(self, text: str) -> None:
        workflow.logger.info("fleet %s: %s", self._spec.name, text)
        stamped = f"{workflow.now().isoformat(timespec='seconds')} {text}"
        self._state.events = [*self._state.events, stamped][-MAX_EVENTS:]

    def _count_instances(self) -> None:
        """``titus_flow_fleet_instances{fleet, state}`` (the meter records nothing on replay)."""
        gauge = workflow.metric_meter().create_gauge(names.FLEET_INSTANCES)
        counts = Counter(
            FLEET_INSTANCE_STATES.get(t.leaving, "running") for t in self._state.instances.values()
        )
        for state in FLEET_INSTANCE_STATES.values():
            gauge.set(counts[state], bounded_labels(fleet=self._spec.name, state=state))

    async def _round(self) -> None:
        scheduler_id = scheduler_workflow_id(workflow.info().task_queue)
        if workflow.patched(OWN_AGENTS_PATCH):
            seen = await self._describe()
            # The agents of instances tracked or just seen: nothing _reconcile keeps is missing.
            own = sorted({*self._state.instances, *(i.instance_id for i in seen)})
            demand = await workflow.execute_activity_method(
                FleetActivityInterface.observe_own,
                ObserveInput(scheduler_id=scheduler_id, agent_ids=own),
                start_to_close_timeout=timedelta(seconds=30),
            )
        else:
            demand = await workflow.execute_activity_method(
                FleetActivityInterface.observe,
                scheduler_id,
                start_to_close_timeout=timedelta(seconds=30),
            )
            seen = await self._describe()
        self._reconcile(seen, demand.agents)
        if self._state.deleting:
            for iid, tracked in self._state.instances.items():
                if tracked.leaving is None:
                    await self._start_leaving(iid, "drain")
        else:
            await self._act_on(self._plan(demand))
        await self._finish_drains()
        await self._announce(demand.fleets)

    async def _describe(self) -> list[Instance]:
        return await workflow.execute_activity_method(
            FleetActivityInterface.describe,
            FleetRef(spec=self._spec),
            start_to_close_timeout=EC2_TIMEOUT,
            retry_policy=EC2_RETRY,
        )

    def _reconcile(self, seen: list[Instance], agents: list[AgentView]) -> None:
        state, now = self._state, workflow.now()
        by_id = {i.instance_id: i for i in seen}
        for iid, instance in by_id.items():
            if iid not in state.instances:
                if instance.state == "terminated":
                    continue  # an old instance of this fleet, long gone
                self._event(f"adopted {iid} ({instance.instance_type}, {instance.state})")
                state.instances[iid] = Tracked(instance=instance)
            else:
                state.instances[iid].instance = instance
        for iid, tracked in list(state.instances.items()):
            gone = iid not in by_id or tracked.instance.state == "terminated"
            if gone and tracked.leaving == "terminate":
                del state.instances[iid]
                state.idle_since.pop(iid, None)
            elif iid not in by_id:  # EC2 forgot it without being asked: dead
                tracked.instance = tracked.instance.model_copy(update={"state": "terminated"})
        state.agents = {a.agent_id: a for a in agents if a.agent_id in state.instances}
        for iid in state.instances:
            agent = state.agents.get(iid)
            if agent is not None and not agent.task_count:
                state.idle_since.setdefault(iid, now)
            else:
                state.idle_since.pop(iid, None)

    def _members(self) -> list[Member]:
        state = self._state
        return [
            Member(
                instance_id=iid,
                instance_type=t.instance.instance_type,
                zone=t.instance.zone,
                state=t.instance.state,
                launched_at=t.instance.launched_at,
                market=t.instance.market,
                registered=iid in state.agents,
                tasks=state.agents[iid].task_count if iid in state.agents else 0,
                idle_since=state.idle_since.get(iid),
                leaving=t.leaving is not None,
            )
            for iid, t in sorted(state.instances.items())
        ]

    def _plan(self, demand: ClusterDemand) -> list[tuple[str, object]]:
        wanted = [
            Demand(
                key=p.key if p.count == 1 else f"{p.key} and {p.count - 1} like it",
                resources=resources_from_spec(p.resources),
                attributes=PlacementRules(attributes=dict(p.constraints.hard.attributes)).matchers,
                count=p.count,
            )
            for p in demand.pending
        ]
        decided = plan(self._spec, self._members(), wanted, workflow.now())
        self._state.unfit = decided.unfit
        return [
            *(("replace", iid) for iid in decided.replace),
            *(("scale_in", iid) for iid in decided.scale_in),
            *(("launch", launch) for launch in decided.launches),
        ]

    async def _act_on(self, actions: list[tuple[str, object]]) -> None:
        for kind, what in actions:
            if kind == "replace" and isinstance(what, str):
                self._event(f"replacing dead instance {what}")
                await self._start_leaving(what, "terminate")
            elif kind == "scale_in" and isinstance(what, str):
                self._event(f"scaling in idle instance {what}")
                await self._start_leaving(what, "drain")
            elif isinstance(what, Launch):
                await self._launch(what)

    async def _start_leaving(self, iid: str, how: str) -> None:
        tracked = self._state.instances[iid]
        tracked.leaving, tracked.leaving_since = how, workflow.now()
        if how == "drain" and self._input is not None and self._input.scheduler_signals:
            await self._scheduler_signal(SchedulerWorkflow.drain_agent, iid)
        if how == "terminate":
            await self._terminate([iid])

    async def _finish_drains(self) -> None:
        """Terminate draining instances whose agent has no tasks (or never registered)."""
        done = [
            iid
            for iid, t in sorted(self._state.instances.items())
            if t.leaving == "drain"
            and (
                not (self._input and self._input.scheduler_signals)
                or not (agent := self._state.agents.get(iid))
                or not agent.task_count
            )
        ]
        if done:
            for iid in done:
                self._state.instances[iid].leaving = "terminate"
            await self._terminate(done)

    async def _terminate(self, ids: list[str]) -> None:
        try:
            await workflow.execute_activity_method(
                FleetActivityInterface.terminate,
                TerminateInput(spec=self._spec, instance_ids=ids),
                start_to_close_timeout=EC2_TIMEOUT,
                retry_policy=EC2_RETRY,
            )
        except ActivityError as err:
            self._event(f"terminate {', '.join(ids)} failed: {err.cause or err}; retrying")
            for iid in ids:  # back to draining: the next round terminates again
                self._state.instances[iid].leaving = "drain"
            return
        self._event(f"terminated {', '.join(ids)}")
        if self._input is not None and self._input.scheduler_signals:
            for iid in ids:
                await self._scheduler_signal(SchedulerWorkflow.remove_agent, iid)

    async def _announce(self, known: list[FleetCapacity] | None) -> None:
        """Tell the scheduler what this fleet can still launch, when that changed.

        Compared with what the scheduler reported this round (not with what was
        sent), so a scheduler that lost it (a fresh one) hears it again.
        """
        if known is None:
            return  # the scheduler does not track fleets
        spec, workflow_id = self._spec, workflow.info().workflow_id
        told = next((f for f in known if f.fleet == spec.name), None)
        if self._state.deleting:  # launches nothing more: its shapes hold no task
            if told is not None:
                await self._scheduler_signal(
                    SchedulerWorkflow.fleet_capacity, fleet_gone(spec.name, workflow_id)
                )
            return
        now = workflow.now()
        live = sum(not m.leaving and not is_dead(m, spec, now) for m in self._members())
        capacity = fleet_capacity(spec, workflow_id, at_max=live >= spec.max)
        if capacity != told:
            await self._scheduler_signal(SchedulerWorkflow.fleet_capacity, capacity)

    async def _scheduler_signal(
        self, signal: Callable[[SchedulerWorkflow, A], None], arg: A
    ) -> None:
        handle = workflow.get_external_workflow_handle_for(
            SchedulerWorkflow.run, scheduler_workflow_id(workflow.info().task_queue)
        )
        await handle.signal(signal, arg)

    async def _launch(self, launch: Launch) -> None:
        state = self._state
        seq = state.next_seq
        state.next_seq += 1  # committed before the activity: a retry reuses this number
        request = LaunchInput(
            spec=self._spec,
            seq=seq,
            count=launch.count,
            market=launch.market,
            options=[
                LaunchOption(instance_type=t, subnet_id=s, zone=z) for t, s, z in launch.options
            ],
            user_data=user_data(self._spec),
        )
        try:
            out = await workflow.execute_activity_method(
                FleetActivityInterface.launch,
                request,
                start_to_close_timeout=EC2_TIMEOUT,
                retry_policy=EC2_RETRY,
            )
        except ActivityError as err:
            what = f"{launch.count} x {launch.instance_type}"
            self._event(f"launch #{seq} of {what} failed: {err.cause}; next round retries")
            return
        for instance in out.instances:
            state.instances[instance.instance_id] = Tracked(instance=instance)
        ids = ", ".join(i.instance_id for i in out.instances)
        self._event(
            f"launch #{seq}: {launch.count} x {launch.instance_type} ({launch.market}): {ids}"
            + (f" after {'; '.join(out.tried)}" if out.tried else "")
        )
