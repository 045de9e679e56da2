"""Adapter between the capacity ledger's records and the pure scheduler library.

Builds a :mod:`titus_flow.scheduler` snapshot (free resources, free ports and
tasks per job on each agent) from the agents and reservations, runs one
:func:`~titus_flow.scheduler.schedule` call, and maps the answer back to the
ledger's keys and named ports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

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

_K = TypeVar("_K", bound=Hashable)

if TYPE_CHECKING:
    from titus_flow.contracts import AgentInfo, PlacementItem
    from titus_flow.fleet.messages import FleetCapacity
    from titus_flow.ledger.records import AgentRecord, Reservation
    from titus_flow.spec import CapacityGroup


@dataclass
class PlaceResult:
    """Outcome of one iteration, keyed by item key."""

    placed: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    # Pending keys their capacity group holds back: a new agent (a fleet) would not help.
    held_by_group: set[str] = field(default_factory=set)


class AgentUsage:
    """What the reservations on one agent hold: resources, host ports, tasks per job."""

    __slots__ = ("jobs", "keys", "ports", "used", "version")

    def __init__(self) -> None:
        self.used = [0, 0, 0, 0, 0]  # millicores, MiB, disk MiB, Mbit/s, GPUs
        self.ports: Counter[int] = Counter()
        self.jobs: Counter[str] = Counter()
        self.keys: set[str] = set()
        self.version = 0  # changes counted in and out (0: never held anything)

    def add(self, reservation: Reservation, sign: int = 1) -> None:
        """Count ``reservation`` in (``sign`` 1) or out (``sign`` -1)."""
        self.version += 1
        item = reservation.item
        for dimension, amount in enumerate(_amounts(item)):
            self.used[dimension] += sign * amount
        _count(self.jobs, item.job_id, sign)
        for port in reservation.ports.values():
            _count(self.ports, port, sign)
        if sign > 0:
            self.keys.add(item.key)
        else:
            self.keys.discard(item.key)

    def free(self, total: ResourceVector) -> ResourceVector:
        """What is left of ``total``, never below zero.

        An agent that re-registers with less than it has reserved has nothing free.
        """
        cpu, memory, disk, network, gpu = self.used
        return ResourceVector(
            millicores=max(0, total.millicores - cpu),
            memory_mib=max(0, total.memory_mib - memory),
            disk_mib=max(0, total.disk_mib - disk),
            network_mbps=max(0, total.network_mbps - network),
            gpu=max(0, total.gpu - gpu),
        )


class Usage:
    """Reservations summed per agent and per capacity group, kept as they come and go.

    The ledger holds one current, so a scheduling iteration costs what the agents
    and the pending requests cost, not what every reservation of the cluster
    does: summing 10,000 reservations again on every iteration was most of a
    busy scheduler workflow task.
    """

    def __init__(self, reservations: Iterable[Reservation] = ()) -> None:
        self.agents: dict[str, AgentUsage] = {}
        self._groups: dict[str, list[int]] = {}
        for reservation in reservations:
            self.add(reservation)

    def add(self, reservation: Reservation, sign: int = 1) -> None:
        """Count ``reservation`` in (``sign`` 1) or out (``sign`` -1)."""
        agent = self.agents.get(reservation.agent_id)
        if agent is None:
            agent = self.agents[reservation.agent_id] = AgentUsage()
        agent.add(reservation, sign)
        item = reservation.item
        group = self._groups.setdefault(item.capacity_group, [0, 0, 0])
        group[0] += sign * item.resources.millicores
        group[1] += sign * item.resources.memory
        group[2] += sign
        if not group[2]:
            del self._groups[item.capacity_group]

    def remove(self, reservation: Reservation) -> None:
        """Count ``reservation`` out (it was released)."""
        self.add(reservation, -1)

    def of_agent(self, agent_id: str) -> AgentUsage:
        """What is reserved on ``agent_id`` (nothing for an agent without reservations)."""
        return self.agents.get(agent_id) or AgentUsage()

    def groups(self) -> dict[str, GroupUsage]:
        """What each capacity group's reserved tasks use, by group name."""
        return {name: GroupUsage(*used) for name, used in self._groups.items()}


def _amounts(item: PlacementItem) -> tuple[int, int, int, int, int]:
    resources = item.resources
    return (
        resources.millicores,
        resources.memory,
        resources.disk,
        resources.network_mbps,
        resources.gpu,
    )


def _count(counter: Counter[_K], key: _K, sign: int) -> None:
    counter[key] += sign
    if counter[key] <= 0:
        del counter[key]


def _snapshot(record: AgentRecord, usage: AgentUsage, with_ports: bool) -> Agent:
    info = record.info
    total = resources_from_spec(info.resources)
    low, high = info.port_range
    taken = usage.ports
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
        free=usage.free(total),
        attributes=info.attributes,
        state=AgentState(record.state),
        free_ports=free_ports,
        total_ports=port_count,
        jobs=dict(usage.jobs),
    )


