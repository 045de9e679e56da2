from __future__ import annotations

from collections.abc import Mapping

import pytest
from test_scheduler_builders import agent, task

from titus_flow.scheduler import AgentState, PlacementRules
from titus_flow.scheduler.filters import (
    admits,
    fewest_tasks_zones,
    fits,
    free_of_job,
    matches,
)
from titus_flow.scheduler.state import ClusterState

ATTRIBUTES = {"zone": "a", "instance_type": "m5.large"}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({}, True),
        ({"zone": "a"}, True),
        ({"zone": "b"}, False),
        ({"zone": ["b", "a"]}, True),
        ({"zone": []}, False),
        ({"zone": "a", "instance_type": "m5.large"}, True),
        ({"zone": "a", "instance_type": "m5.xlarge"}, False),
        ({"missing": "x"}, False),
    ],
)
def test_matches(rules: Mapping[str, str | list[str]], expected: bool) -> None:
    assert matches(ATTRIBUTES, PlacementRules(attributes=rules).matchers) is expected


@pytest.mark.parametrize(
    ("free", "demand", "expected"),
    [
        ((4, 4, 4, 4, 4, 4), (4, 4, 4, 4, 4, 4), True),
        ((4, 4, 4, 4, 4, 4), (0, 0, 0, 0, 0, 0), True),
        ((0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0), True),
        ((3, 4, 4, 4, 4, 4), (4, 0, 0, 0, 0, 0), False),
        ((4, 4, 4, 4, 4, 4), (0, 5, 0, 0, 0, 0), False),
        ((4, 4, 4, 4, 4, 4), (0, 0, 5, 0, 0, 0), False),
        ((4, 4, 4, 4, 4, 4), (0, 0, 0, 5, 0, 0), False),
        ((4, 4, 4, 4, 0, 4), (0, 0, 0, 0, 1, 0), False),
        ((4, 4, 4, 4, 4, 1), (0, 0, 0, 0, 0, 2), False),
    ],
)
def test_fits(free: tuple[int, ...], demand: tuple[int, ...], expected: bool) -> None:
    assert fits(free, demand) is expected


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [({}, True), ({"other": 3}, True), ({"web": 0}, True), ({"web": 1}, False)],
)
def test_free_of_job(jobs: Mapping[str, int], expected: bool) -> None:
    assert free_of_job(jobs, "web") is expected


@pytest.mark.parametrize(
    ("counts", "zones", "expected"),
    [
        ({}, ["a", "b"], {"a", "b"}),
        ({"a": 1}, ["a", "b"], {"b"}),
        ({"a": 1, "b": 1, "c": 2}, ["a", "b", "c"], {"a", "b"}),
        ({"c": 0, "a": 5}, ["a"], {"a"}),  # only zones with eligible agents count
        ({"a": 1}, [], set()),
    ],
)
def test_fewest_tasks_zones(
    counts: Mapping[str, int], zones: list[str], expected: set[str]
) -> None:
    assert fewest_tasks_zones(counts, zones) == expected


@pytest.mark.parametrize(
    ("free", "jobs", "unique_host", "expected"),
    [
        ((1, 1, 1, 1, 1, 1), {"web": 1}, False, True),
        ((1, 1, 1, 1, 1, 1), {"web": 1}, True, False),
        ((1, 1, 1, 1, 1, 1), {}, True, True),
        ((0, 1, 1, 1, 1, 1), {}, True, False),
    ],
)
def test_admits(
    free: tuple[int, ...], jobs: Mapping[str, int], unique_host: bool, expected: bool
) -> None:
    assert admits(free, jobs, (1, 1, 1, 1, 1, 1), "web", unique_host) is expected


def test_eligible_keeps_active_matching_agents_in_id_order() -> None:
    state = ClusterState(
        [
            agent("c", zone="b"),
            agent("a", zone="a"),
            agent("d", zone="a", state=AgentState.DRAINING),
            agent("b", zone="a", state=AgentState.LOST),
            agent("e", zone="c", instance_type="gpu"),
        ]
    )
    ids = [slot.agent.id for slot in state.eligible(PlacementRules())]
    assert ids == ["a", "c", "e"]
    only_a = PlacementRules(attributes={"zone": "a"})
    assert [slot.agent.id for slot in state.eligible(only_a)] == ["a"]
    by_zone = state.eligible_by_zone(PlacementRules(attributes={"zone": ["a", "b"]}))
    assert {zone: [s.agent.id for s in slots] for zone, slots in by_zone.items()} == {
        "a": ["a"],
        "b": ["c"],
    }


def test_balanced_zones_count_running_and_placed_tasks() -> None:
    state = ClusterState(
        [
            agent("a1", zone="a", jobs={"web": 1}),
            agent("b1", zone="b"),
            agent("c1", zone="c", state=AgentState.LOST, jobs={"web": 5}),
            agent("c2", zone="c"),
        ],
        job_ids={"web"},
    )
    balanced = task("t", "web", hard=PlacementRules(zone_balance=True))
    assert state.balanced_zones(task("t", "web")) is None
    assert state.balanced_zones(balanced) == frozenset({"b", "c"})  # tasks on lost agents are gone
    b1 = state.eligible(PlacementRules())[1]
    state.place(b1, balanced, (1000, 1024, 0, 0, 0, 0))
    assert state.balanced_zones(balanced) == frozenset({"c"})


def test_can_ever_hold_uses_total_not_free_capacity() -> None:
    state = ClusterState([agent("a", cpu=4000, free_cpu=0), agent("b", cpu=2000, gpu=1)])
    assert state.can_ever_hold((4000, 0, 0, 0, 0, 0))
    assert state.can_ever_hold((2000, 0, 0, 0, 1, 0))
    assert not state.can_ever_hold((4000, 0, 0, 0, 1, 0))  # no single agent has both
    assert not state.can_ever_hold((8000, 0, 0, 0, 0, 0))


def test_duplicate_agent_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate agent"):
        ClusterState([agent("a"), agent("a")])
