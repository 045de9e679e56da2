"""The fleet planner: table tests of launch, scale-in and replace decisions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from titus_flow.fleet import parse_fleet
from titus_flow.fleet.planner import Demand, Launch, Member, plan, ranked_types
from titus_flow.fleet.spec import FleetSpec
from titus_flow.scheduler.model import ResourceVector

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)


def fleet(**fields: Any) -> FleetSpec:
    raw: dict[str, Any] = {
        "name": "pool",
        "region": "us-east-1",
        "ami": "ami-12345678",
        "instance_types": ["m5.xlarge", "m5.large", "r5.large"],
        "subnets": [
            {"id": "subnet-a", "zone": "us-east-1a"},
            {"id": "subnet-b", "zone": "us-east-1b"},
        ],
        "max": 4,
        "idle_timeout": "5m",
        "boot_timeout": "10m",
        "temporal": {"address": "t:7233"},
        **fields,
    }
    return parse_fleet(raw, "test")


def task(key: str, cpu: float = 1, memory_gib: float = 1, **attributes: str | list[str]) -> Demand:
    matchers = tuple(
        (k, frozenset([v] if isinstance(v, str) else v)) for k, v in sorted(attributes.items())
    )
    return Demand(
        key, ResourceVector(millicores=int(cpu * 1000), memory_mib=int(memory_gib * 1024)), matchers
    )


def member(iid: str, type_: str = "m5.large", zone: str = "us-east-1a", **kw: Any) -> Member:
    kw.setdefault("state", "running")
    kw.setdefault("launched_at", NOW - timedelta(hours=1))
    kw.setdefault("registered", True)
    return Member(iid, type_, zone, **kw)


def shape(launches: list[Launch]) -> list[tuple[str, str, str, int]]:
    return [(launch.instance_type, launch.zone, launch.market, launch.count) for launch in launches]


def test_types_rank_cheapest_first() -> None:
    assert [t.name for t in ranked_types(fleet())] == ["m5.large", "r5.large", "m5.xlarge"]


@pytest.mark.parametrize(
    ("demand", "expected"),
    [
        # Nothing pending: nothing launched.
        ([], []),
        # One small task: the cheapest type that holds it.
        ([task("t1")], [("m5.large", "us-east-1a", "on-demand", 1)]),
        # Two 1-core tasks share one m5.large (2 vCPU): bin-packed.
        ([task("t1"), task("t2")], [("m5.large", "us-east-1a", "on-demand", 1)]),
        # Three: a second instance, in the other zone (balance).
        (
            [task(f"t{i}") for i in range(3)],
            [
                ("m5.large", "us-east-1a", "on-demand", 1),
                ("m5.large", "us-east-1b", "on-demand", 1),
            ],
        ),
        # Memory-heavy task: r5.large (16 GiB) is cheaper than m5.xlarge.
        ([task("big", cpu=1, memory_gib=12)], [("r5.large", "us-east-1a", "on-demand", 1)]),
        # CPU-heavy: only m5.xlarge has 4 vCPU.
        ([task("cpu", cpu=3)], [("m5.xlarge", "us-east-1a", "on-demand", 1)]),
        # A zone rule is honoured.
        ([task("z", zone="us-east-1b")], [("m5.large", "us-east-1b", "on-demand", 1)]),
        # An instance_type rule picks that type even if dearer.
        ([task("x", instance_type="m5.xlarge")], [("m5.xlarge", "us-east-1a", "on-demand", 1)]),
    ],
)
def test_launch_decisions(demand: list[Demand], expected: list[tuple[str, str, str, int]]) -> None:
    assert shape(plan(fleet(), [], demand, NOW).launches) == expected


def test_max_counts_booting_instances_and_reports_unfit() -> None:
    booting = [member(f"i-{n}", registered=False, launched_at=NOW) for n in range(3)]
    demand = [task(f"t{i}", cpu=2) for i in range(6)]
    result = plan(fleet(), booting, demand, NOW)
    # 3 booting m5.large take 3 tasks; one more instance fits under max=4; 2 tasks wait.
    assert shape(result.launches) == [("m5.large", "us-east-1b", "on-demand", 1)]
    assert sorted(result.unfit) == ["t4", "t5"]
    assert "at max (4 instances)" in result.unfit["t4"]


def test_task_no_type_can_hold_is_unfit_and_launches_nothing() -> None:
    result = plan(fleet(), [], [task("huge", cpu=64)], NOW)
    assert result.launches == [] and "no instance type" in result.unfit["huge"]
    result = plan(fleet(), [], [task("z", zone="eu-west-1a")], NOW)
    assert result.launches == [] and "z" in result.unfit


def test_min_is_kept_with_the_first_type_spread_over_zones() -> None:
    result = plan(fleet(min=2), [], [], NOW)
    assert shape(result.launches) == [
        ("m5.xlarge", "us-east-1a", "on-demand", 1),
        ("m5.xlarge", "us-east-1b", "on-demand", 1),
    ]


def test_dead_instances_are_replaced_in_place_when_demand_needs_them() -> None:
    members = [
        member("i-dead", state="terminated", zone="us-east-1b", tasks=2),
        member("i-stuck", registered=False, launched_at=NOW - timedelta(minutes=11)),
        member("i-idle-dead", "r5.large", state="terminated"),  # no tasks: not replaced
        member("i-ok"),
        member("i-asked", state="shutting-down", leaving=True),
    ]
    result = plan(fleet(), members, [], NOW)
    assert result.replace == ["i-dead", "i-idle-dead", "i-stuck"]
    assert sorted(shape(result.launches)) == [
        ("m5.large", "us-east-1a", "on-demand", 1),
        ("m5.large", "us-east-1b", "on-demand", 1),
    ]


def test_a_dead_idle_instance_is_replaced_only_to_keep_min() -> None:
    members = [member("i-dead", "r5.large", state="terminated")]
    assert plan(fleet(), members, [], NOW).launches == []
    (launch,) = plan(fleet(min=1), members, [], NOW).launches
    assert (launch.instance_type, launch.count) == ("m5.xlarge", 1)  # min uses the first type


def test_replacement_capacity_absorbs_demand() -> None:
    members = [member("i-dead", state="stopped", tasks=1)]
    result = plan(fleet(), members, [task("t1")], NOW)
    assert shape(result.launches) == [("m5.large", "us-east-1a", "on-demand", 1)]


@pytest.mark.parametrize(
    ("idle_minutes", "min_", "expected"),
    [
        ([None, None], 0, []),  # busy
        ([1, 2], 0, []),  # idle, but not for long enough
        ([6, 10], 0, ["i-1", "i-0"]),  # longest idle first
        ([6, 10], 1, ["i-1"]),  # never below min
        ([6, 3], 0, ["i-0"]),
    ],
)
def test_scale_in(idle_minutes: list[int | None], min_: int, expected: list[str]) -> None:
    members = [
        member(
            f"i-{n}",
            tasks=0 if minutes is not None else 2,
            idle_since=None if minutes is None else NOW - timedelta(minutes=minutes),
        )
        for n, minutes in enumerate(idle_minutes)
    ]
    assert plan(fleet(min=min_), members, [], NOW).scale_in == expected


def test_no_scale_in_while_launching_and_over_max_goes_first() -> None:
    idle = member("i-idle", tasks=0, idle_since=NOW - timedelta(hours=1))
    assert plan(fleet(), [idle], [task("t", cpu=3)], NOW).scale_in == []
    fresh = [member(f"i-{n}", tasks=0, idle_since=NOW) for n in range(3)]
    assert plan(fleet(max=1), fresh, [], NOW).scale_in == ["i-0", "i-1"]


def test_spot_mix() -> None:
    spec = fleet(max=10, purchase={"on_demand_base": 1, "spot_percentage": 50})
    result = plan(spec, [], [task(f"t{i}", cpu=2) for i in range(5)], NOW)
    markets = sorted((launch.market, launch.count) for launch in result.launches)
    # 1 base on-demand, then half of the other 4 spot.
    assert sum(c for m, c in markets if m == "spot") == 2
    assert sum(c for m, c in markets if m == "on-demand") == 3


def test_fallback_options_same_type_other_zone_then_larger_types() -> None:
    result = plan(fleet(), [], [task("t", zone=["us-east-1b", "us-east-1a"])], NOW)
    (launch,) = result.launches
    assert launch.options == (
        ("m5.large", "subnet-a", "us-east-1a"),
        ("m5.large", "subnet-b", "us-east-1b"),
        ("r5.large", "subnet-a", "us-east-1a"),
        ("r5.large", "subnet-b", "us-east-1b"),
        ("m5.xlarge", "subnet-a", "us-east-1a"),
        ("m5.xlarge", "subnet-b", "us-east-1b"),
    )


def test_plan_is_deterministic() -> None:
    demand = [task(f"t{i}", cpu=0.5 + (i % 3)) for i in range(9)]
    first = plan(fleet(max=10), [], demand, NOW)
    assert plan(fleet(max=10), [], list(reversed(demand)), NOW) == first


def test_fallback_options_keep_to_the_zones_tasks_allow() -> None:
    (launch,) = plan(fleet(), [], [task("t", zone="us-east-1b")], NOW).launches
    assert {zone for _, _, zone in launch.options} == {"us-east-1b"}


@pytest.mark.parametrize(
    "tasks",
    [
        [task(f"t{i}") for i in range(3)],
        [task(f"t{i}", cpu=2) for i in range(6)],
        [task("a0"), task("a1"), task("b", cpu=3), task("c", memory_gib=12), task("d", zone="x")],
        [task(f"z{i}", zone="us-east-1b") for i in range(5)] + [task("big", cpu=64)],
    ],
)
def test_grouped_demand_decides_as_its_tasks_one_by_one(tasks: list[Demand]) -> None:
    """The scheduler's ``demand`` groups alike tasks (issue 11): the plan stays the same."""
    grouped: dict[tuple[object, ...], Demand] = {}
    group_of: dict[str, tuple[object, ...]] = {}
    for one in tasks:
        alike = group_of[one.key] = (one.resources, one.attributes)
        first = grouped.get(alike)
        grouped[alike] = one if first is None else replace(first, count=first.count + 1)
    booting = [member("i-0", registered=False, launched_at=NOW)]
    singly = plan(fleet(), booting, tasks, NOW)
    together = plan(fleet(), booting, list(grouped.values()), NOW)
    assert shape(together.launches) == shape(singly.launches)
    assert [launch.options for launch in together.launches] == [
        launch.options for launch in singly.launches
    ]
    # A group with unserved tasks is named once, by its first task, for their reason.
    assert together.unfit == {grouped[group_of[k]].key: why for k, why in singly.unfit.items()}
