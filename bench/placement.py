"""Placement benchmark: 10,000 mixed tasks onto 1,000 agents in 3 zones.

Generates a seeded workload (so every run sees the same cluster and tasks),
times the scheduler, and compares how many agents its best-fit packing uses
with a plain first-fit loop under the same feasibility rules.

Run: .venv/bin/python bench/placement.py [--seed N] [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from typing import TypeVar

from titus_flow.scheduler import (
    Agent,
    AgentState,
    CapacityGroup,
    GroupUsage,
    PlacementRules,
    ResourceVector,
    TaskRequest,
    Tier,
    schedule,
)
from titus_flow.scheduler.capacity import CapacityLedger
from titus_flow.scheduler.dimensions import demand_of
from titus_flow.scheduler.filters import admits
from titus_flow.scheduler.ordering import plan_runs
from titus_flow.scheduler.state import ClusterState

_T = TypeVar("_T")

AGENTS = 1_000
TASKS = 10_000
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
GIB = 1024

# instance type -> (cores, memory GiB, disk GiB, network Mbps, GPUs), weight
INSTANCE_TYPES = {
    "m5.2xlarge": ((8, 32, 100, 2_500, 0), 40),
    "m5.4xlarge": ((16, 64, 200, 5_000, 0), 30),
    "r5.4xlarge": ((16, 128, 200, 5_000, 0), 20),
    "c5.4xlarge": ((16, 32, 200, 5_000, 0), 5),
    "p3.8xlarge": ((32, 244, 400, 10_000, 4), 5),
}

# task shape -> (millicores, memory GiB, disk GiB, network Mbps, GPUs), weight
SHAPES = {
    "tiny": ((250, 0.5, 1, 50, 0), 25),
    "small": ((500, 1, 2, 100, 0), 30),
    "medium": ((1_000, 4, 10, 200, 0), 22),
    "large": ((2_000, 8, 20, 500, 0), 10),
    "memory": ((1_000, 16, 10, 200, 0), 6),
    "compute": ((4_000, 4, 10, 500, 0), 3),
    "xlarge": ((4_000, 16, 50, 1_000, 0), 3),
    "gpu": ((4_000, 32, 50, 1_000, 1), 1),
}

JOB_SIZES = (1, 1, 2, 3, 5, 8, 10, 20, 50, 100, 200)

GROUPS = [
    CapacityGroup(
        "prod", Tier.CRITICAL, guaranteed_millicores=1_500_000, guaranteed_memory_mib=6_000 * GIB
    ),
    CapacityGroup("api", Tier.CRITICAL, guaranteed_millicores=500_000),
    CapacityGroup("batch", Tier.FLEX, max_tasks=20_000),
    CapacityGroup("adhoc", Tier.FLEX, max_millicores=4_000_000),
]


def _pick(rng: random.Random, weighted: dict[str, tuple[_T, int]]) -> tuple[str, _T]:
    name = rng.choices(list(weighted), weights=[weight for _, weight in weighted.values()])[0]
    return name, weighted[name][0]


def make_agents(rng: random.Random) -> list[Agent]:
    """1,000 agents of mixed instance types, spread over the zones; a few not active."""
    agents = []
    for index in range(AGENTS):
        instance_type, (cores, memory, disk, network, gpu) = _pick(rng, INSTANCE_TYPES)
        total = ResourceVector(cores * 1000, memory * GIB, disk * GIB, network, gpu)
        roll = rng.random()
        state = (
            AgentState.LOST
            if roll < 0.01
            else AgentState.DRAINING
            if roll < 0.03
            else AgentState.ACTIVE
        )
        agents.append(
            Agent(
                id=f"i-{index:05d}",
                total=total,
                free=total,
                attributes={
                    "zone": ZONES[index % len(ZONES)],
                    "instance_type": instance_type,
                    "instance_id": f"i-{index:05d}",
                },
                state=state,
                free_ports=range(30_000, 31_000),
            )
        )
    return agents


def _rules(rng: random.Random, job_size: int) -> tuple[PlacementRules, PlacementRules]:
    hard_attributes: dict[str, str | list[str]] = {}
    soft_attributes: dict[str, str | list[str]] = {}
    roll = rng.random()
    if roll < 0.10:
        hard_attributes["zone"] = rng.choice(ZONES)
    elif roll < 0.15:
        hard_attributes["zone"] = rng.sample(ZONES, 2)
    if rng.random() < 0.10:
        soft_attributes["instance_type"] = rng.choice(["m5.4xlarge", "r5.4xlarge"])
    balance = rng.random()
    hard = PlacementRules(
        unique_host=job_size <= 200 and rng.random() < 0.25,
        zone_balance=balance < 0.10,
        attributes=hard_attributes,
    )
    soft = PlacementRules(zone_balance=0.10 <= balance < 0.40, attributes=soft_attributes)
    return hard, soft


def make_tasks(rng: random.Random) -> list[TaskRequest]:
    """10,000 tasks in jobs of 1-200, with a mix of shapes, tiers, groups and constraints."""
    tasks: list[TaskRequest] = []
    job = 0
    while len(tasks) < TASKS:
        job += 1
        _, (millicores, memory, disk, network, gpu) = _pick(rng, SHAPES)
        # GPU jobs stay small: the cluster has about 200 GPUs.
        size = min(rng.choice(JOB_SIZES[:7] if gpu else JOB_SIZES), TASKS - len(tasks))
        resources = ResourceVector(millicores, int(memory * GIB), disk * GIB, network, gpu)
        tier = Tier.CRITICAL if rng.random() < 0.3 else Tier.FLEX
        group = rng.choice(["prod", "api"] if tier is Tier.CRITICAL else ["batch", "adhoc"])
        hard, soft = _rules(rng, size)
        ports = rng.choice((0, 0, 1, 2))
        tasks.extend(
            TaskRequest(
                f"job-{job}-{index}", f"job-{job}", resources, ports, hard, soft, group, tier
            )
            for index in range(size)
        )
    return tasks


def first_fit(
    agents: Sequence[Agent], tasks: Sequence[TaskRequest], *, scheduler_order: bool = False
) -> dict[str, str]:
    """Baseline: each task on the first agent (by id) that passes the same filters and
    capacity rules as the scheduler. Tasks go critical first then as submitted or, with
    ``scheduler_order``, in the scheduler's order. Returns task id -> agent id."""
    state = ClusterState(agents, {task.job_id for task in tasks})
    ledger = CapacityLedger(GROUPS, {}, state)
    if scheduler_order:
        runs = plan_runs(tasks, state.size_weights, state.eligible)
        ordered = [task for run in runs for task in run.tasks]
    else:
        ordered = sorted(tasks, key=lambda task: task.tier is not Tier.CRITICAL)
    placed: dict[str, str] = {}
    for task in ordered:
        demand = demand_of(task)
        if not state.can_ever_hold(demand) or ledger.refusal(task) is not None:
            continue
        zones = state.balanced_zones(task)
        for slot in state.eligible(task.hard):
            if (zones is None or slot.zone in zones) and admits(
                slot.free, slot.jobs, demand, task.job_id, task.hard.unique_host
            ):
                placed[task.task_id] = state.place(slot, task, demand).agent_id
                ledger.record(task)
                break
    return placed


