"""Fleet shapes in the scheduler: tasks wait for a fleet that can hold them, and say why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from titus_flow.cluster import agent_task_queue
from titus_flow.contracts import AgentInfo, PlacementItem, PlacementRequest
from titus_flow.fleet import parse_fleet
from titus_flow.fleet.messages import FleetCapacity
from titus_flow.fleet.shapes import FleetOutlook, fleet_capacity, fleet_gone
from titus_flow.fleet.spec import FleetSpec
from titus_flow.ledger import AgentRecord, Ledger, Reservation
from titus_flow.ledger.placement import place
from titus_flow.scheduler import ReasonCode, request_from_spec
from titus_flow.spec import CapacityGroup, Constraints, Resources

WORKFLOW = "q-fleet-pool"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def fleet(**fields: Any) -> FleetSpec:
    raw: dict[str, Any] = {
        "name": "pool",
        "region": "us-east-1",
        "ami": "ami-12345678",
        "instance_types": ["m5.xlarge", "m5.large"],
        "subnets": [
            {"id": "subnet-a", "zone": "us-east-1a"},
            {"id": "subnet-b", "zone": "us-east-1b"},
        ],
        "max": 3,
        "temporal": {"address": "t:7233"},
        "agent": {"attributes": {"pool": "batch"}},
        **fields,
    }
    return parse_fleet(raw, "test")


def pool(at_max: bool = False, **fields: Any) -> FleetCapacity:
    return fleet_capacity(fleet(**fields), WORKFLOW, at_max=at_max)


def agent(agent_id: str = "small", cpu: float = 2, memory: int = 4096) -> AgentRecord:
    return AgentRecord(
        info=AgentInfo(
            agent_id=agent_id,
            task_queue=agent_task_queue(agent_id),
            resources=Resources(cpu=cpu, memory=memory, disk=100 * 1024, network_mbps=10_000),
            attributes={"zone": "us-east-1a"},
        )
    )


def item(key: str = "t", cpu: float = 1, memory: int = 512, **hard: str) -> PlacementItem:
    return PlacementItem(
        key=key,
        job_id="job",
        resources=Resources(cpu=cpu, memory=memory),
        constraints=Constraints.model_validate({"hard": {"attributes": hard}}),
    )


def test_shapes_are_each_type_cheapest_first_in_each_zone_as_its_agent_registers() -> None:
    capacity = pool()
    assert [(s.instance_type, s.zone) for s in capacity.shapes] == [
        ("m5.large", "us-east-1a"),
        ("m5.large", "us-east-1b"),
        ("m5.xlarge", "us-east-1a"),
        ("m5.xlarge", "us-east-1b"),
    ]
    large = capacity.shapes[0]
    assert (large.resources.cpu, large.resources.memory) == (2, 8192 - 512)
    assert large.attributes == {
        "pool": "batch",
        "fleet": "pool",
        "zone": "us-east-1a",
        "instance_type": "m5.large",
    }
    assert (capacity.max, capacity.at_max, capacity.workflow_id) == (3, False, WORKFLOW)
    assert fleet_gone("pool", WORKFLOW).shapes == []


def test_a_task_bigger_than_every_agent_waits_for_a_fleet_type_that_holds_it() -> None:
    task = item(cpu=3)  # the agent has 2 cores, an m5.xlarge 4
    assert place([agent()], [], [task]).rejected  # no fleet: invalid request, as before
    result = place([agent()], [], [task], fleets=[pool()])
    assert not result.rejected and not result.placed
    assert result.pending["t"] == (
        "larger than any agent's total capacity: needs 3 CPU cores, the largest agent has 2 cores;"
        " waiting for fleet pool to launch a m5.xlarge"
    )


def test_a_fleet_at_max_is_named_in_the_reason() -> None:
    result = place([agent()], [], [item(cpu=3)], fleets=[pool(at_max=True)])
    assert result.pending["t"].endswith("; fleet pool is at its max of 3 instances")


def test_a_busy_cluster_says_which_type_the_fleet_launches() -> None:
    busy = Reservation(requester="other", agent_id="small", item=item("busy", cpu=2))
    result = place([agent()], [busy], [item()], fleets=[pool()])
    assert result.pending["t"].startswith("no agent with 1 free CPU core: 1 agent checked")
    assert result.pending["t"].endswith("; waiting for fleet pool to launch a m5.large")


@pytest.mark.parametrize(
    ("task", "why"),
    [
        (item(cpu=64), "needs 64 CPU cores"),  # no type is that big
        (item(cpu=3, pool="gpu"), "needs 3 CPU cores"),  # big enough, but the fleet's agents differ
        (item(cpu=3, zone="eu-west-1a"), "needs 3 CPU cores"),  # not in the fleet's zones
    ],
)
def test_only_tasks_no_agent_and_no_fleet_type_holds_are_rejected(
    task: PlacementItem, why: str
) -> None:
    result = place([agent()], [], [task], fleets=[pool()])
    assert why in result.rejected["t"]
    assert result.rejected["t"].endswith("; no instance type of fleet pool holds it")


def test_rules_on_fleet_attributes_pick_the_fleet_and_its_zones() -> None:
    ok = item(cpu=3, fleet="pool", zone="us-east-1b", instance_type="m5.xlarge")
    result = place([agent()], [], [ok], fleets=[pool()])
    assert result.pending["t"].endswith("waiting for fleet pool to launch a m5.xlarge")


def test_without_agents_tasks_wait_as_before_with_what_the_fleet_does() -> None:
    result = place([], [], [item("a"), item("b", cpu=64)], fleets=[pool()])
    assert result.pending["a"] == "no active agent; waiting for fleet pool to launch a m5.large"
    assert result.pending["b"] == "no active agent"


def test_of_several_fleets_one_that_can_still_grow_is_named() -> None:
    full = pool(at_max=True)
    other = fleet_capacity(fleet(name="spare", max=5), "q-fleet-spare", at_max=False)
    outlook = FleetOutlook([full, other])
    task = request_from_spec("t", "job", Resources(cpu=3), Constraints())
    assert outlook.reason(task, ReasonCode.NEVER_FITS) == (
        "waiting for fleet spare to launch a m5.xlarge"
    )
    both_full = FleetOutlook([full, other.model_copy(update={"at_max": True})])
    assert both_full.reason(task, ReasonCode.INSUFFICIENT_RESOURCES) == (
        "fleet pool is at its max of 3 instances; fleet spare is at its max of 5 instances"
    )


def test_a_capacity_group_limit_is_not_a_fleet_matter() -> None:
    task = request_from_spec("t", "job", Resources(cpu=1), Constraints())
    outlook = FleetOutlook([pool()])
    assert outlook.reason(task, ReasonCode.GROUP_LIMIT) is None
    assert outlook.reason(task, ReasonCode.GUARANTEE_RESERVED) is None


def test_tasks_their_capacity_group_holds_back_are_not_fleet_demand() -> None:
    capped = CapacityGroup.model_validate({"name": "capped", "limit": {"tasks": 0}})
    ledger = Ledger()
    ledger.put_capacity_group(capped)
    ledger.set_fleet(pool())
    held = item("held").model_copy(update={"capacity_group": "capped"})
    missing = item("missing").model_copy(update={"capacity_group": "nowhere"})
    ledger.request(PlacementRequest(requester="job-1", items=[held, missing, item("free")]))
    reasons = {u.key: u.reason for u in ledger.iterate()["job-1"].pending}
    assert "fleet" not in reasons["held"] and "fleet" not in reasons["missing"]
    assert reasons["free"].endswith("waiting for fleet pool to launch a m5.large")
    pending = ledger.state.pending
    assert [k for k, p in pending.items() if not p.held_by_group] == ["free"]


def test_the_ledger_keeps_fleets_and_forgets_them_when_deleted_or_ended() -> None:
    ledger = Ledger()
    ledger.register(agent().info, now=NOW)
    ledger.request(PlacementRequest(requester="job-1", items=[item(cpu=3)]))
    ledger.set_fleet(pool())
    updates = ledger.iterate()
    assert updates["job-1"].pending[0].reason.endswith("launch a m5.xlarge")
    assert ledger.requesters() == ["job-1", WORKFLOW]  # its end is noticed like a job's
    ledger.set_fleet(pool(at_max=True))
    assert ledger.iterate()["job-1"].pending[0].reason.endswith("at its max of 3 instances")
    ledger.set_fleet(fleet_gone("pool", WORKFLOW))
    assert ledger.state.fleets == {}
    assert ledger.iterate()["job-1"].rejected[0].key == "t"  # nothing can ever hold it now
    ledger.set_fleet(pool())
    ledger.release_requester(WORKFLOW)  # the fleet workflow ended without saying so
    assert ledger.state.fleets == {}


def test_fleet_state_survives_continue_as_new() -> None:
    ledger = Ledger()
    ledger.set_fleet(pool())
    again = Ledger(type(ledger.state).model_validate_json(ledger.state.model_dump_json()))
    assert again.state.fleets == ledger.state.fleets
