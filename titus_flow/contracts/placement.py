"""Messages between job workflows and the scheduler: capacity asked for and placed.

Also what the scheduler answers about agents and capacity groups.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from titus_flow.contracts.base import Message
from titus_flow.spec import BatchJob, CapacityGroup, Constraints, Resources, ServiceJob
from titus_flow.spec.constraints import placement_constraints


class AgentInfo(Message):
    """What an agent declares when it registers."""

    agent_id: str
    task_queue: str
    resources: Resources
    attributes: dict[str, str] = Field(default_factory=dict)
    port_range: tuple[int, int] = (20000, 29999)


class PlacementItem(Message):
    """One task attempt that needs capacity."""

    key: str  # task id; one reservation per task at a time
    job_id: str
    resources: Resources
    constraints: Constraints = Field(default_factory=Constraints)
    capacity_group: str = "default"
    ports: list[str] = Field(default_factory=list)
    # Agents to place it elsewhere than if any other fits (a retry after a
    # platform failure there): ranked last, never excluded.
    avoid_agents: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _without_empty_avoid(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Left out when empty: items read as before (by schedulers of the
        # previous release too), and groups of identical tasks stay one group.
        data: dict[str, object] = handler(self)
        if not self.avoid_agents:
            data.pop("avoid_agents", None)
        return data

    @classmethod
    def for_task(
        cls,
        task_id: str,
        job_id: str,
        job: BatchJob | ServiceJob,
        avoid_agents: list[str] | None = None,
    ) -> PlacementItem:
        """The capacity one task of ``job`` needs, with the job's placement rules."""
        return cls(
            key=task_id,
            job_id=job_id,
            resources=job.resources,
            # A host-network task needs an agent that allows it (docs/security.md).
            constraints=placement_constraints(job.constraints, job.container.network),
            capacity_group=job.capacity_group,
            ports=job.container.ports,
            avoid_agents=avoid_agents or [],
        )


CompactKey = int | str
"""A key as carried in compact messages: ``n`` stands for ``f"{job_id}-{n}"`` (a task
id of the item's job), a string for itself."""


def compact_key(key: str, job_id: str) -> CompactKey:
    """``key`` as :data:`CompactKey` (a task index where it is one)."""
    prefix, _, index = key.rpartition("-")
    if prefix == job_id and index.isdigit() and str(int(index)) == index:
        return int(index)
    return key


def full_key(key: CompactKey, job_id: str) -> str:
    """The key a :data:`CompactKey` stands for."""
    return f"{job_id}-{key}" if isinstance(key, int) else key


class ItemGroup(Message):
    """Items that differ only by key: one shared spec and compact keys.

    A 500-task partition asks for capacity in one group of ~3 KB instead of 500
    items of ~320 bytes each (issue 11: no signal grows with tasks past a bound).
    """

    spec: PlacementItem  # its key is unused ("")
    keys: list[CompactKey]

    @classmethod
    def of(cls, items: list[PlacementItem]) -> list[ItemGroup]:
        """``items`` grouped by everything but their key, in order of first appearance."""
        groups: dict[str, ItemGroup] = {}
        for item in items:
            spec = item.model_copy(update={"key": ""})
            group = groups.get(shape := spec.model_dump_json())
            if group is None:
                group = groups[shape] = cls(spec=spec, keys=[])
            group.keys.append(compact_key(item.key, item.job_id))
        return list(groups.values())

    def items(self) -> list[PlacementItem]:
        """The items of the group."""
        job_id = self.spec.job_id
        return [self.spec.model_copy(update={"key": full_key(k, job_id)}) for k in self.keys]


class PlacementRequest(Message):
    """A batch of items from one job workflow, placed in the next iteration.

    Jobs send ``groups`` (compact); ``items`` is what jobs of earlier releases send.
    """

    requester: str  # workflow id the answer is signalled to
    items: list[PlacementItem] = Field(default_factory=list)
    groups: list[ItemGroup] = Field(default_factory=list)

    def all_items(self) -> list[PlacementItem]:
        """Every item asked for, in order."""
        return [*self.items, *(item for group in self.groups for item in group.items())]


class ReleaseRequest(Message):
    """Give back the reservations (or withdraw the pending requests) of ``keys``."""

    requester: str
    keys: list[str]


class Placed(Message):
    """Where an item was placed."""

    key: str
    agent_id: str
    task_queue: str
    ports: dict[str, int] = Field(default_factory=dict)


class Unplaced(Message):
    """An item not placed: waiting with a reason, or rejected for good."""

    key: str
    reason: str


class PlacementUpdate(Message):
    """The scheduler's answer to one requester for one iteration."""

    placed: list[Placed] = Field(default_factory=list)
    pending: list[Unplaced] = Field(default_factory=list)
    rejected: list[Unplaced] = Field(default_factory=list)
    # Keys of placed tasks whose agent is draining: a service job moves them.
    evict: list[str] = Field(default_factory=list)


class AgentView(Message):
    """An agent as the ledger sees it.

    ``task_count`` tasks hold capacity on it. Their keys are paged by the
    scheduler's ``agent_tasks`` query (issue 11: one view per agent must not
    grow with tasks); ``tasks`` lists them only in answers of schedulers of
    earlier releases, whose views are counted from it.
    """

    agent_id: str
    task_queue: str
    state: str
    attributes: dict[str, str]
    total: Resources
    reserved_cpu: float
    reserved_memory: int
    tasks: list[str] = Field(default_factory=list)
    task_count: int = 0

    @model_validator(mode="before")
    @classmethod
    def _count_listed_tasks(cls, data: Any) -> Any:
        if isinstance(data, dict) and "task_count" not in data:
            return {**data, "task_count": len(data.get("tasks") or ())}
        return data


class PutCapacityGroup(Message):
    """Create or replace a capacity group; ``expect`` says whether it may already exist."""

    group: CapacityGroup
    expect: Literal["any", "new", "existing"] = "any"


class CapacityGroupView(Message):
    """A capacity group and what its jobs hold and wait for now."""

    group: CapacityGroup
    defined: bool = True  # False: the implicit default group (flex, unlimited)
    used_cpu: float = 0.0  # cores reserved by its tasks
    used_memory: int = 0  # MiB
    tasks: int = 0  # tasks holding capacity
    pending: int = 0  # tasks waiting for capacity
