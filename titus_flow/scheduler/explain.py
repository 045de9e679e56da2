"""Why a task found no agent, in words a person can act on.

Explaining is done once per run of identical tasks, after the fast path has
failed, so these functions favour clarity over speed: they re-walk the agents
through the filters in pipeline order and report the first one that empties
the field.
"""

from __future__ import annotations

from collections.abc import Sequence

from titus_flow.scheduler.dimensions import DIMENSIONS, Vector, amount, phrase, plural
from titus_flow.scheduler.filters import Matchers, free_of_job
from titus_flow.scheduler.model import Reason, ReasonCode, TaskRequest
from titus_flow.scheduler.state import AgentSlot, ClusterState


def describe_matchers(matchers: Matchers) -> str:
    """``zone=us-east-1a, instance_type in [m5.large, m5.xlarge]``."""
    return ", ".join(
        f"{key}={next(iter(allowed))}"
        if len(allowed) == 1
        else f"{key} in [{', '.join(sorted(allowed))}]"
        for key, allowed in matchers
    )


def too_big(capacities: Sequence[Vector], demand: Vector) -> str:
    """Why ``demand`` exceeds every agent's total capacity."""
    over = [
        f"needs {phrase(dimension, demand[dimension])}, the largest agent has"
        f" {amount(dimension, largest)}"
        for dimension in DIMENSIONS
        if demand[dimension] > (largest := max(capacity[dimension] for capacity in capacities))
    ]
    if over:
        return "larger than any agent's total capacity: " + "; ".join(over)
    needs = ", ".join(
        phrase(dimension, demand[dimension]) for dimension in DIMENSIONS if demand[dimension]
    )
    return f"no agent's total capacity holds {needs} at once"


def shortfall(slots: Sequence[AgentSlot], demand: Vector) -> str:
    """Why none of ``slots`` has room for ``demand``."""
    checked = plural(len(slots), "agent") + " checked"
    short = [
        (dimension, largest)
        for dimension in DIMENSIONS
        if demand[dimension] > (largest := max(slot.free[dimension] for slot in slots))
    ]
    if len(short) == 1:
        dimension, largest = short[0]
        return (
            f"no agent with {phrase(dimension, demand[dimension], free=True)}: {checked},"
            f" largest has {amount(dimension, largest)} free"
        )
    if short:
        wanted = " or ".join(
            f"{phrase(dimension, demand[dimension], free=True)}"
            f" (largest has {amount(dimension, largest)})"
            for dimension, largest in short
        )
        return f"no agent with {wanted}: {checked}"
    # Every dimension fits somewhere, just never all of them on one agent.
    lacking = ", ".join(
        f"{count} lack {phrase(dimension, demand[dimension], free=True)}"
        for dimension in DIMENSIONS
        if (count := sum(slot.free[dimension] < demand[dimension] for slot in slots))
    )
    return f"no agent has room for the whole task at once: {checked} ({lacking})"


def no_agent(state: ClusterState, task: TaskRequest, demand: Vector) -> Reason:
    """Why ``task`` found no agent: the first filter that rules out every agent.

    Only called once the pipeline found nothing, so some filter does empty the field.
    """
    if not state.active:
        others = (
            f" ({plural(len(state.slots), 'agent')}, all draining or lost)" if state.slots else ""
        )
        return ReasonCode.NO_ACTIVE_AGENT, "no active agent" + others
    eligible = state.eligible(task.hard)
    if not eligible:
        return (
            ReasonCode.NO_MATCHING_AGENT,
            f"no active agent matches {describe_matchers(task.hard.matchers)}:"
            f" {plural(len(state.active), 'active agent')} checked",
        )
    job = task.job_id
    pool = eligible
    if task.hard.unique_host:
        pool = [slot for slot in eligible if free_of_job(slot.jobs, job)]
        if not pool:
            return (
                ReasonCode.UNIQUE_HOST,
                f"unique_host: all {plural(len(eligible), 'eligible agent')} already run a task"
                f" of job {job!r}",
            )
    zones = state.balanced_zones(task)
    if zones is not None:
        in_zones = [slot for slot in pool if slot.zone in zones]
        # All allowed zones hold the same (fewest) number of the job's tasks.
        fewest = state.zone_tasks(job).get(next(iter(zones)), 0)
        names = ", ".join(sorted(zones))
        where = (
            shortfall(in_zones, demand)
            if in_zones
            else "every eligible agent there already runs a task of the job"
        )
        return (
            ReasonCode.ZONE_BALANCE,
            f"zone_balance: job {job!r} must go next to {'zone' if len(zones) == 1 else 'one of'}"
            f" {names} (fewest of its tasks: {fewest}): {where}",
        )
    return ReasonCode.INSUFFICIENT_RESOURCES, shortfall(pool, demand)
