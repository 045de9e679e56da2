from __future__ import annotations

import pytest
from test_scheduler_builders import GIB, agent

from titus_flow.scheduler import (
    Agent,
    Pending,
    PlacementRules,
    ReasonCode,
    ResourceVector,
    ScheduleResult,
    TaskRequest,
    Tier,
    request_from_spec,
)
from titus_flow.spec import Constraints, ConstraintSet, Resources


def test_resources_reject_negative_amounts() -> None:
    with pytest.raises(ValueError, match="negative"):
        ResourceVector(memory_mib=-1)


@pytest.mark.parametrize(
    ("big", "small", "expected"),
    [
        (ResourceVector(2, 2, 2, 2, 2), ResourceVector(1, 2, 0, 2, 1), True),
        (ResourceVector(2, 2, 2, 2, 2), ResourceVector(3, 0, 0, 0, 0), False),
        (ResourceVector(), ResourceVector(), True),
    ],
)
def test_covers(big: ResourceVector, small: ResourceVector, expected: bool) -> None:
    assert big.covers(small) is expected


def test_rules_compare_and_hash_by_meaning() -> None:
    one = PlacementRules(attributes={"zone": "a", "type": ["x", "y"]})
    same = PlacementRules(attributes={"type": ("y", "x"), "zone": ["a"]})
    assert one == same
    assert hash(one) == hash(same)
    assert one.matchers == (("type", frozenset({"x", "y"})), ("zone", frozenset({"a"})))
    assert one != PlacementRules(attributes={"zone": "b"})


def test_agent_free_cannot_exceed_total() -> None:
    with pytest.raises(ValueError, match="exceeds total"):
        Agent("a", ResourceVector(1000), ResourceVector(2000))


def test_agent_ports_as_count_or_numbers() -> None:
    assert agent("a", ports=5).free_port_count == 5
    numbered = agent("a", ports=range(30_000, 30_010))
    assert numbered.free_port_count == 10
    assert numbered.port_capacity == 10
    with pytest.raises(ValueError, match="port"):
        Agent("a", ResourceVector(), ResourceVector(), free_ports=5, total_ports=2)


def test_task_ports_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="ports"):
        TaskRequest("t", "j", ports=-1)


def test_request_from_spec() -> None:
    request = request_from_spec(
        "job-1-0",
        "job-1",
        Resources(cpu=0.5, memory="2Gi", disk="10Gi", network_mbps=200, gpu=1),
        Constraints(
            hard=ConstraintSet(unique_host=True, attributes={"zone": ["us-east-1a", "us-east-1b"]}),
            soft=ConstraintSet(zone_balance=True, attributes={"instance_type": "m5.large"}),
        ),
        ports=2,
        capacity_group="prod",
        tier=Tier.CRITICAL,
    )
    assert request.resources == ResourceVector(500, 2 * GIB, 10 * GIB, 200, 1)
    assert request.ports == 2
    assert request.hard == PlacementRules(
        unique_host=True, attributes={"zone": ["us-east-1a", "us-east-1b"]}
    )
    assert request.soft == PlacementRules(
        zone_balance=True, attributes={"instance_type": "m5.large"}
    )
    assert (request.capacity_group, request.tier) == ("prod", Tier.CRITICAL)


def test_result_lists_never_fitting_tasks() -> None:
    result = ScheduleResult(
        placements={},
        pending={
            "t1": Pending("t1", ReasonCode.NEVER_FITS, "too big"),
            "t2": Pending("t2", ReasonCode.INSUFFICIENT_RESOURCES, "wait"),
        },
    )
    assert result.never_fits() == ["t1"]
    assert result.pending["t1"].never_fits
    assert not result.pending["t2"].never_fits
