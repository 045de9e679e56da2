"""Terse builders shared by the scheduler tests (no tests here).

Defaults: a 4-core, 8 GiB agent in zone "a" with plenty of disk and network,
and a 1-core, 1 GiB task of job "job".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from titus_flow.scheduler import (
    Agent,
    AgentState,
    PlacementRules,
    ResourceVector,
    TaskRequest,
    Tier,
)
from titus_flow.scheduler.state import AgentSlot

GIB = 1024


def agent(
    agent_id: str,
    *,
    cpu: int = 4000,
    memory: int = 8 * GIB,
    free_cpu: int | None = None,
    free_memory: int | None = None,
    gpu: int = 0,
    zone: str = "a",
    state: AgentState = AgentState.ACTIVE,
    ports: int | Sequence[int] = 0,
    jobs: Mapping[str, int] | None = None,
    **attributes: str,
) -> Agent:
    total = ResourceVector(cpu, memory, 100 * GIB, 10_000, gpu)
    free = ResourceVector(
        cpu if free_cpu is None else free_cpu,
        memory if free_memory is None else free_memory,
        100 * GIB,
        10_000,
        gpu,
    )
    return Agent(
        agent_id,
        total,
        free,
        attributes={"zone": zone, **attributes},
        state=state,
        free_ports=ports,
        jobs=dict(jobs or {}),
    )


def task(
    task_id: str,
    job_id: str = "job",
    *,
    cpu: int = 1000,
    memory: int = GIB,
    gpu: int = 0,
    ports: int = 0,
    hard: PlacementRules | None = None,
    soft: PlacementRules | None = None,
    group: str = "default",
    tier: Tier = Tier.FLEX,
) -> TaskRequest:
    return TaskRequest(
        task_id,
        job_id,
        ResourceVector(cpu, memory, 0, 0, gpu),
        ports,
        hard or PlacementRules(),
        soft or PlacementRules(),
        group,
        tier,
    )


def slot(built: Agent, rank: int = 0) -> AgentSlot:
    return AgentSlot(built, rank)
