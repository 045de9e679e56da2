"""The plain data the scheduler takes and returns.

Everything here is a frozen, slotted dataclass of ints and strings: the hot path
never validates, converts units or touches pydantic. Resources are integers in
the scheduler's units (millicores, MiB, Mbit/s, whole GPUs, host-port counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

ZONE = "zone"
"""The agent attribute that names its availability zone (``zone_balance`` spreads over it)."""


class AgentState(StrEnum):
    """Whether an agent takes new tasks: only ``active`` ones do."""

    ACTIVE = "active"
    DRAINING = "draining"
    LOST = "lost"


class Tier(StrEnum):
    """Scheduling tier: critical tasks go first and may use capacity guaranteed to groups."""

    CRITICAL = "critical"
    FLEX = "flex"


@dataclass(frozen=True, slots=True)
class ResourceVector:
    """An amount of every scalar resource, as non-negative integers."""

    millicores: int = 0
    memory_mib: int = 0
    disk_mib: int = 0
    network_mbps: int = 0
    gpu: int = 0

    def __post_init__(self) -> None:
        # Field by field: ``dataclasses.astuple`` deep-copies each value, and this
        # runs for every pending task of every scheduling iteration (issue 11).
        if min(self.millicores, self.memory_mib, self.disk_mib, self.network_mbps, self.gpu) < 0:
            raise ValueError(f"resources cannot be negative: {self}")

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """The amounts in field order."""
        return (self.millicores, self.memory_mib, self.disk_mib, self.network_mbps, self.gpu)

    def covers(self, other: ResourceVector) -> bool:
        """Whether every amount here is at least the one in ``other``."""
        return all(
            mine >= theirs for mine, theirs in zip(self.as_tuple(), other.as_tuple(), strict=True)
        )


def _normalize(
    attributes: Mapping[str, str | Sequence[str]],
) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple(
        (key, frozenset((value,) if isinstance(value, str) else value))
        for key, value in sorted(attributes.items())
    )


@dataclass(frozen=True, slots=True)
class PlacementRules:
    """One set of placement rules, mirroring :class:`titus_flow.spec.ConstraintSet`.

    ``attributes`` maps an agent attribute to the value it must equal, or to the
    values it must be one of. Two rule sets compare (and hash) by meaning, so
    ``{"zone": "a"}`` equals ``{"zone": ["a"]}``.
    """

    unique_host: bool = False
    zone_balance: bool = False
    attributes: Mapping[str, str | Sequence[str]] = field(
        default_factory=dict, compare=False, hash=False
    )
    matchers: tuple[tuple[str, frozenset[str]], ...] = field(init=False, repr=False)
    """``attributes`` as ``(key, allowed values)`` pairs sorted by key (derived)."""

    def __post_init__(self) -> None:
        # Frozen, so set the derived field the way dataclasses do internally.
        object.__setattr__(self, "matchers", _normalize(self.attributes))


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One pending task: what it needs, where it may and should go, whose capacity it uses."""

    task_id: str
    job_id: str
    resources: ResourceVector = field(default_factory=ResourceVector)
    ports: int = 0
    """How many host ports the task needs."""
    hard: PlacementRules = field(default_factory=PlacementRules)
    """Rules every placement obeys; agents that break one are filtered out."""
    soft: PlacementRules = field(default_factory=PlacementRules)
    """Preferences: they only rank the agents that pass the hard rules."""
    capacity_group: str = "default"
    tier: Tier = Tier.FLEX
    """Critical tasks are placed first and may use capacity held back for guarantees."""
    avoid: frozenset[str] = frozenset()
    """Agent ids ranked last (as one broken soft rule), e.g. where the task just failed."""

    def __post_init__(self) -> None:
        if self.ports < 0:
            raise ValueError(f"task {self.task_id}: ports cannot be negative")


