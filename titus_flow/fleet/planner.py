"""Scale decisions of a fleet: pure, deterministic, no I/O.

One call of :func:`plan` takes the fleet spec, its instances (with what their
agents are doing) and the scheduler's unplaced demand, and says:

* **replace**: instances that died (stopped or terminated without being asked,
  or never registered an agent within ``boot_timeout``) are cleaned up. A new
  instance of the same type in the same zone takes the place of each one that
  demand still needs: it ran tasks (they come back as pending demand once their
  agent is lost) or it never booted (the demand it was launched for still
  waits). An idle one is not replaced; ``min`` is topped up anyway.
* **launch**: demand is first packed onto capacity already coming (booting
  instances and replacements), then bin-packed first-fit-decreasing onto new
  instances, each opened as the cheapest type that holds the task (ties: the
  smaller type, then the name), in the zone with the fewest instances. Never
  beyond ``max``, counting instances still booting. Then ``min`` is topped up
  with the fleet's first type.
* **scale_in**: when nothing is launched, instances whose agent has been idle
  for ``idle_timeout``, longest idle first, never below ``min``; above ``max``
  (after a scale), idle instances go without waiting for the timeout.

Each new instance is on-demand while fewer than ``on_demand_base`` are, then
spot for ``spot_percentage`` of the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from titus_flow.fleet.messages import Market
from titus_flow.fleet.spec import FleetSpec, InstanceType
from titus_flow.fleet.userdata import FLEET_ATTRIBUTE
from titus_flow.scheduler.filters import Matchers, matches
from titus_flow.scheduler.model import ResourceVector

DEAD_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})


@dataclass(frozen=True)
class Demand:
    """``count`` alike tasks the current agents cannot place: each one's size and hard rules.

    ``key`` names them (in :attr:`Plan.unfit`). A group is packed as its tasks one by
    one would be: next to each other, since they sort alike.
    """

    key: str
    resources: ResourceVector
    attributes: Matchers = ()
    count: int = 1


@dataclass(frozen=True)
class Member:
    """One instance of the fleet and what its agent is doing."""

    instance_id: str
    instance_type: str
    zone: str
    state: str
    launched_at: datetime
    market: Market = "on-demand"
    registered: bool = False  # its agent has registered with the scheduler
    tasks: int = 0
    idle_since: datetime | None = None
    leaving: bool = False  # being drained or terminated by the fleet


@dataclass(frozen=True)
class Launch:
    """Start ``count`` instances; ``options`` are (type, subnet, zone) in fallback order."""

    instance_type: str
    zone: str
    market: Market
    count: int
    options: tuple[tuple[str, str, str], ...]


@dataclass
class Plan:
    """What the fleet does this round, and why tasks stay unserved."""

    launches: list[Launch] = field(default_factory=list)
    scale_in: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    unfit: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Whether nothing changes."""
        return not (self.launches or self.scale_in or self.replace)


def capacity(spec: FleetSpec, instance_type: InstanceType) -> ResourceVector:
    """What the agent on an instance of this type offers the scheduler."""
    return ResourceVector(
        millicores=round(instance_type.cpu * 1000),
        memory_mib=spec.offered_memory(instance_type),
        disk_mib=instance_type.disk,
        network_mbps=instance_type.network_mbps,
    )


def ranked_types(spec: FleetSpec) -> list[InstanceType]:
    """The fleet's types, cheapest first (unpriced after priced), then smallest, then name."""
    return sorted(
        spec.instance_types,
        key=lambda t: (t.price is None, t.price or 0.0, t.cpu, t.memory, t.name),
    )


def agent_attributes(spec: FleetSpec, instance_type: str, zone: str) -> dict[str, str]:
    """The attributes the agent of a new instance of this type in ``zone`` registers with.

    ``instance_id`` is absent: no rule naming an instance can be met by a new one.
    """
    return {
        **spec.agent.attributes,
        FLEET_ATTRIBUTE: spec.name,
        "zone": zone,
        "instance_type": instance_type,
    }


@dataclass
class _Bin:
    """Capacity coming (booting or planned) that demand is packed onto."""

    instance_type: InstanceType
    zone: str
    free: ResourceVector
    new: bool
    market: Market = "on-demand"
    rules: list[Matchers] = field(default_factory=list)  # of the tasks packed here

    def hold(self, demand: Demand) -> None:
        self.free = _take(self.free, demand.resources)
        self.rules.append(demand.attributes)


def _take(free: ResourceVector, used: ResourceVector) -> ResourceVector:
    return ResourceVector(
        millicores=free.millicores - used.millicores,
        memory_mib=free.memory_mib - used.memory_mib,
        disk_mib=free.disk_mib - used.disk_mib,
        network_mbps=free.network_mbps - used.network_mbps,
        gpu=free.gpu - used.gpu,
    )


def is_dead(member: Member, spec: FleetSpec, now: datetime) -> bool:
    """Whether the instance is gone without the fleet asking, or never booted an agent."""
    if member.leaving:
        return False
    if member.state in DEAD_STATES:
        return True
    return not member.registered and now - member.launched_at > spec.boot_timeout


