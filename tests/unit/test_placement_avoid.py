"""A placement item's ``avoid_agents`` ranks those agents last, never out (issue 13, finding 3).

A task retried after a platform failure (lost agent, system error) asks to
avoid the agent it failed on: it goes elsewhere when another agent fits, and
back to the same agent when none does (a one-agent cluster still retries).
"""

from __future__ import annotations

from datetime import UTC, datetime

from titus_flow.contracts import (
    AgentInfo,
    ItemGroup,
    PlacementItem,
    PlacementRequest,
    ReleaseRequest,
)
from titus_flow.ledger import Ledger
from titus_flow.spec import Resources

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def agent(agent_id: str, cpu: float = 4) -> AgentInfo:
    return AgentInfo(
        agent_id=agent_id, task_queue=f"q-{agent_id}", resources=Resources(cpu=cpu, memory="4Gi")
    )


def item(key: str, avoid: list[str] | None = None, cpu: float = 1) -> PlacementItem:
    return PlacementItem(
        key=key,
        job_id="job",
        resources=Resources(cpu=cpu, memory=64, disk=0, network_mbps=0),
        avoid_agents=avoid or [],
    )


def placed_on(ledger: Ledger, *items: PlacementItem) -> dict[str, str]:
    ledger.request(PlacementRequest(requester="job", groups=ItemGroup.of(list(items))))
    return {p.key: p.agent_id for p in ledger.iterate()["job"].placed}


def test_a_task_avoiding_an_agent_goes_to_another_one() -> None:
    ledger = Ledger()
    for name in ("a", "b"):
        ledger.register(agent(name), NOW)
    # Best fit with a tie: both agents empty, the first by id wins.
    assert placed_on(ledger, item("job-0")) == {"job-0": "a"}
    ledger.release(ReleaseRequest(requester="job", keys=["job-0"]))
    assert placed_on(ledger, item("job-0", avoid=["a"])) == {"job-0": "b"}


def test_avoiding_outranks_best_fit_but_not_a_full_agent() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.register(agent("b", cpu=1), NOW)
    # "a" is fuller after this, so best fit would pick it for the next task.
    assert placed_on(ledger, item("job-0", cpu=2)) == {"job-0": "a"}
    assert placed_on(ledger, item("job-1", avoid=["a"])) == {"job-1": "b"}
    # "b" is full now: avoiding "a" does not keep the task from it.
    assert placed_on(ledger, item("job-2", avoid=["a"])) == {"job-2": "a"}


def test_a_single_agent_cluster_still_places_a_task_that_avoids_it() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    assert placed_on(ledger, item("job-0", avoid=["a"])) == {"job-0": "a"}


def test_avoiding_tasks_and_others_of_one_job_are_placed_in_the_same_iteration() -> None:
    ledger = Ledger()
    for name in ("a", "b"):
        ledger.register(agent(name), NOW)
    placed = placed_on(ledger, item("job-0"), item("job-1", avoid=["a"]), item("job-2"))
    assert placed == {"job-0": "a", "job-1": "b", "job-2": "a"}


def test_an_item_without_agents_to_avoid_reads_as_before() -> None:
    # Schedulers of the previous release (extra fields forbidden) still decode it,
    # and a job's identical tasks stay one group.
    plain = item("job-0")
    assert "avoid_agents" not in plain.model_dump_json()
    assert "avoid_agents" not in plain.model_dump(mode="json")
    avoiding = item("job-1", avoid=["a"])
    assert PlacementItem.model_validate_json(avoiding.model_dump_json()) == avoiding
    groups = ItemGroup.of([plain, item("job-2"), avoiding])
    assert [g.keys for g in groups] == [[0, 2], [1]]
