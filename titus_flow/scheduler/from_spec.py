"""Build scheduler requests from the user-facing job spec.

Kept apart so the scheduler core never imports pydantic: the spec types are only
needed here for type checking, and are read attribute by attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from titus_flow.scheduler.model import (
    CapacityGroup,
    PlacementRules,
    ResourceVector,
    TaskRequest,
    Tier,
)

if TYPE_CHECKING:
    from titus_flow import spec
    from titus_flow.spec import Constraints, ConstraintSet, Resources


def resources_from_spec(resources: Resources) -> ResourceVector:
    """The spec's resources in scheduler units (millicores, MiB, Mbit/s, GPUs)."""
    return ResourceVector(
        millicores=resources.millicores,
        memory_mib=resources.memory,
        disk_mib=resources.disk,
        network_mbps=resources.network_mbps,
        gpu=resources.gpu,
    )


def rules_from_spec(rules: ConstraintSet) -> PlacementRules:
    """One spec constraint set as scheduler rules."""
    return PlacementRules(
        unique_host=rules.unique_host,
        zone_balance=rules.zone_balance,
        attributes=dict(rules.attributes),
    )


def request_from_spec(
    task_id: str,
    job_id: str,
    resources: Resources,
    constraints: Constraints,
    *,
    ports: int = 0,
    capacity_group: str = "default",
    tier: Tier = Tier.FLEX,
    avoid: frozenset[str] = frozenset(),
) -> TaskRequest:
    """A task request for one task of a job, from the job's spec.

    ``ports`` is how many host ports the task needs: ``len(job.container.ports)``;
    ``avoid`` the agents to rank last.
    """
    return TaskRequest(
        task_id=task_id,
        job_id=job_id,
        resources=resources_from_spec(resources),
        ports=ports,
        hard=rules_from_spec(constraints.hard),
        soft=rules_from_spec(constraints.soft),
        capacity_group=capacity_group,
        tier=tier,
        avoid=avoid,
    )


def group_from_spec(group: spec.CapacityGroup) -> CapacityGroup:
    """A spec capacity group in scheduler units (millicores, MiB); unset limits stay ``None``."""
    limit, guarantee = group.limit, group.guarantee
    return CapacityGroup(
        name=group.name,
        tier=Tier(group.tier),
        max_millicores=limit.millicores if limit else None,
        max_memory_mib=limit.memory if limit else None,
        max_tasks=limit.tasks if limit else None,
        guaranteed_millicores=guarantee.millicores if guarantee else 0,
        guaranteed_memory_mib=guarantee.memory if guarantee else 0,
    )
