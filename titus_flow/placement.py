"""Adapter between the ledger's records and the pure scheduler library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from titus_flow.contracts import PlacementItem
    from titus_flow.ledger import AgentRecord, Reservation


@dataclass
class PlaceResult:
    """Outcome of one iteration, keyed by item key."""

    placed: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


def place(
    agents: list[AgentRecord], reservations: list[Reservation], items: list[PlacementItem]
) -> PlaceResult:
    """Place ``items`` on ``agents`` given the current ``reservations``."""
    result = PlaceResult()
    active = [a for a in agents if a.state == "active"]
    free: dict[str, list[float]] = {}
    used_ports: dict[str, set[int]] = {a.info.agent_id: set() for a in agents}
    for a in active:
        r = a.info.resources
        free[a.info.agent_id] = [r.cpu, r.memory, r.disk]
    for res in reservations:
        if res.agent_id in free:
            f = free[res.agent_id]
            f[0] -= res.item.resources.cpu
            f[1] -= res.item.resources.memory
            f[2] -= res.item.resources.disk
        used_ports.setdefault(res.agent_id, set()).update(res.ports.values())
    for item in items:
        need = item.resources
        if not active:
            result.pending[item.key] = "no active agent"
            continue
        fits_total = [
            a
            for a in active
            if a.info.resources.cpu >= need.cpu
            and a.info.resources.memory >= need.memory
            and a.info.resources.disk >= need.disk
        ]
        if not fits_total:
            result.rejected[item.key] = (
                f"no agent can ever fit cpu={need.cpu}, memory={need.memory}Mi,"
                f" disk={need.disk}Mi: {len(active)} agent(s), largest has"
                f" {max(a.info.resources.memory for a in active)}Mi memory"
            )
            continue
        for a in fits_total:
            f = free[a.info.agent_id]
            if f[0] + 1e-9 >= need.cpu and f[1] >= need.memory and f[2] >= need.disk:
                lo, hi = a.info.port_range
                ports: dict[str, int] = {}
                taken = used_ports[a.info.agent_id]
                candidate = lo
                for name in item.ports:
                    while candidate in taken and candidate <= hi:
                        candidate += 1
                    ports[name] = candidate
                    taken.add(candidate)
                f[0] -= need.cpu
                f[1] -= need.memory
                f[2] -= need.disk
                result.placed[item.key] = (a.info.agent_id, ports)
                break
        else:
            result.pending[item.key] = "waiting for capacity: all agents are full"
    return result
