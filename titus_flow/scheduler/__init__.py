"""A pure cluster scheduler: place pending tasks on agents, or say why not.

In the spirit of Netflix Fenzo and Nomad's scheduler, one call of
:func:`schedule` takes a snapshot of the agents, the pending tasks and the
capacity groups, and returns where each task goes and, for every task left
pending, a reason. It does no I/O, keeps no state between calls and never
modifies its inputs; the same input always gives the same output.

The pipeline, per call:

1. **Order** (:mod:`.ordering`): critical tasks before flex ones; within a tier
   the most constrained first (hard rules, fewest eligible agents), then the
   largest, then submission order. Interchangeable tasks form a *run* that is
   filtered and ranked once, not task by task.
2. **Admit** (:mod:`.capacity`): a task whose capacity group is at a limit, or a
   flex task that would eat into the unused guarantee of a critical group,
   waits.
3. **Filter** (:mod:`.filters`): only active agents whose attributes satisfy the
   hard rules, with room in every dimension (CPU, memory, disk, network, GPUs,
   host ports), without a task of the job when ``unique_host`` is hard, and in
   a zone with the fewest tasks of the job when ``zone_balance`` is hard.
4. **Rank** (:mod:`.rankers`): fewest broken soft rules, then (for zone-balanced
   jobs) the zone with the fewest tasks of the job, then best fit - the
   fullest agent, by free fraction of CPU and memory - then agent id.
5. **Select** (:mod:`.candidates`): take the top agent, reserve the task's
   resources and host ports on it (so nothing is ever over-committed) and
   re-rank it for the next task of the run.
6. **Explain** (:mod:`.explain`): a task no agent could take gets a reason;
   :attr:`Pending.never_fits` marks tasks no agent could hold even empty, which
   callers should fail as invalid requests instead of waiting.

Example::

    result = schedule(
        agents,
        [request_from_spec(f"{job}-{i}", job, spec.resources, spec.constraints,
                           ports=len(spec.container.ports)) for i in range(3)],
        groups=[CapacityGroup("prod", Tier.CRITICAL, guaranteed_millicores=64_000)],
        usage={"prod": GroupUsage(millicores=12_000, memory_mib=49_152, tasks=30)},
    )
    for placement in result.placements.values():
        launch(placement.task_id, placement.agent_id, placement.ports)
    for task_id in result.never_fits():
        fail_as_invalid(task_id, result.pending[task_id].message)
"""

from titus_flow.scheduler.engine import schedule
from titus_flow.scheduler.from_spec import request_from_spec
from titus_flow.scheduler.model import (
    ZONE,
    Agent,
    AgentState,
    CapacityGroup,
    GroupUsage,
    Pending,
    Placement,
    PlacementRules,
    ReasonCode,
    ResourceVector,
    ScheduleResult,
    TaskRequest,
    Tier,
)

__all__ = [
    "ZONE",
    "Agent",
    "AgentState",
    "CapacityGroup",
    "GroupUsage",
    "Pending",
    "Placement",
    "PlacementRules",
    "ReasonCode",
    "ResourceVector",
    "ScheduleResult",
    "TaskRequest",
    "Tier",
    "request_from_spec",
    "schedule",
]