@dataclass(frozen=True, slots=True)
class Agent:
    """A machine tasks can be placed on, as the caller last saw it.

    ``attributes`` are matched by constraints; the :data:`ZONE` attribute names
    the zone (an agent without one is in zone ``""``). ``free_ports`` is either
    the free host port numbers (a ``range`` is fine; placements take them in
    order) or, when the agent picks its own ports, just how many are free.
    ``jobs`` counts the tasks of each job already running here: it drives
    ``unique_host`` and ``zone_balance`` (from a set of job ids, pass
    ``dict.fromkeys(ids, 1)``).
    """

    id: str
    total: ResourceVector
    free: ResourceVector
    attributes: Mapping[str, str] = field(default_factory=dict)
    state: AgentState = AgentState.ACTIVE
    free_ports: int | Sequence[int] = 0
    total_ports: int | None = None
    """All host ports the agent has; ``None`` means as many as are free now."""
    jobs: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.total.covers(self.free):
            raise ValueError(f"agent {self.id}: free {self.free} exceeds total {self.total}")
        if self.free_port_count < 0 or self.port_capacity < self.free_port_count:
            raise ValueError(f"agent {self.id}: inconsistent port counts")

    @property
    def free_port_count(self) -> int:
        """How many host ports are free."""
        return self.free_ports if isinstance(self.free_ports, int) else len(self.free_ports)

    @property
    def port_capacity(self) -> int:
        """How many host ports the agent has in all."""
        return self.free_port_count if self.total_ports is None else self.total_ports


@dataclass(frozen=True, slots=True)
class CapacityGroup:
    """A named share of the cluster: optional limits, and (for critical groups) a guarantee.

    A group at a limit keeps its further tasks pending. The part of a critical
    group's guarantee it does not use yet is held back from flex tasks of other
    groups, cluster-wide. Limits and guarantees left ``None`` / 0 do not apply.
    """

    name: str
    tier: Tier = Tier.FLEX
    """Only a critical group's guarantee is held back; tasks carry their own tier."""
    max_millicores: int | None = None
    max_memory_mib: int | None = None
    max_tasks: int | None = None
    guaranteed_millicores: int = 0
    guaranteed_memory_mib: int = 0


@dataclass(frozen=True, slots=True)
class GroupUsage:
    """What a capacity group's running tasks use now."""

    millicores: int = 0
    memory_mib: int = 0
    tasks: int = 0


@dataclass(frozen=True, slots=True)
class Placement:
    """A task bound to an agent, with the host ports allocated to it (if it asked for any)."""

    task_id: str
    agent_id: str
    ports: tuple[int, ...] = ()


class ReasonCode(StrEnum):
    """Why a task stays pending; only ``never_fits`` is permanent."""

    NEVER_FITS = "never_fits"
    NO_ACTIVE_AGENT = "no_active_agent"
    NO_MATCHING_AGENT = "no_matching_agent"
    UNIQUE_HOST = "unique_host"
    ZONE_BALANCE = "zone_balance"
    INSUFFICIENT_RESOURCES = "insufficient_resources"
    GROUP_LIMIT = "group_limit"
    GUARANTEE_RESERVED = "guarantee_reserved"


Reason = tuple[ReasonCode, str]
"""A pending code and its human-readable message."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A task left unplaced, with a reason a person can act on."""

    task_id: str
    code: ReasonCode
    message: str

    @property
    def never_fits(self) -> bool:
        """True when no agent's *total* capacity (of any state) could hold the task.

        Waiting cannot help: the caller should fail the task as an invalid request.
        """
        return self.code is ReasonCode.NEVER_FITS


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    """The outcome of one call: placements in the order they were made, and the rest.

    Every task passed in is in exactly one of the two mappings (keyed by task id).
    """

    placements: dict[str, Placement]
    pending: dict[str, Pending]

    def never_fits(self) -> list[str]:
        """Ids of the pending tasks that can never be placed (invalid requests)."""
        return [task_id for task_id, reason in self.pending.items() if reason.never_fits]
