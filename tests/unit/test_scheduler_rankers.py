from __future__ import annotations

from collections.abc import Mapping

import pytest
from test_scheduler_builders import GIB, agent, slot, task

from titus_flow.scheduler import PlacementRules
from titus_flow.scheduler.rankers import (
    agent_key,
    best_fit_score,
    has_soft_rules,
    rank_key,
    ranked,
    soft_violations,
    zone_tasks,
)


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        ((4000, 8192), 2.0),  # empty
        ((2000, 8192), 1.5),
        ((2000, 4096), 1.0),
        ((0, 0), 0.0),  # full
    ],
)
def test_best_fit_score_is_free_fraction_of_cpu_and_memory(
    free: tuple[int, int], expected: float
) -> None:
    # Disk, network, GPUs and ports do not move the score.
    inverse = (1 / 4000, 1 / 8192, 1 / 100, 1 / 10, 1.0, 1 / 1000)
    assert best_fit_score((*free, 0, 0, 0, 0), inverse) == pytest.approx(expected)


def test_fuller_agent_scores_lower_whatever_its_size() -> None:
    small_half_full = slot(agent("s", cpu=2000, memory=4 * GIB, free_cpu=1000, free_memory=2 * GIB))
    big_empty = slot(agent("b", cpu=16_000, memory=64 * GIB))
    assert small_half_full.score < big_empty.score


SOFT = PlacementRules(unique_host=True, attributes={"zone": "a", "instance_type": "big"})


@pytest.mark.parametrize(
    ("attributes", "jobs", "expected"),
    [
        ({"zone": "a", "instance_type": "big"}, {}, 0),
        ({"zone": "b", "instance_type": "big"}, {}, 1),
        ({"zone": "b"}, {}, 2),
        ({"zone": "b"}, {"web": 1}, 3),
        ({"zone": "a", "instance_type": "big"}, {"other": 1}, 0),
    ],
)
def test_soft_violations(
    attributes: Mapping[str, str], jobs: Mapping[str, int], expected: int
) -> None:
    assert soft_violations(attributes, jobs, task("t", "web", soft=SOFT)) == expected


@pytest.mark.parametrize(
    ("hard", "soft", "expected"),
    [
        (PlacementRules(), PlacementRules(), 0),
        (PlacementRules(zone_balance=True), PlacementRules(), 3),
        (PlacementRules(), PlacementRules(zone_balance=True), 3),
    ],
)
def test_zone_tasks_only_count_for_zone_balance(
    hard: PlacementRules, soft: PlacementRules, expected: int
) -> None:
    assert zone_tasks({"a": 3}, "a", task("t", hard=hard, soft=soft)) == expected
    assert zone_tasks({"a": 3}, "b", task("t", hard=hard, soft=soft)) == 0


def test_rank_key_orders_soft_rules_then_zone_spread_then_fit_then_id() -> None:
    balanced = task(
        "t", "web", soft=PlacementRules(zone_balance=True, attributes={"instance_type": "big"})
    )
    counts = {"a": 2, "b": 0}
    matching_full_a = slot(agent("1", zone="a", instance_type="big", free_cpu=1000), 0)
    matching_empty_b = slot(agent("2", zone="b", instance_type="big"), 1)
    other_empty_b = slot(agent("3", zone="b", instance_type="small"), 2)
    matching_empty_b_later = slot(agent("4", zone="b", instance_type="big"), 3)
    ordered = sorted(
        [other_empty_b, matching_full_a, matching_empty_b_later, matching_empty_b],
        key=lambda candidate: rank_key(candidate, balanced, counts),
    )
    assert [candidate.agent.id for candidate in ordered] == ["2", "4", "1", "3"]


def test_without_balance_the_fullest_agent_wins() -> None:
    plain = task("t")
    full = slot(agent("z", free_cpu=1000, free_memory=GIB), 1)
    empty = slot(agent("a"), 0)
    assert rank_key(full, plain, {}) < rank_key(empty, plain, {})


@pytest.mark.parametrize(
    "soft",
    [
        PlacementRules(),
        PlacementRules(zone_balance=True),
        PlacementRules(unique_host=True),
        PlacementRules(attributes={"zone": "a"}),
    ],
)
def test_ranked_matches_agent_key(soft: PlacementRules) -> None:
    model = task("t", "web", soft=soft)
    slots = [slot(agent("a", jobs={"web": 1}), 0), slot(agent("b", zone="b", free_cpu=10), 1)]
    assert ranked(slots, model) == [(*agent_key(s, model), s) for s in slots]
    assert has_soft_rules(model) is (soft.unique_host or bool(soft.matchers))
