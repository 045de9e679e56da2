from __future__ import annotations

import pytest
from test_scheduler_builders import GIB, agent, task

from titus_flow.scheduler import (
    Agent,
    AgentState,
    CapacityGroup,
    GroupUsage,
    PlacementRules,
    ReasonCode,
    TaskRequest,
    Tier,
    schedule,
)
from titus_flow.scheduler.dimensions import CPU, DISK, GPU, MEMORY, NETWORK, PORTS, amount, phrase


@pytest.mark.parametrize(
    ("dimension", "value", "bare", "free"),
    [
        (CPU, 1000, "1 core", "1 free CPU core"),
        (CPU, 1500, "1.5 cores", "1.5 free CPU cores"),
        (CPU, 250, "0.25 cores", "0.25 free CPU cores"),
        (MEMORY, 512, "512 MiB", "512 MiB free memory"),
        (MEMORY, 8 * GIB, "8 GiB", "8 GiB free memory"),
        (MEMORY, 1536, "1.5 GiB", "1.5 GiB free memory"),
        (DISK, 10 * GIB, "10 GiB", "10 GiB free disk"),
        (NETWORK, 500, "500 Mbps", "500 Mbps free network bandwidth"),
        (GPU, 1, "1 GPU", "1 free GPU"),
        (GPU, 0, "0 GPUs", "0 free GPUs"),
        (PORTS, 3, "3 ports", "3 free host ports"),
    ],
)
def test_amounts_read_naturally(dimension: int, value: int, bare: str, free: str) -> None:
    assert amount(dimension, value) == bare
    assert phrase(dimension, value, free=True) == free


def reason(
    agents: list[Agent],
    request: TaskRequest,
    groups: list[CapacityGroup] | None = None,
    usage: dict[str, GroupUsage] | None = None,
) -> tuple[ReasonCode, str]:
    result = schedule(agents, [request], groups=groups or [], usage=usage)
    assert not result.placements
    pending = result.pending[request.task_id]
    return pending.code, pending.message


WEB = "web"


@pytest.mark.parametrize(
    ("agents", "request_", "code", "message"),
    [
        (
            [
                agent("a", free_memory=GIB),
                agent("b", free_memory=2 * GIB),
                agent("c", free_memory=0),
            ],
            task("t", memory=8 * GIB),
            ReasonCode.INSUFFICIENT_RESOURCES,
            "no agent with 8 GiB free memory: 3 agents checked, largest has 2 GiB free",
        ),
        (
            [agent("a", free_memory=GIB, free_cpu=500)],
            task("t", memory=2 * GIB, cpu=1000),
            ReasonCode.INSUFFICIENT_RESOURCES,
            "no agent with 1 free CPU core (largest has 0.5 cores) or 2 GiB free memory"
            " (largest has 1 GiB): 1 agent checked",
        ),
        (
            [agent("a", free_cpu=0), agent("b", free_memory=0)],
            task("t"),
            ReasonCode.INSUFFICIENT_RESOURCES,
            "no agent has room for the whole task at once: 2 agents checked"
            " (1 lack 1 free CPU core, 1 lack 1 GiB free memory)",
        ),
        (
            [agent(name, jobs={WEB: 1}) for name in "abc"],
            task("t", WEB, hard=PlacementRules(unique_host=True)),
            ReasonCode.UNIQUE_HOST,
            "unique_host: all 3 eligible agents already run a task of job 'web'",
        ),
        (
            [agent("a", state=AgentState.DRAINING), agent("b", state=AgentState.LOST)],
            task("t"),
            ReasonCode.NO_ACTIVE_AGENT,
            "no active agent (2 agents, all draining or lost)",
        ),
        ([], task("t"), ReasonCode.NO_ACTIVE_AGENT, "no active agent"),
        (
            [agent("a", zone="a"), agent("b", zone="b")],
            task("t", hard=PlacementRules(attributes={"zone": ["c", "d"], "type": "x"})),
            ReasonCode.NO_MATCHING_AGENT,
            "no active agent matches type=x, zone in [c, d]: 2 active agents checked",
        ),
        (
            [agent("a", zone="a", free_cpu=0), agent("b", zone="b", jobs={WEB: 1})],
            task("t", WEB, hard=PlacementRules(zone_balance=True)),
            ReasonCode.ZONE_BALANCE,
            "zone_balance: job 'web' must go next to zone a (fewest of its tasks: 0):"
            " no agent with 1 free CPU core: 1 agent checked, largest has 0 cores free",
        ),
        (
            [agent("a", cpu=4000), agent("b", cpu=2000, gpu=1)],
            task("t", cpu=8000, gpu=2),
            ReasonCode.NEVER_FITS,
            "larger than any agent's total capacity: needs 8 CPU cores, the largest agent"
            " has 4 cores; needs 2 GPUs, the largest agent has 1 GPU",
        ),
        (
            [agent("a", cpu=4000), agent("b", cpu=2000, gpu=1)],
            task("t", cpu=4000, gpu=1),
            ReasonCode.NEVER_FITS,
            "no agent's total capacity holds 4 CPU cores, 1 GiB memory, 1 GPU at once",
        ),
    ],
)
def test_pending_reasons(
    agents: list[Agent], request_: TaskRequest, code: ReasonCode, message: str
) -> None:
    assert reason(agents, request_) == (code, message)


def test_group_limit_reason() -> None:
    batch = CapacityGroup("batch", max_tasks=10)
    assert reason(
        [agent("a")], task("t", group="batch"), [batch], {"batch": GroupUsage(0, 0, 10)}
    ) == (
        ReasonCode.GROUP_LIMIT,
        "capacity group 'batch' at its limit of 10 tasks",
    )


def test_never_fits_wins_over_waiting_reasons() -> None:
    batch = CapacityGroup("batch", max_tasks=0)
    code, _ = reason(
        [agent("a", state=AgentState.LOST)], task("t", cpu=9000, group="batch"), [batch]
    )
    assert code is ReasonCode.NEVER_FITS


def test_identical_tasks_share_the_reason() -> None:
    result = schedule([agent("a", cpu=2000)], [task(str(n), tier=Tier.CRITICAL) for n in range(4)])
    assert list(result.placements) == ["0", "1"]
    assert {p.message for p in result.pending.values()} == {
        "no agent with 1 free CPU core: 1 agent checked, largest has 0 cores free"
    }
