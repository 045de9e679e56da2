"""Adapter between the capacity ledger's records and the pure scheduler library.

Builds a :mod:`titus_flow.scheduler` snapshot (free resources, free ports and
tasks per job on each agent) from the agents and reservations, runs one
:func:`~titus_flow.scheduler.schedule` call, and maps the answer back to the
ledger's keys and named ports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from titus_flow.fleet.shapes import GROUP_REASONS, FleetOutlook
from titus_flow.scheduler import (
    Agent,
    AgentState,
    GroupUsage,
    ResourceVector,
    TaskRequest,
    Tier,
    request_from_spec,
    schedule,
)
from titus_flow.scheduler.from_spec import group_from_spec, resources_from_spec
from titus_flow.spec.capacity_group import DEFAULT_GROUP

if TYPE_CHECKING:
    from titus_flow.contracts import PlacementItem
    from titus_flow.fleet.messages import FleetCapacity
    from titus_flow.ledger import AgentRecord, Reservation
    from titus_flow.spec import CapacityGroup


@dataclass
class PlaceResult:
    """Outcome of one iteration, keyed by item key."""

    placed: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    # Pending keys their capacity group holds back: a new agent (a fleet) would not help.
    held_by_group: set[str] = field(default_factory=set)


def _minus(total: ResourceVector, used: Sequence[ResourceVector]) -> ResourceVector:
    """What is left of ``total`` after ``used``, never below zero.

    An agent that re-registers with less than it has reserved has nothing free.
    """
    return ResourceVector(
        millicores=max(0, total.millicores - sum(u.millicores for u in used)),
        memory_mib=max(0, total.memory_mib - sum(u.memory_mib for u in used)),
        disk_mib=max(0, total.disk_mib - sum(u.disk_mib for u in used)),
        network_mbps=max(0, total.network_mbps - sum(u.network_mbps for u in used)),
        gpu=max(0, total.gpu - sum(u.gpu for u in used)),
    )


def _snapshot(record: AgentRecord, held: Sequence[Reservation], with_ports: bool) -> Agent:
    info = record.info
    total = resources_from_spec(info.resources)
    low, high = info.port_range
    taken = {port for r in held for port in r.ports.values()}
    port_count = high - low + 1
    # Port numbers are listed only when some task wants ports: 10,000 ints per
    # agent per iteration is not free.
    free_ports: int | list[int] = (
        [p for p in range(low, high + 1) if p not in taken]
        if with_ports
        else port_count - len(taken)
    )
    return Agent(
        id=info.agent_id,
        total=total,
        free=_minus(total, [resources_from_spec(r.item.resources) for r in held]),
        attributes=info.attributes,
        state=AgentState(record.state),
        free_ports=free_ports,
        total_ports=port_count,
        jobs=Counter(r.item.job_id for r in held),
    )


def group_usage(reservations: Iterable[Reservation]) -> dict[str, GroupUsage]:
    """What each capacity group's reserved tasks use, by group name."""
    totals: dict[str, list[int]] = {}
    for reservation in reservations:
        item = reservation.item
        used = totals.setdefault(item.capacity_group, [0, 0, 0])
        used[0] += item.resources.millicores
        used[1] += item.resources.memory
        used[2] += 1
    return {name: GroupUsage(*used) for name, used in totals.items()}


def missing_group_reason(name: str) -> str:
    """Why a task of a job naming an undefined capacity group waits (until it is created)."""
    return (
        f"capacity group {name!r} does not exist;"
        f" create it with `titus-flow capacity-groups create {name}`"
    )


def place(
    agents: Sequence[AgentRecord],
    reservations: Sequence[Reservation],
    items: Sequence[PlacementItem],
    *,
    groups: Mapping[str, CapacityGroup] | None = None,
    fleets: Sequence[FleetCapacity] = (),
) -> PlaceResult:
    """Place ``items`` on ``agents`` given the current ``reservations``.

    ``groups`` are the defined capacity groups by name: each task gets its
    group's tier, limits and guarantees apply. The ``default`` group needs no
    definition (flex, unlimited); an item naming any other undefined group
    waits, so that creating the group later lets it run (Titus rejects such
    jobs instead).

    ``fleets`` are the agents EC2 fleets can still launch: a task no agent can
    ever hold waits if one of their instance types would (instead of being
    rejected), and pending reasons say what the fleets do about it.
    """
    groups = groups or {}
    waiting = {
        item.key: missing_group_reason(item.capacity_group)
        for item in items
        if item.capacity_group not in groups and item.capacity_group != DEFAULT_GROUP
    }
    items = [item for item in items if item.key not in waiting]
    tiers = {name: Tier(group.tier) for name, group in groups.items()}
    held: dict[str, list[Reservation]] = {a.info.agent_id: [] for a in agents}
    for reservation in reservations:
        held.setdefault(reservation.agent_id, []).append(reservation)
    with_ports = any(item.ports for item in items)
    snapshot = [_snapshot(a, held[a.info.agent_id], with_ports) for a in agents]
    requests: list[TaskRequest] = [
        request_from_spec(
            item.key,
            item.job_id,
            item.resources,
            item.constraints,
            ports=len(item.ports),
            capacity_group=item.capacity_group,
            tier=tiers.get(item.capacity_group, Tier.FLEX),
        )
        for item in items
    ]
    result = schedule(
        snapshot,
        requests,
        groups=[group_from_spec(group) for group in groups.values()],
        usage=group_usage(reservations),
    )
    by_key = {item.key: item for item in items}
    out = PlaceResult(pending=waiting, held_by_group=set(waiting))
    for key, placement in result.placements.items():
        out.placed[key] = (
            placement.agent_id,
            dict(zip(by_key[key].ports, placement.ports, strict=True)),
        )
    outlook = FleetOutlook(fleets)
    requested = {request.task_id: request for request in requests} if outlook else {}
    for key, pending in result.pending.items():
        fleet = outlook.reason(requested[key], pending.code) if outlook else None
        if pending.never_fits and snapshot and fleet is None:
            either = f"; no instance type of fleet {outlook.names()} holds it" if outlook else ""
            out.rejected[key] = pending.message + either
        else:
            out.pending[key] = f"{pending.message}; {fleet}" if fleet else pending.message
            if pending.code in GROUP_REASONS:
                out.held_by_group.add(key)
    return out