class _Planner:
    """One planning round; holds the running counts while bins are opened."""

    def __init__(self, spec: FleetSpec, members: Sequence[Member], now: datetime) -> None:
        self.spec = spec
        self.now = now
        self.types = ranked_types(spec)
        self.dead = [m for m in members if is_dead(m, spec, now)]
        self.alive = [
            m
            for m in members
            if not m.leaving and m not in self.dead and m.state not in DEAD_STATES
        ]
        self.zones = Counter(m.zone for m in self.alive)
        self.bins: list[_Bin] = []
        self.markets = Counter(m.market for m in self.alive)

    @property
    def headroom(self) -> int:
        return self.spec.max - len(self.alive) - sum(b.new for b in self.bins)

    def open_bin(self, instance_type: InstanceType, zone: str) -> _Bin:
        new = _Bin(instance_type, zone, capacity(self.spec, instance_type), True, self.market())
        self.bins.append(new)
        self.zones[zone] += 1
        self.markets[new.market] += 1
        return new

    def market(self) -> Market:
        purchase = self.spec.purchase
        on_demand, spot = self.markets["on-demand"], self.markets["spot"]
        if on_demand < purchase.on_demand_base:
            return "on-demand"
        above = on_demand - purchase.on_demand_base + spot
        return "spot" if (spot + 1) * 100 <= purchase.spot_percentage * (above + 1) else "on-demand"

    def zone_for(self, instance_type: InstanceType, demand: Demand | None) -> str | None:
        """The allowed zone with the fewest instances (ties: subnet order)."""
        zones = list(dict.fromkeys(s.zone for s in self.spec.subnets))
        allowed = [
            z
            for z in zones
            if demand is None
            or matches(agent_attributes(self.spec, instance_type.name, z), demand.attributes)
        ]
        return min(allowed, key=lambda z: (self.zones[z], zones.index(z)), default=None)

    def fits_bin(self, b: _Bin, demand: Demand) -> bool:
        return b.free.covers(demand.resources) and matches(
            agent_attributes(self.spec, b.instance_type.name, b.zone), demand.attributes
        )

    def place(self, demand: Demand) -> str | None:
        """Pack ``demand`` onto coming capacity or a new bin; None, or why not."""
        for b in self.bins:
            if self.fits_bin(b, demand):
                b.hold(demand)
                return None
        for instance_type in self.types:
            if not capacity(self.spec, instance_type).covers(demand.resources):
                continue
            zone = self.zone_for(instance_type, demand)
            if zone is None:
                continue
            if self.headroom <= 0:
                return f"fleet {self.spec.name} is at max ({self.spec.max} instances)"
            self.open_bin(instance_type, zone).hold(demand)
            return None
        return f"no instance type of fleet {self.spec.name} holds it in an allowed zone"

    def options(self, b: _Bin) -> tuple[tuple[str, str, str], ...]:
        """Fallbacks: this type in every subnet (its zone first), then each larger type.

        Only (type, zone) pairs every task packed in the bin allows.
        """
        need = capacity(self.spec, b.instance_type)
        types = [b.instance_type] + [
            t
            for t in self.types
            if t is not b.instance_type and capacity(self.spec, t).covers(need)
        ]
        subnets = sorted(self.spec.subnets, key=lambda s: s.zone != b.zone)  # stable
        return tuple(
            (t.name, s.id, s.zone)
            for t in types
            for s in subnets
            if all(matches(agent_attributes(self.spec, t.name, s.zone), r) for r in b.rules)
        )


def _launches(planner: _Planner) -> list[Launch]:
    grouped: dict[tuple[str, str, Market], list[_Bin]] = {}
    for b in planner.bins:
        if b.new:
            grouped.setdefault((b.instance_type.name, b.zone, b.market), []).append(b)
    return [
        Launch(name, zone, market, len(bins), planner.options(bins[0]))
        for (name, zone, market), bins in grouped.items()
    ]


def _size(demand: Demand) -> tuple[int, int, str]:
    return (-demand.resources.millicores, -demand.resources.memory_mib, demand.key)


def plan(
    spec: FleetSpec, members: Sequence[Member], demand: Sequence[Demand], now: datetime
) -> Plan:
    """Decide this round's launches, scale-ins and replacements (see the module doc)."""
    planner = _Planner(spec, members, now)
    result = Plan(replace=sorted(m.instance_id for m in planner.dead))
    for member in planner.alive:
        declared = spec.instance_type(member.instance_type)
        if declared is not None and not member.registered:
            planner.bins.append(_Bin(declared, member.zone, capacity(spec, declared), False))
    for dead in sorted(planner.dead, key=lambda m: m.instance_id):
        declared = spec.instance_type(dead.instance_type) or spec.instance_types[0]
        if (dead.tasks or not dead.registered) and planner.headroom > 0:
            planner.open_bin(declared, dead.zone)
    for item in sorted(demand, key=_size):
        for _ in range(item.count):
            why = planner.place(item)
            if why is not None:
                # Capacity only fills up: the group's other tasks fit no better.
                result.unfit[item.key] = why
                break
    while planner.headroom > 0 and len(planner.alive) + sum(b.new for b in planner.bins) < spec.min:
        first = spec.instance_types[0]
        planner.open_bin(first, planner.zone_for(first, None) or spec.subnets[0].zone)
    result.launches = _launches(planner)
    if not result.launches:
        result.scale_in = _scale_in(spec, planner.alive, now)
    return result


def _scale_in(spec: FleetSpec, alive: Sequence[Member], now: datetime) -> list[str]:
    idle = sorted(
        (m for m in alive if m.registered and m.tasks == 0 and m.idle_since is not None),
        key=lambda m: (m.idle_since, m.instance_id),
    )
    over_max = max(0, len(alive) - spec.max)
    chosen = [m.instance_id for m in idle[:over_max]]
    for member in idle[over_max:]:
        if len(alive) - len(chosen) <= spec.min:
            break
        assert member.idle_since is not None
        if now - member.idle_since >= spec.idle_timeout:
            chosen.append(member.instance_id)
    return chosen
