"""The capacity ledger: the one authority for what is reserved where.

Pure and deterministic (the scheduler workflow owns one and carries its state
across continue-as-new). Each :meth:`Ledger.iterate` runs one scheduling
iteration over every pending request at once, Fenzo style.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from titus_flow.contracts import (
    AgentInfo,
    AgentView,
    Message,
    Placed,
    PlacementItem,
    PlacementRequest,
    PlacementUpdate,
    ReleaseRequest,
    Unplaced,
)
from titus_flow.placement import place


class AgentRecord(Message):
    """An agent and what the ledger knows of its health."""

    info: AgentInfo
    state: str = "active"  # active | draining | lost
    last_seen: datetime | None = None


class Reservation(Message):
    """Capacity held on an agent for one task."""

    requester: str
    agent_id: str
    item: PlacementItem
    ports: dict[str, int] = Field(default_factory=dict)


class PendingRequest(Message):
    """A request waiting for capacity; ``reason`` as last told to its requester."""

    requester: str
    item: PlacementItem
    reason: str | None = None


class LedgerState(Message):
    """Everything the ledger knows; small enough to carry over continue-as-new."""

    agents: dict[str, AgentRecord] = Field(default_factory=dict)
    reservations: dict[str, Reservation] = Field(default_factory=dict)
    pending: dict[str, PendingRequest] = Field(default_factory=dict)  # FIFO order
    # An agent not heard from for this long is lost (agents re-register every 15 s).
    agent_silence_seconds: float = 45.0


class Ledger:
    """Reservations and pending requests over the registered agents."""

    def __init__(self, state: LedgerState | None = None) -> None:
        self.state = state or LedgerState()

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

    def request(self, request: PlacementRequest) -> None:
        """Queue items for the next iteration (a repeated key is queued once)."""
        for item in request.items:
            if item.key not in self.state.reservations:
                self.state.pending[item.key] = PendingRequest(
                    requester=request.requester, item=item
                )

    def release(self, request: ReleaseRequest) -> None:
        """Free the reservations, or withdraw the pending requests, of the keys."""
        for key in request.keys:
            self.state.reservations.pop(key, None)
            self.state.pending.pop(key, None)

    def requesters(self) -> list[str]:
        """Every workflow that holds or waits for capacity."""
        held = {r.requester for r in self.state.reservations.values()}
        return sorted(held | {p.requester for p in self.state.pending.values()})

    def set_agent_state(self, agent_id: str, state: str) -> None:
        """Mark an agent active, draining (no new placements) or lost."""
        record = self.state.agents.get(agent_id)
        if record is not None:
            record.state = state

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent (its host is gone); its reservations go with it."""
        self.state.agents.pop(agent_id, None)
        for key in [k for k, r in self.state.reservations.items() if r.agent_id == agent_id]:
            del self.state.reservations[key]

    def release_requester(self, requester: str) -> None:
        """Drop everything held or asked for by ``requester`` (it is gone)."""
        for table in (self.state.reservations, self.state.pending):
            for key in [k for k, v in table.items() if v.requester == requester]:
                del table[key]

    def iterate(self) -> dict[str, PlacementUpdate]:
        """Place what can be placed now; return what each requester must be told."""
        if not self.state.pending:
            return {}
        pending = list(self.state.pending.values())
        result = place(
            agents=[a for a in self.state.agents.values()],
            reservations=list(self.state.reservations.values()),
            items=[p.item for p in pending],
        )
        updates: dict[str, PlacementUpdate] = {}

        def update_for(requester: str) -> PlacementUpdate:
            return updates.setdefault(requester, PlacementUpdate())

        for request in pending:
            key = request.item.key
            if key in result.placed:
                agent_id, ports = result.placed[key]
                agent = self.state.agents[agent_id]
                del self.state.pending[key]
                self.state.reservations[key] = Reservation(
                    requester=request.requester, agent_id=agent_id, item=request.item, ports=ports
                )
                update_for(request.requester).placed.append(
                    Placed(
                        key=key, agent_id=agent_id, task_queue=agent.info.task_queue, ports=ports
                    )
                )
            elif key in result.rejected:
                del self.state.pending[key]
                update_for(request.requester).rejected.append(
                    Unplaced(key=key, reason=result.rejected[key])
                )
            else:
                reason = result.pending.get(key, "waiting for capacity")
                if reason != request.reason:
                    request.reason = reason
                    update_for(request.requester).pending.append(Unplaced(key=key, reason=reason))
        return updates

    def agent_views(self) -> list[AgentView]:
        """Each agent with its reserved capacity and tasks."""
        views = []
        for agent_id, record in sorted(self.state.agents.items()):
            held = [r for r in self.state.reservations.values() if r.agent_id == agent_id]
            views.append(
                AgentView(
                    agent_id=agent_id,
                    task_queue=record.info.task_queue,
                    state=record.state,
                    attributes=record.info.attributes,
                    total=record.info.resources,
                    reserved_cpu=sum(r.item.resources.cpu for r in held),
                    reserved_memory=sum(r.item.resources.memory for r in held),
                    tasks=sorted(r.item.key for r in held),
                )
            )
        return views
