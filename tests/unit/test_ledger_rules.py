"""The capacity ledger's rules for agents and reservations, without a server: lost
agents and their return, drains that evict once, what a carried ledger keeps, and
what waits for capacity (the ledger's cost and size: test_ledger_scaling.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from titus_flow import CapacityGroup, CapacityLimit, Resources
from titus_flow.contracts import AgentInfo, PlacementItem, PlacementRequest, ReleaseRequest
from titus_flow.ledger import CarriedLedger, Ledger, LedgerState, Reservation

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SILENCE = timedelta(seconds=45)


def agent(agent_id: str, cpu: float = 4) -> AgentInfo:
    return AgentInfo(
        agent_id=agent_id,
        task_queue=f"q-{agent_id}",
        resources=Resources(cpu=cpu, memory="8Gi"),
        port_range=(20000, 20009),
    )


def item(key: str, cpu: float = 1, ports: int = 0, group: str = "default") -> PlacementItem:
    return PlacementItem(
        key=key,
        job_id=key.rpartition("-")[0],
        capacity_group=group,
        resources=Resources(cpu=cpu, memory=64, disk=0, network_mbps=0),
        ports=[f"p{n}" for n in range(ports)],
    )


def test_a_silent_agent_is_lost_once_and_back_when_it_registers() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.register(agent("b"), NOW + timedelta(seconds=30))
    later = NOW + timedelta(seconds=60)
    assert ledger.mark_silent_agents_lost(later, SILENCE) == ["a"]
    assert ledger.mark_silent_agents_lost(later, SILENCE) == []  # already lost
    ledger.register(agent("a"), later)
    assert ledger.state.agents["a"].state == "active"
    assert ledger.state.agents["a"].last_seen == later


def test_a_draining_agent_that_registers_again_stays_draining() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.set_agent_state("a", "draining")
    ledger.set_agent_state("unknown", "draining")  # ignored
    ledger.register(agent("a"), NOW + SILENCE)
    assert ledger.state.agents["a"].state == "draining"
    assert "unknown" not in ledger.state.agents


def test_nothing_is_placed_on_a_lost_agent() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.mark_silent_agents_lost(NOW + 2 * SILENCE, SILENCE)
    ledger.request(PlacementRequest(requester="job", items=[item("job-0")]))
    update = ledger.iterate()["job"]
    assert not update.placed and [u.key for u in update.pending] == ["job-0"]
    ledger.register(agent("a"), NOW + 3 * SILENCE)
    assert [p.agent_id for p in ledger.iterate()["job"].placed] == ["a"]


def test_a_drain_evicts_each_reservation_once() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.request(PlacementRequest(requester="svc", items=[item("svc-0"), item("svc-1")]))
    assert len(ledger.iterate()["svc"].placed) == 2
    assert ledger.iterate() == {}  # nothing to tell
    ledger.set_agent_state("a", "draining")
    assert sorted(ledger.iterate()["svc"].evict) == ["svc-0", "svc-1"]
    assert ledger.iterate() == {}  # told once
    assert all(r.evicting for r in ledger.state.reservations.values())


def test_removing_an_agent_frees_its_reservations() -> None:
    ledger = Ledger()
    for name in "ab":
        ledger.register(agent(name, cpu=1), NOW)
    ledger.request(PlacementRequest(requester="job", items=[item("job-0"), item("job-1")]))
    placed = {p.key: p.agent_id for p in ledger.iterate()["job"].placed}
    gone = placed["job-0"]
    ledger.remove_agent(gone)
    assert list(ledger.state.reservations) == ["job-1"]
    assert gone not in ledger.state.agents
    assert ledger.agent_views()[0].task_count == 1


def test_a_requester_that_is_gone_leaves_nothing_behind() -> None:
    ledger = Ledger()
    ledger.register(agent("a", cpu=1), NOW)
    ledger.request(PlacementRequest(requester="job", items=[item("job-0"), item("job-1")]))
    ledger.iterate()
    assert ledger.requesters() == ["job"]
    ledger.release_requester("job")
    assert not ledger.state.reservations and not ledger.state.pending
    assert ledger.requesters() == []


def test_pending_demand_groups_alike_tasks_of_a_job() -> None:
    ledger = Ledger()
    ledger.register(agent("a", cpu=2), NOW)
    big = [item(f"big-{n}", cpu=2) for n in range(4)]
    ledger.request(PlacementRequest(requester="big", items=big))
    ledger.request(PlacementRequest(requester="small", items=[item("small-0", cpu=2)]))
    assert [p.key for p in ledger.iterate()["big"].placed] == ["big-0"]
    demand = {d.job_id: (d.key, d.count) for d in ledger.pending_demand()}
    assert demand == {"big": ("big-1", 3), "small": ("small-0", 1)}
    ledger.release(ReleaseRequest(requester="big", keys=["big-1"]))
    assert {d.job_id: d.count for d in ledger.pending_demand()}["big"] == 2


def test_a_reservation_whose_ports_do_not_follow_its_spec_is_carried_whole() -> None:
    """Never expected, but a carried ledger must not lose or garble such a reservation."""
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.request(PlacementRequest(requester="svc", items=[item("svc-0", ports=2)]))
    ledger.iterate()
    odd = Reservation(requester="svc", agent_id="a", item=item("svc-1", ports=2), ports={"x": 1})
    elsewhere = Reservation(requester="svc", agent_id="gone", item=item("svc-2"))
    state = ledger.state.model_copy(deep=True)
    state.reservations.update({"svc-1": odd, "svc-2": elsewhere})
    carried = CarriedLedger.of(state)
    assert [r.item.key for r in carried.other_reservations] == ["svc-1", "svc-2"]
    assert len(carried.reservations) == 1
    back = CarriedLedger.model_validate_json(carried.model_dump_json()).expand()
    assert back == state
    assert isinstance(back, LedgerState)


def test_a_held_key_asked_for_again_is_an_answer_owed_until_the_next_iteration() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.request(PlacementRequest(requester="job", items=[item("job-0")]))
    ledger.iterate()
    assert not ledger.answers_unsent()
    ledger.request(PlacementRequest(requester="job", items=[item("job-0")]))
    assert ledger.answers_unsent()  # only this object knows: not carried over
    assert [p.key for p in ledger.iterate()["job"].placed] == ["job-0"]
    assert not ledger.answers_unsent()


def test_tasks_their_capacity_group_holds_back_are_no_demand_for_more_agents() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    ledger.put_capacity_group(CapacityGroup(name="capped", limit=CapacityLimit(tasks=1)))
    items = [item(f"job-{n}", group="capped") for n in range(3)]
    ledger.request(PlacementRequest(requester="job", items=items))
    assert len(ledger.iterate()["job"].placed) == 1
    assert all(p.held_by_group for p in ledger.state.pending.values())
    assert ledger.pending_demand() == []
