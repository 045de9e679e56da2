"""The cluster as one scheduling call sees it, updated as tasks are placed.

Inputs are immutable; this module copies what changes (free resources, ports,
tasks per job) into mutable slots, so a call never over-commits what it has
already handed out and the caller's objects stay untouched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from itertools import pairwise

from titus_flow.scheduler.best_fit import best_fit_score
from titus_flow.scheduler.dimensions import (
    CPU,
    DIMENSIONS,
    MEMORY,
    PORTS,
    Vector,
    capacity_of,
    free_of,
)
from titus_flow.scheduler.filters import Matchers, fewest_tasks_zones, fits, matches
from titus_flow.scheduler.model import (
    ZONE,
    Agent,
    AgentState,
    Placement,
    PlacementRules,
    TaskRequest,
)


class AgentSlot:
    """One agent's mutable state during a call."""

    __slots__ = (
        "_next_port",
        "_port_numbers",
        "agent",
        "free",
        "inverse_total",
        "jobs",
        "rank",
        "score",
        "zone",
    )

    def __init__(self, agent: Agent, rank: int) -> None:
        self.agent = agent
        self.rank = rank
        """Position in agent-id order: the deterministic tie-break."""
        self.free = list(free_of(agent))
        # Precomputed so ranking an agent is multiplications only.
        self.inverse_total = tuple(1 / total if total else 0.0 for total in capacity_of(agent))
        self.score = best_fit_score(self.free, self.inverse_total)
        """Best-fit score, kept current: it only changes when a task is placed here."""
        self.zone = agent.attributes.get(ZONE, "")
        self.jobs = dict(agent.jobs)
        self._port_numbers: Sequence[int] | None = (
            None if isinstance(agent.free_ports, int) else agent.free_ports
        )
        self._next_port = 0

    def take(self, demand: Vector, job_id: str) -> tuple[int, ...]:
        """Reserve ``demand`` for a task of ``job_id``; return the host ports it gets."""
        free = self.free
        for dimension, needed in enumerate(demand):
            free[dimension] -= needed
        self.score = best_fit_score(free, self.inverse_total)
        self.jobs[job_id] = self.jobs.get(job_id, 0) + 1
        count = demand[PORTS]
        if not count or self._port_numbers is None:
            return ()
        start = self._next_port
        self._next_port += count
        return tuple(self._port_numbers[start : start + count])


class ClusterState:
    """All agents of a call, indexed for the scheduler's questions."""

    def __init__(self, agents: Iterable[Agent], job_ids: Collection[str] = ()) -> None:
        ordered = sorted(agents, key=lambda agent: agent.id)
        for before, after in pairwise(ordered):
            if before.id == after.id:
                raise ValueError(f"duplicate agent id {after.id!r}")
        self.slots = [AgentSlot(agent, rank) for rank, agent in enumerate(ordered)]
        self.active = [slot for slot in self.slots if slot.agent.state is AgentState.ACTIVE]
        # Distinct machine shapes: enough to tell whether a request could ever fit.
        self.capacities = list(dict.fromkeys(capacity_of(agent) for agent in ordered))
        # Weights that turn a demand into its share of the active cluster, for ordering.
        totals = [0] * len(DIMENSIONS)
        for slot in self.active:
            for dimension, total in enumerate(capacity_of(slot.agent)):
                totals[dimension] += total
        self.size_weights = tuple(1 / total if total else 0.0 for total in totals)
        self.free_millicores = sum(slot.free[CPU] for slot in self.active)
        self.free_memory_mib = sum(slot.free[MEMORY] for slot in self.active)
        self._eligible: dict[Matchers, list[AgentSlot]] = {}
        self._by_zone: dict[Matchers, dict[str, list[AgentSlot]]] = {}
        self._zone_tasks: dict[str, dict[str, int]] = {job_id: {} for job_id in job_ids}
        for slot in self.slots:
            # Tasks on a lost agent are gone; on a draining one they still run.
            if slot.agent.state is AgentState.LOST:
                continue
            for job_id, count in slot.jobs.items():
                counts = self._zone_tasks.get(job_id)
                if counts is not None:
                    counts[slot.zone] = counts.get(slot.zone, 0) + count

    def eligible(self, rules: PlacementRules) -> list[AgentSlot]:
        """Active agents whose attributes satisfy ``rules`` (cached: attributes never change)."""
        key = rules.matchers
        found = self._eligible.get(key)
        if found is None:
            found = [slot for slot in self.active if matches(slot.agent.attributes, key)]
            self._eligible[key] = found
            by_zone: dict[str, list[AgentSlot]] = {}
            for slot in found:
                by_zone.setdefault(slot.zone, []).append(slot)
            self._by_zone[key] = by_zone
        return found

    def eligible_by_zone(self, rules: PlacementRules) -> dict[str, list[AgentSlot]]:
        """:meth:`eligible` split by zone; zones in agent-id order of their first agent."""
        self.eligible(rules)
        return self._by_zone[rules.matchers]

    def zone_tasks(self, job_id: str) -> dict[str, int]:
        """Tasks of ``job_id`` per zone, live: placements in this call update it."""
        return self._zone_tasks.setdefault(job_id, {})

    def balanced_zones(self, task: TaskRequest) -> frozenset[str] | None:
        """Zones a hard ``zone_balance`` task may go to now, or ``None`` if it has no such rule."""
        if not task.hard.zone_balance:
            return None
        return fewest_tasks_zones(self.zone_tasks(task.job_id), self.eligible_by_zone(task.hard))

    def can_ever_hold(self, demand: Vector) -> bool:
        """Whether some agent's total capacity, empty, could hold ``demand``."""
        return any(fits(capacity, demand) for capacity in self.capacities)

    def place(self, slot: AgentSlot, task: TaskRequest, demand: Vector) -> Placement:
        """Bind ``task`` to ``slot`` and account for everything it uses."""
        ports = slot.take(demand, task.job_id)
        counts = self.zone_tasks(task.job_id)
        counts[slot.zone] = counts.get(slot.zone, 0) + 1
        self.free_millicores -= demand[CPU]
        self.free_memory_mib -= demand[MEMORY]
        return Placement(task.task_id, slot.agent.id, ports)
