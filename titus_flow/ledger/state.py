"""The ledger's state, plain and in the compact form carried across continue-as-new."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from titus_flow.cluster import agent_task_queue
from titus_flow.contracts import (
    AgentInfo,
    CompactKey,
    Message,
    PlacementItem,
    compact_key,
    full_key,
)
from titus_flow.events.model import EventTail
from titus_flow.fleet.messages import FleetCapacity
from titus_flow.ledger.records import AgentRecord, PendingRequest, Reservation
from titus_flow.spec import CapacityGroup


class LedgerState(Message):
    """Everything the ledger knows; small enough to carry over continue-as-new."""

    agents: dict[str, AgentRecord] = Field(default_factory=dict)
    reservations: dict[str, Reservation] = Field(default_factory=dict)
    pending: dict[str, PendingRequest] = Field(default_factory=dict)  # FIFO order
    capacity_groups: dict[str, CapacityGroup] = Field(default_factory=dict)  # by name
    fleets: dict[str, FleetCapacity] = Field(default_factory=dict)  # by fleet name
    # An agent not heard from for this long is lost (agents re-register every 15 s).
    agent_silence_seconds: float = 45.0

    def compact(self) -> CarriedLedger:
        """The state in the compact form carried across continue-as-new."""
        return CarriedLedger.of(self)


AgentEntry = list[str | int | None]
"""A carried agent: id, shape index, state, last seen (epoch ms or None), and its
task queue when it is not the one its id names."""


class CarriedLedger(Message):
    """A :class:`LedgerState` in compact form, carried across continue-as-new (issue 11).

    The plain state repeats every task's placement spec (~450 bytes a task; past
    ~4,600 tasks it passed Temporal's 2 MB payload limit). Here what tasks and
    agents share is written once, in ``specs`` (a requester and an item without
    its key) and ``shapes`` (an agent's info without id and queue), and each
    task costs a short list: a reservation ``[spec, key, agent, *ports]`` (host
    ports in the order of its spec's port names), a pending request ``[spec,
    key, reason, held by group]`` (reason an index into ``reasons``, -1 for
    none). Keys are :data:`~titus_flow.contracts.CompactKey`. About 14 bytes a
    task and 40 an agent.
    """

    format: Literal["compact-1"] = "compact-1"
    shapes: list[AgentInfo] = Field(default_factory=list)
    agents: list[AgentEntry] = Field(default_factory=list)
    specs: list[tuple[str, PlacementItem]] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    reservations: list[list[CompactKey]] = Field(default_factory=list)
    evicting: list[str] = Field(default_factory=list)  # keys of reservations being moved
    # Reservations whose host ports do not follow their spec's names (never expected).
    other_reservations: list[Reservation] = Field(default_factory=list)
    pending: list[list[CompactKey]] = Field(default_factory=list)  # FIFO order
    capacity_groups: dict[str, CapacityGroup] = Field(default_factory=dict)
    fleets: dict[str, FleetCapacity] = Field(default_factory=dict)
    agent_silence_seconds: float = 45.0
    events: EventTail | None = None  # the end of the scheduler's event journal

    @classmethod
    def of(cls, ledger: LedgerState) -> CarriedLedger:
        """The compact form of ``ledger``."""
        carried = cls(
            capacity_groups=ledger.capacity_groups,
            fleets=ledger.fleets,
            agent_silence_seconds=ledger.agent_silence_seconds,
        )
        shapes: dict[str, int] = {}
        agents: dict[str, int] = {}
        for agent_id, record in ledger.agents.items():
            shape = record.info.model_copy(update={"agent_id": "", "task_queue": ""})
            index = shapes.setdefault(shape.model_dump_json(), len(shapes))
            if index == len(carried.shapes):
                carried.shapes.append(shape)
            seen = record.last_seen
            entry: AgentEntry = [
                agent_id,
                index,
                record.state,
                None if seen is None else round(seen.timestamp() * 1000),
            ]
            if record.info.task_queue != agent_task_queue(agent_id):
                entry.append(record.info.task_queue)
            agents[agent_id] = len(carried.agents)
            carried.agents.append(entry)
        specs: dict[tuple[str, str], int] = {}

        def spec_of(requester: str, item: PlacementItem) -> int:
            spec = item.model_copy(update={"key": ""})
            index = specs.setdefault((requester, spec.model_dump_json()), len(specs))
            if index == len(carried.specs):
                carried.specs.append((requester, spec))
            return index

        for key, reservation in ledger.reservations.items():
            item = reservation.item
            if list(reservation.ports) != item.ports or reservation.agent_id not in agents:
                carried.other_reservations.append(reservation)
                continue
            carried.reservations.append(
                [
                    spec_of(reservation.requester, item),
                    compact_key(key, item.job_id),
                    agents[reservation.agent_id],
                    *reservation.ports.values(),
                ]
            )
            if reservation.evicting:
                carried.evicting.append(key)
        reasons: dict[str, int] = {}
        for key, pending in ledger.pending.items():
            reason = -1
            if pending.reason is not None:
                reason = reasons.setdefault(pending.reason, len(reasons))
                if reason == len(carried.reasons):
                    carried.reasons.append(pending.reason)
            carried.pending.append(
                [
                    spec_of(pending.requester, pending.item),
                    compact_key(key, pending.item.job_id),
                    reason,
                    int(pending.held_by_group),
                ]
            )
        return carried

    def expand(self) -> LedgerState:
        """The :class:`LedgerState` this stands for."""
        state = LedgerState(
            capacity_groups=self.capacity_groups,
            fleets=self.fleets,
            agent_silence_seconds=self.agent_silence_seconds,
        )
        agent_ids = []
        for agent_id, shape, agent_state, seen, *queue in self.agents:
            assert isinstance(agent_id, str) and isinstance(shape, int)
            task_queue = queue[0] if queue else agent_task_queue(agent_id)
            info = self.shapes[shape].model_copy(
                update={"agent_id": agent_id, "task_queue": task_queue}
            )
            state.agents[agent_id] = AgentRecord(
                info=info,
                state=str(agent_state),
                last_seen=None if seen is None else datetime.fromtimestamp(int(seen) / 1000, UTC),
            )
            agent_ids.append(agent_id)
        evicting = set(self.evicting)
        for spec, key, agent, *ports in self.reservations:
            requester, item = self.specs[int(spec)]
            task = full_key(key, item.job_id)
            state.reservations[task] = Reservation(
                requester=requester,
                agent_id=agent_ids[int(agent)],
                item=item.model_copy(update={"key": task}),
                ports={name: int(port) for name, port in zip(item.ports, ports, strict=True)},
                evicting=task in evicting,
            )
        for reservation in self.other_reservations:
            state.reservations[reservation.item.key] = reservation
        for spec, key, reason, held in self.pending:
            requester, item = self.specs[int(spec)]
            task = full_key(key, item.job_id)
            state.pending[task] = PendingRequest(
                requester=requester,
                item=item.model_copy(update={"key": task}),
                reason=None if reason == -1 else self.reasons[int(reason)],
                held_by_group=bool(held),
            )
        return state
