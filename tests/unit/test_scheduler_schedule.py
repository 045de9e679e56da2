from __future__ import annotations

import pytest
from test_scheduler_builders import GIB, agent, task

from titus_flow.scheduler import (
    AgentState,
    CapacityGroup,
    GroupUsage,
    Placement,
    PlacementRules,
    ReasonCode,
    ScheduleResult,
    Tier,
    schedule,
)


def where(result: ScheduleResult) -> dict[str, str]:
    return {task_id: p.agent_id for task_id, p in result.placements.items()}


def test_best_fit_prefers_the_fullest_agent_that_fits() -> None:
    agents = [agent("empty"), agent("half", free_cpu=2000), agent("full", free_cpu=500)]
    assert where(schedule(agents, [task("t")])) == {"t": "half"}


def test_ties_go_to_the_lowest_agent_id_whatever_the_input_order() -> None:
    agents = [agent("b"), agent("c"), agent("a")]
    assert where(schedule(agents, [task("t")])) == {"t": "a"}


def test_fills_one_agent_before_opening_the_next() -> None:
    result = schedule([agent("a"), agent("b")], [task(str(n)) for n in range(6)])
    assert where(result) == {"0": "a", "1": "a", "2": "a", "3": "a", "4": "b", "5": "b"}


def test_never_over_commits_within_a_call() -> None:
    result = schedule([agent("a", cpu=3000)], [task(str(n)) for n in range(5)])
    assert len(result.placements) == 3
    assert len(result.pending) == 2


def test_only_active_agents_take_tasks() -> None:
    agents = [
        agent("a", state=AgentState.DRAINING),
        agent("b", state=AgentState.LOST),
        agent("c", free_cpu=1000),
    ]
    assert where(schedule(agents, [task("t")])) == {"t": "c"}


def test_hard_attributes_filter() -> None:
    agents = [agent("a", zone="a"), agent("b", zone="b"), agent("c", zone="c")]
    rules = PlacementRules(attributes={"zone": ["b", "c"]})
    assert where(schedule(agents, [task("t", hard=rules)])) == {"t": "b"}


def test_soft_attributes_rank_but_do_not_filter() -> None:
    agents = [agent("a", instance_type="small"), agent("b", instance_type="big", free_cpu=1000)]
    soft = PlacementRules(attributes={"instance_type": "big"})
    result = schedule(agents, [task("1", soft=soft), task("2", soft=soft)])
    assert where(result) == {"1": "b", "2": "a"}


def test_hard_unique_host_counts_running_and_new_tasks() -> None:
    agents = [agent("a", jobs={"web": 1}), agent("b"), agent("c")]
    tasks = [task(str(n), "web", hard=PlacementRules(unique_host=True)) for n in range(3)]
    result = schedule(agents, tasks)
    assert where(result) == {"0": "b", "1": "c"}
    assert result.pending["2"].code is ReasonCode.UNIQUE_HOST


def test_soft_unique_host_spreads_while_it_can() -> None:
    tasks = [task(str(n), "web", soft=PlacementRules(unique_host=True)) for n in range(3)]
    assert where(schedule([agent("a"), agent("b")], tasks)) == {"0": "a", "1": "b", "2": "a"}


def test_soft_zone_balance_prefers_the_zone_with_fewest_tasks_of_the_job() -> None:
    agents = [agent("a1", zone="a", jobs={"web": 2}), agent("b1", zone="b"), agent("c1", zone="c")]
    tasks = [task(str(n), "web", soft=PlacementRules(zone_balance=True)) for n in range(3)]
    result = schedule(agents, tasks)
    # b and c first (no task of the job yet), then b and c tie at 1 (a has 2): b by id.
    assert where(result) == {"0": "b1", "1": "c1", "2": "b1"}


def test_hard_zone_balance_waits_rather_than_unbalance() -> None:
    agents = [agent("a1", zone="a"), agent("b1", zone="b", cpu=1000)]
    tasks = [task(str(n), "web", hard=PlacementRules(zone_balance=True)) for n in range(4)]
    result = schedule(agents, tasks)
    assert where(result) == {"0": "a1", "1": "b1", "2": "a1"}
    assert result.pending["3"].code is ReasonCode.ZONE_BALANCE


def test_ports_come_from_the_free_list_in_order() -> None:
    agents = [agent("a", ports=[31_000, 30_500, 30_001])]
    result = schedule(agents, [task("1", ports=2), task("2", ports=1), task("3", ports=1)])
    assert result.placements["1"] == Placement("1", "a", (31_000, 30_500))
    assert result.placements["2"] == Placement("2", "a", (30_001,))
    assert result.pending["3"].code is ReasonCode.INSUFFICIENT_RESOURCES


def test_port_counts_place_without_numbers() -> None:
    result = schedule([agent("a", ports=2)], [task("1", ports=2), task("2", ports=1)])
    assert result.placements["1"].ports == ()
    assert "2" in result.pending


def test_gpus_are_a_dimension() -> None:
    agents = [agent("cpu"), agent("gpu", gpu=2)]
    result = schedule(agents, [task(str(n), gpu=1) for n in range(3)])
    assert where(result) == {"0": "gpu", "1": "gpu"}
    assert result.pending["2"].code is ReasonCode.INSUFFICIENT_RESOURCES


def test_critical_goes_first_and_takes_the_room() -> None:
    tasks = [task("flex", "f"), task("critical", "c", tier=Tier.CRITICAL)]
    result = schedule([agent("a", cpu=1000)], tasks)
    assert list(result.placements) == ["critical"]
    assert "flex" in result.pending


def test_flex_tasks_leave_critical_guarantees_alone() -> None:
    prod = CapacityGroup("prod", Tier.CRITICAL, guaranteed_millicores=3000)
    tasks = [task(str(n), "batch") for n in range(6)]
    tasks.append(task("p", "prod", group="prod", tier=Tier.CRITICAL))
    result = schedule([agent("a"), agent("b")], tasks, groups=[prod])
    # 8 cores; prod's task uses 1 of its 3 guaranteed cores, so 2 stay held back.
    assert list(result.placements) == ["p", "0", "1", "2", "3", "4"]
    assert result.pending["5"].code is ReasonCode.GUARANTEE_RESERVED


def test_group_at_its_limit_keeps_tasks_pending() -> None:
    batch = CapacityGroup("batch", max_tasks=2)
    tasks = [task(str(n), group="batch") for n in range(3)]
    result = schedule([agent("a")], tasks, groups=[batch], usage={"batch": GroupUsage(0, 0, 1)})
    assert list(result.placements) == ["0"]
    assert result.pending["1"].message == "capacity group 'batch' at its limit of 2 tasks"


def test_invalid_requests_are_told_apart_from_waiting_ones() -> None:
    result = schedule([agent("a", free_memory=0)], [task("huge", memory=64 * GIB), task("later")])
    assert result.never_fits() == ["huge"]
    assert not result.pending["later"].never_fits


def test_duplicate_task_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate task"):
        schedule([agent("a")], [task("t"), task("t")])


def test_inputs_are_not_modified() -> None:
    agents = [agent("a", ports=range(5), jobs={"web": 1})]
    before = repr(agents)
    schedule(agents, [task("t", "web", ports=2)])
    assert repr(agents) == before
