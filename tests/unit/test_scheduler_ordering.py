from __future__ import annotations

import pytest
from test_scheduler_builders import task

from titus_flow.scheduler import PlacementRules, TaskRequest, Tier
from titus_flow.scheduler.ordering import is_constrained, plan_runs, size

WEIGHTS = (1 / 10_000, 1 / 10_000, 0.0, 0.0, 0.0, 0.0)
ZONE_A = PlacementRules(attributes={"zone": "a"})
ZONES_AB = PlacementRules(attributes={"zone": ["a", "b"]})


def eligible(rules: PlacementRules) -> list[str]:
    # A cluster of 3 zones with 10 agents each.
    allowed = dict(rules.matchers).get("zone", frozenset("abc"))
    return ["agent"] * (10 * len(allowed))


def order(tasks: list[TaskRequest]) -> list[list[str]]:
    return [[t.task_id for t in run.tasks] for run in plan_runs(tasks, WEIGHTS, eligible)]


def test_interchangeable_tasks_form_one_run() -> None:
    tasks = [task("1"), task("2", "other"), task("3"), task("4", cpu=500)]
    assert order(tasks) == [["1", "2", "3"], ["4"]]


@pytest.mark.parametrize(
    ("hard", "soft"),
    [
        (PlacementRules(unique_host=True), PlacementRules()),
        (PlacementRules(zone_balance=True), PlacementRules()),
        (PlacementRules(), PlacementRules(unique_host=True)),
        (PlacementRules(), PlacementRules(zone_balance=True)),
    ],
)
def test_rules_about_the_job_keep_jobs_apart(hard: PlacementRules, soft: PlacementRules) -> None:
    tasks = [task(str(n), job, hard=hard, soft=soft) for n, job in enumerate(["j", "k", "j"])]
    assert order(tasks) == [["0", "2"], ["1"]]


def test_critical_before_flex() -> None:
    tasks = [task("flex", cpu=4000), task("critical", "c", cpu=10, tier=Tier.CRITICAL)]
    assert order(tasks) == [["critical"], ["flex"]]


def test_constrained_first_fewest_eligible_agents_soonest() -> None:
    tasks = [
        task("free", "j1", cpu=4000),
        task("two-zones", "j2", hard=ZONES_AB),
        task("unique", "j3", hard=PlacementRules(unique_host=True)),
        task("one-zone", "j4", hard=ZONE_A),
        task("balanced", "j5", hard=PlacementRules(zone_balance=True)),
    ]
    assert order(tasks) == [["one-zone"], ["two-zones"], ["unique"], ["balanced"], ["free"]]


def test_largest_first_then_submission_order() -> None:
    tasks = [
        task("small", "j1", cpu=100, memory=100),
        task("big", "j2", cpu=4000),
        task("also-small", "j3", cpu=100, memory=100),
        task("memory", "j4", cpu=0, memory=8000),
    ]
    assert order(tasks) == [["memory"], ["big"], ["small", "also-small"]]


def test_size_is_share_of_the_cluster() -> None:
    assert size((1000, 5000, 9, 9, 9, 9), WEIGHTS) == 0.6


def test_is_constrained() -> None:
    assert not is_constrained(PlacementRules())
    assert is_constrained(ZONE_A)
    assert is_constrained(PlacementRules(unique_host=True))
    assert is_constrained(PlacementRules(zone_balance=True))
