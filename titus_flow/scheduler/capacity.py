"""Capacity groups: per-group limits, and the guarantees of critical groups.

A group's limits cap what its tasks may use in all. A critical group's
guarantee is capacity kept for it: whatever part it does not use yet is held
back from flex tasks of other groups across the whole cluster (in aggregate,
not per agent: it keeps the room, not a particular machine).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from titus_flow.scheduler.dimensions import CPU, MEMORY, amount, phrase
from titus_flow.scheduler.model import (
    CapacityGroup,
    GroupUsage,
    Reason,
    ReasonCode,
    TaskRequest,
    Tier,
)
from titus_flow.scheduler.state import ClusterState


class CapacityLedger:
    """What each group uses, updated as tasks are placed, and who may place next."""

    def __init__(
        self,
        groups: Iterable[CapacityGroup],
        usage: Mapping[str, GroupUsage],
        state: ClusterState,
    ) -> None:
        self._groups: dict[str, CapacityGroup] = {}
        for group in groups:
            if group.name in self._groups:
                raise ValueError(f"duplicate capacity group {group.name!r}")
            self._groups[group.name] = group
        self._used = {
            name: [found.millicores, found.memory_mib, found.tasks] for name, found in usage.items()
        }
        self._guaranteed = [
            group
            for group in self._groups.values()
            if group.tier is Tier.CRITICAL
            and (group.guaranteed_millicores or group.guaranteed_memory_mib)
        ]
        self._state = state

    def used(self, group: str) -> GroupUsage:
        """What ``group`` uses now, counting this call's placements."""
        millicores, memory_mib, tasks = self._used.get(group, (0, 0, 0))
        return GroupUsage(millicores, memory_mib, tasks)

    def refusal(self, task: TaskRequest) -> Reason | None:
        """Why ``task`` may not be placed now for capacity reasons, or ``None``."""
        group = self._groups.get(task.capacity_group)
        if group is not None:
            refused = self._limit_refusal(group, task)
            if refused is not None:
                return refused
        if task.tier is Tier.FLEX and self._guaranteed:
            return self._guarantee_refusal(task)
        return None

    def record(self, task: TaskRequest) -> None:
        """Count a placed task against its group."""
        used = self._used.setdefault(task.capacity_group, [0, 0, 0])
        used[0] += task.resources.millicores
        used[1] += task.resources.memory_mib
        used[2] += 1

    def _limit_refusal(self, group: CapacityGroup, task: TaskRequest) -> Reason | None:
        millicores, memory_mib, tasks = self._used.get(group.name, (0, 0, 0))
        if group.max_tasks is not None and tasks >= group.max_tasks:
            message = f"capacity group {group.name!r} at its limit of {group.max_tasks} tasks"
            return ReasonCode.GROUP_LIMIT, message
        for dimension, used, limit, needed in (
            (CPU, millicores, group.max_millicores, task.resources.millicores),
            (MEMORY, memory_mib, group.max_memory_mib, task.resources.memory_mib),
        ):
            if limit is not None and used + needed > limit:
                message = (
                    f"capacity group {group.name!r} at its limit of {phrase(dimension, limit)}:"
                    f" {amount(dimension, used)} in use, task needs {amount(dimension, needed)}"
                )
                return ReasonCode.GROUP_LIMIT, message
        return None

    def _guarantee_refusal(self, task: TaskRequest) -> Reason | None:
        held = [0, 0]
        holders: list[str] = []
        for group in self._guaranteed:
            # A flex task of the group itself may use the group's own guarantee.
            if group.name == task.capacity_group:
                continue
            millicores, memory_mib, _ = self._used.get(group.name, (0, 0, 0))
            unused = (
                max(group.guaranteed_millicores - millicores, 0),
                max(group.guaranteed_memory_mib - memory_mib, 0),
            )
            if any(unused):
                holders.append(repr(group.name))
                held[0] += unused[0]
                held[1] += unused[1]
        for dimension, reserved, free, needed in (
            (CPU, held[0], self._state.free_millicores, task.resources.millicores),
            (MEMORY, held[1], self._state.free_memory_mib, task.resources.memory_mib),
        ):
            if needed and free - needed < reserved:
                message = (
                    f"{phrase(dimension, reserved)} guaranteed to critical group(s)"
                    f" {', '.join(holders)} are held back from flex tasks:"
                    f" {amount(dimension, free)} free cluster-wide, task needs"
                    f" {amount(dimension, needed)}"
                )
                return ReasonCode.GUARANTEE_RESERVED, message
        return None
