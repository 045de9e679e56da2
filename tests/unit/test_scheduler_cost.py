"""The scheduler workflow's cost per workflow task does not grow with per-task conversions.

Issue 11: a scheduling iteration placing a 10,000-task job converted each
pending item's spec (resources, constraints) to the scheduler's types on its
own, through ``dataclasses.astuple`` deep copies: about half of the iteration.
Items of one job share their spec, so it is converted once per iteration.
Counts, not wall times.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from titus_flow.contracts import (
    AgentInfo,
    ItemGroup,
    PlacementItem,
    PlacementRequest,
    ReleaseRequest,
)
from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.ledger import Ledger, placement
from titus_flow.scheduler import Tier
from titus_flow.spec import BatchJob, Container, Resources

# Scale and cost checks: they run the pure modules thousands of times, which line
# tracing made twice as slow; the property and table tests measure the coverage.
pytestmark = pytest.mark.no_cover

NOW = datetime(2026, 1, 1, tzinfo=UTC)
JOB = BatchJob(
    name="scale",
    container=Container(image="busybox:latest", command="sleep 1"),
    resources=Resources(cpu=0.1, memory=64, disk=0, network_mbps=0),
    instances=2_000,
)


def cluster(agents: int) -> Ledger:
    ledger = Ledger()
    for n in range(agents):
        info = AgentInfo(
            agent_id=f"a{n:04d}",
            task_queue=f"q{n:04d}",
            resources=Resources(cpu=2, memory="16Gi"),
            attributes={"zone": f"z{n % 3}"},
        )
        ledger.register(info, NOW)
    return ledger


def partition_request(job_id: str, part: int, size: int) -> PlacementRequest:
    """What a partition's mailbox sends (one group of items), as the scheduler decodes it."""
    keys = range(part * size, (part + 1) * size)
    items = [PlacementItem.for_task(f"{job_id}-{k}", job_id, JOB) for k in keys]
    sent = PlacementRequest(requester=f"{job_id}-p{part}", groups=ItemGroup.of(items))
    converter = WORKER_DATA_CONVERTER.payload_converter
    decoded = converter.from_payloads(converter.to_payloads([sent]), [PlacementRequest])[0]
    assert isinstance(decoded, PlacementRequest)
    return decoded


def test_a_job_s_shared_spec_is_converted_once_per_iteration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    converted: list[str] = []
    real = placement.task_request

    def counting(item: PlacementItem, tier: Tier) -> object:
        converted.append(item.key)
        return real(item, tier)

    monkeypatch.setattr(placement, "task_request", counting)
    ledger = cluster(100)
    for part in range(4):
        ledger.request(partition_request("job", part, 500))
    updates = ledger.iterate()
    assert sum(len(u.placed) for u in updates.values()) == 2_000
    # One conversion per request's group (4), not one per item (2,000).
    assert len(converted) == 4


def test_requests_built_from_a_shared_spec_are_those_built_one_by_one() -> None:
    items = partition_request("job", 0, 20).all_items()
    items.append(PlacementItem.for_task("job-99", "job", JOB, avoid_agents=["a0001"]))
    build = placement.TaskRequests()
    for tier in (Tier.FLEX, Tier.CRITICAL):
        for item in items:
            assert build(item, tier) == placement.task_request(item, tier)


def test_retries_that_avoid_an_agent_are_ranked_without_a_call_per_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from titus_flow.scheduler import rankers

    calls: list[str] = []
    real = rankers.agent_key

    def counting(slot: object, task: object) -> object:
        calls.append("")
        return real(slot, task)  # type: ignore[arg-type]

    monkeypatch.setattr(rankers, "agent_key", counting)
    ledger = cluster(300)
    # 30 retries, each avoiding the agent it failed on: 30 runs of one task.
    items = [
        PlacementItem.for_task(f"job-{n}", "job", JOB, avoid_agents=[f"a{n:04d}"])
        for n in range(30)
    ]
    ledger.request(PlacementRequest(requester="job", items=items))
    placed = ledger.iterate()["job"].placed
    assert len(placed) == 30
    assert all(
        p.agent_id != f"a{n:04d}"
        for n, p in enumerate(sorted(placed, key=lambda p: int(p.key.split("-")[1])))
    )
    # Placing re-ranks only the agent a task went to, not all 300 per run.
    assert len(calls) <= 30


def test_an_iteration_snapshots_again_only_the_agents_that_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    real = placement._snapshot

    def counting(record: Any, usage: Any, with_ports: bool) -> Any:
        built.append(record.info.agent_id)
        return real(record, usage, with_ports)

    monkeypatch.setattr(placement, "_snapshot", counting)
    ledger = cluster(500)
    ledger.request(partition_request("job", 0, 100))
    ledger.iterate()
    assert len(built) == 500
    for _ in range(2):  # the first retry also sees the 5 agents of the 100 placements
        built.clear()
        # One task retried: released on its agent, asked for again.
        ledger.release(ReleaseRequest(requester="job-p0", keys=["job-0"]))
        ledger.request(partition_request("job", 0, 1))
        placed = ledger.iterate()["job-p0"].placed
        assert len(placed) == 1
    # The agent it was released from and the one it went to last time, not all 500.
    assert 1 <= len(built) <= 2


def test_kept_snapshots_are_those_built_afresh() -> None:
    rng = random.Random(11)
    ledger = cluster(60)
    held: list[str] = []
    for step in range(40):
        action = rng.random()
        if action < 0.4:
            ledger.request(partition_request(f"j{step}", 0, rng.randint(1, 40)))
        elif action < 0.7 and held:
            keys = rng.sample(held, min(len(held), rng.randint(1, 20)))
            for requester in {key.rpartition("-")[0] + "-p0" for key in keys}:
                ledger.release(ReleaseRequest(requester=requester, keys=keys))
        elif action < 0.8:
            agent = f"a{rng.randrange(60):04d}"
            ledger.set_agent_state(agent, rng.choice(["active", "draining", "lost"]))
        elif action < 0.9:
            info = ledger.state.agents[f"a{rng.randrange(60):04d}"].info
            cpu = rng.choice([1, 2, 4])
            ledger.register(
                info.model_copy(update={"resources": Resources(cpu=cpu, memory="16Gi")}), NOW
            )
        else:
            ledger.remove_agent(f"a{rng.randrange(60):04d}")
        for update in ledger.iterate().values():
            held += [p.key for p in update.placed]
        records = list(ledger.state.agents.values())
        for with_ports in (False, True):
            kept = ledger._snapshots.of(records, ledger._usage, with_ports)
            fresh = placement.Snapshots().of(records, ledger._usage, with_ports)
            assert kept == fresh