class Snapshots:
    """Each agent as the scheduler sees it, rebuilt only when the agent or its usage changed.

    A snapshot of 1,000 agents costs ~20 ms, on every scheduling iteration (and
    a scheduler workflow replaying its history runs hundreds of them: over a
    second of CPU in one workflow task, issue 11). Between iterations most
    agents neither re-register, change state nor gain or lose a task. Keyed by
    the agent's ``info`` object (replaced when it registers again), its state,
    its usage (object and :attr:`AgentUsage.version`) and whether ports are listed.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[AgentInfo, str, AgentUsage, int, bool, Agent]] = {}

    def of(self, agents: Sequence[AgentRecord], usage: Usage, with_ports: bool) -> list[Agent]:
        """The snapshot of ``agents`` (forgetting agents not among them)."""
        cache: dict[str, tuple[AgentInfo, str, AgentUsage, int, bool, Agent]] = {}
        out = []
        for record in agents:
            agent_id = record.info.agent_id
            used = usage.of_agent(agent_id)
            found = self._cache.get(agent_id)
            if (
                found is not None
                and found[0] is record.info
                and found[1] == record.state
                and (found[2] is used or found[3] == used.version == 0)
                and found[3] == used.version
                and found[4] == with_ports
            ):
                snapshot = found[5]
            else:
                snapshot = _snapshot(record, used, with_ports)
            cache[agent_id] = (record.info, record.state, used, used.version, with_ports, snapshot)
            out.append(snapshot)
        self._cache = cache
        return out


def group_usage(reservations: Iterable[Reservation]) -> dict[str, GroupUsage]:
    """What each capacity group's reserved tasks use, by group name."""
    return Usage(reservations).groups()


def task_request(item: PlacementItem, tier: Tier) -> TaskRequest:
    """The scheduler's request for ``item`` in a group of ``tier``."""
    return request_from_spec(
        item.key,
        item.job_id,
        item.resources,
        item.constraints,
        ports=len(item.ports),
        capacity_group=item.capacity_group,
        tier=tier,
        avoid=frozenset(item.avoid_agents),
    )


class TaskRequests:
    """Builds the scheduler's requests of items, converting each shared spec once.

    The items of one job's request share their ``resources`` and ``constraints``
    objects (:meth:`~titus_flow.contracts.ItemGroup.items`): 10,000 pending tasks
    of a job are then one conversion and 10,000 cheap copies, not 10,000
    conversions (a third of a 10,000-task scheduling iteration, issue 11).
    Specs are told apart by identity; the builder keeps a reference to each, so
    an id is never reused while it is cached. :meth:`clear` drops them.
    """

    def __init__(self) -> None:
        self._templates: dict[tuple[object, ...], tuple[PlacementItem, TaskRequest]] = {}

    def __call__(self, item: PlacementItem, tier: Tier) -> TaskRequest:
        """The scheduler's request for ``item`` in a group of ``tier`` (as :func:`task_request`)."""
        shape = (
            id(item.resources),
            id(item.constraints),
            item.job_id,
            item.capacity_group,
            len(item.ports),
            tuple(item.avoid_agents),
            tier,
        )
        found = self._templates.get(shape)
        if found is not None:
            template_item, template = found
            if (
                template_item.resources is item.resources
                and template_item.constraints is item.constraints
            ):
                return replace(template, task_id=item.key)
        request = task_request(item, tier)
        self._templates[shape] = (item, request)
        return request

    def clear(self) -> None:
        """Forget every spec (and the references that kept them)."""
        self._templates.clear()


def missing_group_reason(name: str) -> str:
    """Why a task of a job naming an undefined capacity group waits (until it is created)."""
    return (
        f"capacity group {name!r} does not exist;"
        f" create it with `titus-flow capacity-groups create {name}`"
    )


def place(
    agents: Sequence[AgentRecord],
    reservations: Iterable[Reservation] | Usage,
    items: Sequence[PlacementItem],
    *,
    groups: Mapping[str, CapacityGroup] | None = None,
    fleets: Sequence[FleetCapacity] = (),
    request_of: Callable[[PlacementItem, Tier], TaskRequest] | None = None,
    snapshots: Snapshots | None = None,
) -> PlaceResult:
    """Place ``items`` on ``agents`` given the current ``reservations``.

    ``reservations`` may come summed up already, as a :class:`Usage` the caller
    keeps current; ``request_of`` builds the scheduler's request of an item
    (the ledger passes one that remembers them; by default a :class:`TaskRequests`),
    ``snapshots`` the agents' snapshots of the previous call (the ledger keeps one).

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
    request_of = request_of or TaskRequests()
    waiting = {
        item.key: missing_group_reason(item.capacity_group)
        for item in items
        if item.capacity_group not in groups and item.capacity_group != DEFAULT_GROUP
    }
    items = [item for item in items if item.key not in waiting]
    tiers = {name: Tier(group.tier) for name, group in groups.items()}
    usage = reservations if isinstance(reservations, Usage) else Usage(reservations)
    with_ports = any(item.ports for item in items)
    snapshot = (snapshots or Snapshots()).of(agents, usage, with_ports)
    requests = [request_of(item, tiers.get(item.capacity_group, Tier.FLEX)) for item in items]
    result = schedule(
        snapshot,
        requests,
        groups=[group_from_spec(group) for group in groups.values()],
        usage=usage.groups(),
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
