"""The capacity ledger: the one authority for what is reserved where.

Pure and deterministic (the scheduler workflow owns one and carries its state
across continue-as-new). Each :meth:`Ledger.iterate` runs one scheduling
iteration over every pending request at once, Fenzo style.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from titus_flow.contracts import (
    AgentInfo,
    AgentView,
    CapacityGroupView,
    Placed,
    PlacementItem,
    PlacementRequest,
    PlacementUpdate,
    ReleaseRequest,
    Unplaced,
)
from titus_flow.fleet.messages import FleetCapacity, PendingDemand
from titus_flow.ledger.placement import Snapshots, TaskRequests, Usage, place
from titus_flow.ledger.records import AgentRecord, PendingRequest, Reservation
from titus_flow.ledger.state import LedgerState
from titus_flow.scheduler import GroupUsage, TaskRequest, Tier
from titus_flow.scheduler.queries import AgentQuery, AgentTasks, AgentTasksQuery
from titus_flow.spec import CapacityGroup, Constraints, Resources
from titus_flow.spec.capacity_group import DEFAULT_GROUP


class Ledger:
    """Reservations and pending requests over the registered agents.

    Beside the state it keeps what the reservations add up to per agent and per
    capacity group (:class:`~titus_flow.ledger.placement.Usage`) and the scheduler's
    request of each pending item, both updated as they change: an iteration
    then costs what the agents and pending requests cost, however many tasks
    hold capacity. Change the state through the methods only.
    """

    def __init__(self, state: LedgerState | None = None, *, answer_held: bool = True) -> None:
        """A ledger over ``state`` (empty if None).

        ``answer_held``: answer a request for a key its requester holds (see
        :meth:`request`); the scheduler turns it off for runs started before that.
        """
        self.state = state or LedgerState()
        self._answer_held = answer_held
        self._usage = Usage(self.state.reservations.values())
        self._requests: dict[str, TaskRequest] = {}  # of pending keys, built once
        self._build_request = TaskRequests()  # shared specs converted once per iteration
        self._snapshots = Snapshots()  # agents as the scheduler saw them last iteration
        # Keys asked for again by the requester that holds them (see request()).
        self._asked_again: dict[str, PendingRequest] = {}

    def answers_unsent(self) -> bool:
        """Whether the next iteration owes a requester an answer only this object holds.

        Such answers (a reservation asked for again by its holder) do not travel
        across continue-as-new; pending requests and evictions do.
        """
        return bool(self._asked_again)

    def register(self, info: AgentInfo, now: datetime) -> None:
        """Add an agent, or refresh one that registers again (e.g. after a restart)."""
        record = self.state.agents.get(info.agent_id)
        if record is None:
            self.state.agents[info.agent_id] = AgentRecord(info=info, last_seen=now)
        else:
            record.info, record.last_seen = info, now
            if record.state == "lost":  # it came back; a drain stays in force
                record.state = "active"

    def mark_silent_agents_lost(self, now: datetime, silence: timedelta) -> list[str]:
        """Mark agents not heard from within ``silence`` as lost; return their ids.

        Nothing more is placed on them; their tasks' supervise activities time out
        on their own and the tasks are relaunched elsewhere.
        """
        lost = []
        for agent_id, record in self.state.agents.items():
            if record.state != "lost" and record.last_seen and now - record.last_seen > silence:
                record.state = "lost"
                lost.append(agent_id)
        return lost

    def saw_polls(self, polled: dict[str, float]) -> bool:
        """Note agents seen polling: ``polled`` maps task queues to their last poll.

        Times are epoch seconds. Returns whether a lost agent came back.
        """
        back = False
        for record in self.state.agents.values():
            at = polled.get(record.info.task_queue)
            if at is None:
                continue
            seen = datetime.fromtimestamp(at, UTC)
            if record.last_seen is None or seen > record.last_seen:
                record.last_seen = seen
                if record.state == "lost":  # as when it registers again
                    record.state, back = "active", True
        return back

    def request(self, request: PlacementRequest) -> None:
        """Queue items for the next iteration (a repeated key is queued once).

        A key its requester still holds reserved is not queued: its requester
        asked before releasing it, as jobs started before the in-order mailbox
        (``workflows/common.py``) could when a task was retried at once. If the
        release follows before the next iteration, the request is queued then;
        if not, the next iteration tells the requester where its reservation
        is. Either way the task does not wait forever.
        """
        for item in request.all_items():
            held = self.state.reservations.get(item.key)
            pending = PendingRequest(requester=request.requester, item=item)
            if held is None:
                self.state.pending[item.key] = pending
                self._requests.pop(item.key, None)
            elif held.requester == request.requester and self._answer_held:
                self._asked_again[item.key] = pending

    def release(self, request: ReleaseRequest) -> None:
        """Free the reservations, or withdraw the pending requests, of the keys."""
        for key in request.keys:
            self._drop_pending(key)
            self._drop_reservation(key)

    def _drop_reservation(self, key: str) -> None:
        reservation = self.state.reservations.pop(key, None)
        if reservation is not None:
            self._usage.remove(reservation)
        again = self._asked_again.pop(key, None)
        if again is not None:  # asked for before this release: wait for capacity now
            self.state.pending[key] = again

    def _drop_pending(self, key: str) -> None:
        self.state.pending.pop(key, None)
        self._requests.pop(key, None)

    def _reserve(self, key: str, reservation: Reservation) -> None:
        self._drop_pending(key)
        self.state.reservations[key] = reservation
        self._usage.add(reservation)

    def requesters(self) -> list[str]:
        """Every workflow that holds or waits for capacity, or (a fleet) offers it."""
        held = {r.requester for r in self.state.reservations.values()}
        fleets = {f.workflow_id for f in self.state.fleets.values()}
        return sorted(held | fleets | {p.requester for p in self.state.pending.values()})

    def set_agent_state(self, agent_id: str, state: str) -> None:
        """Mark an agent active, draining (no new placements) or lost."""
        record = self.state.agents.get(agent_id)
        if record is not None:
            record.state = state

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent (its host is gone); its reservations go with it."""
        self.state.agents.pop(agent_id, None)
        for key in sorted(self._usage.of_agent(agent_id).keys):
            self._drop_reservation(key)

    def release_requester(self, requester: str) -> None:
        """Drop everything held, asked for or (a fleet) offered by ``requester`` (it is gone)."""
        for key in [k for k, v in self.state.reservations.items() if v.requester == requester]:
            self._drop_reservation(key)
        for key in [k for k, v in self.state.pending.items() if v.requester == requester]:
            self._drop_pending(key)
        for name in [n for n, f in self.state.fleets.items() if f.workflow_id == requester]:
            del self.state.fleets[name]

    def set_fleet(self, capacity: FleetCapacity) -> None:
        """Record what a fleet can still launch; one without shapes (deleted) is forgotten."""
        if capacity.shapes:
            self.state.fleets[capacity.fleet] = capacity
        else:
            self.state.fleets.pop(capacity.fleet, None)

    def iterate(self) -> dict[str, PlacementUpdate]:
        """Place what can be placed now; return what each requester must be told."""
        updates: dict[str, PlacementUpdate] = {}

        def update_for(requester: str) -> PlacementUpdate:
            return updates.setdefault(requester, PlacementUpdate())

        self._tell_evictions(update_for)
        self._tell_asked_again(update_for)
        if not self.state.pending:
            return updates
        pending = list(self.state.pending.values())
        result = place(
            agents=[a for a in self.state.agents.values()],
            reservations=self._usage,
            items=[p.item for p in pending],
            groups=self.state.capacity_groups,
            fleets=[self.state.fleets[name] for name in sorted(self.state.fleets)],
            request_of=self._request_of,
            snapshots=self._snapshots,
        )
        self._build_request.clear()
        for request in pending:
            key = request.item.key
            if key in result.placed:
                agent_id, ports = result.placed[key]
                reservation = Reservation(
                    requester=request.requester, agent_id=agent_id, item=request.item, ports=ports
                )
                self._reserve(key, reservation)
                update_for(request.requester).placed.append(self._placed(reservation))
            elif key in result.rejected:
                self._drop_pending(key)
                update_for(request.requester).rejected.append(
                    Unplaced(key=key, reason=result.rejected[key])
                )
            else:
                reason = result.pending.get(key, "waiting for capacity")
                request.held_by_group = key in result.held_by_group
                if reason != request.reason:
                    request.reason = reason
                    update_for(request.requester).pending.append(Unplaced(key=key, reason=reason))
        return updates

    def _request_of(self, item: PlacementItem, tier: Tier) -> TaskRequest:
        """The scheduler's request for a pending item, built once (again if its tier changed)."""
        request = self._requests.get(item.key)
        if request is None or request.tier is not tier:
            request = self._requests[item.key] = self._build_request(item, tier)
        return request

    def _placed(self, reservation: Reservation) -> Placed:
        agent = self.state.agents[reservation.agent_id]
        return Placed(
            key=reservation.item.key,
            agent_id=reservation.agent_id,
            task_queue=agent.info.task_queue,
            ports=reservation.ports,
        )

    def _tell_asked_again(self, update_for: Callable[[str], PlacementUpdate]) -> None:
        """Tell requesters again where the reservations they asked for anew are."""
        for key, again in self._asked_again.items():
            reservation = self.state.reservations[key]
            update_for(again.requester).placed.append(self._placed(reservation))
        self._asked_again.clear()

    def _tell_evictions(self, update_for: Callable[[str], PlacementUpdate]) -> None:
        """Tell requesters, once, of their reservations on draining agents.

        Service jobs move those tasks within their disruption budget; batch jobs
        ignore it and let their tasks finish where they are.
        """
        draining = {a for a, r in self.state.agents.items() if r.state == "draining"}
        if not draining:
            return
        for key, reservation in self.state.reservations.items():
            if reservation.agent_id in draining and not reservation.evicting:
                reservation.evicting = True
                update_for(reservation.requester).evict.append(key)

    def put_capacity_group(self, group: CapacityGroup) -> CapacityGroupView:
        """Create or replace a capacity group; the next iteration applies it."""
        self.state.capacity_groups[group.name] = group
        return self._group_view(group, self._usage.groups())

    def capacity_group_views(self) -> list[CapacityGroupView]:
        """Every defined group, and the implicit default one, with its usage."""
        usage = self._usage.groups()
        groups = dict(self.state.capacity_groups)
        groups.setdefault(DEFAULT_GROUP, CapacityGroup(name=DEFAULT_GROUP))
        return [self._group_view(groups[name], usage) for name in sorted(groups)]

    def _group_view(self, group: CapacityGroup, usage: dict[str, GroupUsage]) -> CapacityGroupView:
        used = usage.get(group.name, GroupUsage())
        return CapacityGroupView(
            group=group,
            defined=group.name in self.state.capacity_groups,
            used_cpu=used.millicores / 1000,
            used_memory=used.memory_mib,
            tasks=used.tasks,
            pending=sum(
                1 for p in self.state.pending.values() if p.item.capacity_group == group.name
            ),
        )

    def pending_demand(self) -> list[PendingDemand]:
        """What waits for capacity that more agents would serve, alike requests of a job as one.

        Requests their capacity group holds back are left out. Grouped by job,
        resources, constraints and reason (in FIFO order of each group's first):
        10,000 pending tasks of one job are one entry, not 10,000 (issue 11).
        """
        groups: dict[tuple[str, str, str, str | None], PendingDemand] = {}
        dumped: dict[int, str] = {}  # items of one request share their specs' objects

        def dump(spec: Resources | Constraints) -> str:
            if id(spec) not in dumped:
                dumped[id(spec)] = spec.model_dump_json()
            return dumped[id(spec)]

        for pending in self.state.pending.values():
            if pending.held_by_group:
                continue
            item = pending.item
            alike = (item.job_id, dump(item.resources), dump(item.constraints), pending.reason)
            group = groups.get(alike)
            if group is None:
                groups[alike] = PendingDemand(
                    key=item.key,
                    job_id=item.job_id,
                    resources=item.resources,
                    constraints=item.constraints,
                    reason=pending.reason,
                )
            else:
                group.count += 1
        return list(groups.values())

    def agent_views(self, query: AgentQuery | None = None) -> list[AgentView]:
        """A page of agents (all of them without ``query``), each with its reserved capacity.

        Tasks are counted, not listed: see :meth:`agent_tasks`.
        """
        records = sorted(self.state.agents.items())
        if query is not None:
            records = [
                (agent_id, record)
                for agent_id, record in records
                if query.agent_id in (None, agent_id) and query.state in (None, record.state)
            ][query.offset : query.offset + query.limit]
        return [self._agent_view(agent_id, record) for agent_id, record in records]

    def _agent_view(self, agent_id: str, record: AgentRecord) -> AgentView:
        usage = self._usage.of_agent(agent_id)
        return AgentView(
            agent_id=agent_id,
            task_queue=record.info.task_queue,
            state=record.state,
            attributes=record.info.attributes,
            total=record.info.resources,
            reserved_cpu=usage.used[0] / 1000,
            reserved_memory=usage.used[1],
            task_count=len(usage.keys),
        )

    def agent_tasks(self, query: AgentTasksQuery) -> AgentTasks:
        """A page of the keys of the tasks holding capacity on ``query.agent_id``."""
        keys = sorted(self._usage.of_agent(query.agent_id).keys)
        return AgentTasks(
            agent_id=query.agent_id,
            total=len(keys),
            offset=query.offset,
            tasks=keys[query.offset : query.offset + query.limit],
        )