def load(agents: Sequence[Agent], tasks: Sequence[TaskRequest]) -> str:
    """How much of the active agents' CPU and memory the tasks ask for."""
    active = [agent for agent in agents if agent.state is AgentState.ACTIVE]
    cpu = sum(t.resources.millicores for t in tasks) / sum(a.total.millicores for a in active)
    memory = sum(t.resources.memory_mib for t in tasks) / sum(a.total.memory_mib for a in active)
    return f"{cpu:.0%} of active CPU, {memory:.0%} of memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=5, help="timed scheduler runs")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    agents = make_agents(rng)
    tasks = make_tasks(rng)
    usage = {group.name: GroupUsage() for group in GROUPS}

    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = schedule(agents, tasks, groups=GROUPS, usage=usage)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    baseline = first_fit(agents, tasks)
    baseline_time = time.perf_counter() - started
    same_order = first_fit(agents, tasks, scheduler_order=True)

    best, median = min(timings), statistics.median(timings)
    placed = len(result.placements)
    used = len({placement.agent_id for placement in result.placements.values()})
    baseline_used = len(set(baseline.values()))
    active = sum(agent.state is AgentState.ACTIVE for agent in agents)
    print(
        f"workload: {len(tasks)} tasks in {len({t.job_id for t in tasks})} jobs,"
        f" {len(agents)} agents ({active} active) in {len(ZONES)} zones, seed {args.seed};"
        f" asks {load(agents, tasks)}"
    )
    print(
        f"scheduler: placed {placed}, pending {len(result.pending)};"
        f" median {median:.3f} s, best {best:.3f} s over {args.repeat} runs"
        f" ({placed / median:,.0f} placements/s)"
    )
    print(
        f"first-fit: placed {len(baseline)} in {baseline_time:.3f} s, using {baseline_used} agents"
    )
    print(
        f"first-fit in the scheduler's task order: placed {len(same_order)},"
        f" using {len(set(same_order.values()))} agents"
    )
    print(
        f"agents used: best-fit {used} vs first-fit {baseline_used}"
        f" (ratio {used / baseline_used:.2f})"
    )
    met = placed == len(tasks) and median < 1.0 and used <= baseline_used
    print(f"target (all placed, median < 1 s, agents <= first-fit): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
