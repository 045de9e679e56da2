"""Properties of schedule() on small random clusters, checked by replaying its placements."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from titus_flow.scheduler import (
    Agent,
    AgentState,
    CapacityGroup,
    GroupUsage,
    Pending,
    Placement,
    PlacementRules,
    ReasonCode,
    ResourceVector,
    ScheduleResult,
    TaskRequest,
    Tier,
    schedule,
)
from titus_flow.scheduler.capacity import CapacityLedger
from titus_flow.scheduler.dimensions import capacity_of, demand_of, free_of
from titus_flow.scheduler.explain import no_agent
from titus_flow.scheduler.filters import admits, fits, matches
from titus_flow.scheduler.ordering import plan_runs
from titus_flow.scheduler.rankers import rank_key
from titus_flow.scheduler.state import ClusterState

ZONES = ("a", "b", "c")
TYPES = ("small", "big")
JOBS = ("j1", "j2", "j3")
GROUPS = ("crit", "flex", "other")
# Hypothesis favours the ends of a list: keep the rare choice in the middle.
SOMETIMES = st.sampled_from([False, False, True, False, False])


@dataclass(frozen=True)
class Case:
    agents: list[Agent]
    tasks: list[TaskRequest]
    groups: list[CapacityGroup]
    usage: dict[str, GroupUsage]

    def run(self) -> ScheduleResult:
        return schedule(self.agents, self.tasks, groups=self.groups, usage=self.usage)


@st.composite
def agents(draw: st.DrawFn) -> list[Agent]:
    built = []
    for index in range(draw(st.integers(2, 6))):
        cpu = draw(st.sampled_from([4000, 2000, 4000]))
        memory = draw(st.sampled_from([4096, 2048, 4096]))
        gpu = int(draw(SOMETIMES))
        share = draw(st.sampled_from([1, 2, 4, 1]))  # mostly empty agents: tasks must fit
        free = ResourceVector(cpu // share, memory // share, 1000, 1000, gpu)
        port_count = draw(st.integers(0, 4))
        ports: int | Sequence[int] = (
            range(100 * index, 100 * index + port_count) if draw(st.booleans()) else port_count
        )
        built.append(
            Agent(
                f"agent-{index}",
                ResourceVector(cpu, memory, 1000, 1000, gpu),
                free,
                attributes={
                    "zone": draw(st.sampled_from(ZONES)),
                    "type": draw(st.sampled_from(TYPES)),
                },
                state=draw(st.sampled_from([*AgentState, *[AgentState.ACTIVE] * 4])),
                free_ports=ports,
                jobs=draw(st.dictionaries(st.sampled_from(JOBS), st.integers(0, 2), max_size=2)),
            )
        )
    return draw(st.permutations(built))


@st.composite
def rules(draw: st.DrawFn) -> PlacementRules:
    attributes: dict[str, str | list[str]] = {}
    if draw(SOMETIMES):
        attributes["zone"] = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=2))
    if draw(SOMETIMES):
        attributes["type"] = draw(st.sampled_from(TYPES))
    return PlacementRules(
        unique_host=draw(SOMETIMES), zone_balance=draw(SOMETIMES), attributes=attributes
    )


@st.composite
def shapes(draw: st.DrawFn) -> TaskRequest:
    """A task of one job; its copies (new ids) are the job's identical tasks."""
    rarely = st.tuples(SOMETIMES, SOMETIMES).map(all)
    huge = draw(rarely)  # larger than any agent: never fits
    return TaskRequest(
        "",
        draw(st.sampled_from(JOBS)),
        ResourceVector(
            9000 if huge else draw(st.sampled_from([1000, 250, 500, 2000, 1000])),
            draw(st.sampled_from([512, 0, 256, 1024, 512])),
            0,
            0,
            int(draw(rarely)),
        ),
        draw(st.integers(0, 2)),
        draw(rules()),
        draw(rules()),
        draw(st.sampled_from(GROUPS)),
        draw(st.sampled_from(Tier)),
    )


@st.composite
def tasks(draw: st.DrawFn) -> list[TaskRequest]:
    # Few distinct shapes, so runs of identical tasks occur.
    kinds = draw(st.lists(shapes(), min_size=2, max_size=4))
    picks = draw(st.lists(st.sampled_from(kinds), min_size=4, max_size=16))
    return [replace(kind, task_id=f"task-{index}") for index, kind in enumerate(picks)]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    groups = [
        CapacityGroup(
            "crit",
            Tier.CRITICAL,
            guaranteed_millicores=draw(st.sampled_from([0, 1000, 3000, 0])),
            guaranteed_memory_mib=draw(st.sampled_from([0, 2048, 0])),
        ),
        CapacityGroup(
            "flex",
            Tier.FLEX,
            max_millicores=draw(st.sampled_from([None, None, 3000, None])),
            max_memory_mib=draw(st.sampled_from([None, None, 2048, None])),
            max_tasks=draw(st.sampled_from([None, 2, None, 0, None])),
        ),
    ]
    usage = {
        "crit": GroupUsage(draw(st.sampled_from([0, 1000])), 0, 1),
        "flex": GroupUsage(0, 0, draw(st.integers(0, 1))),
    }
    return Case(draw(agents()), draw(tasks()), groups, usage)


PROPERTY = settings(max_examples=60, deadline=None)


def zone_counts(case: Case, job_id: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for agent in case.agents:
        if agent.state is not AgentState.LOST:
            counts[agent.attributes["zone"]] += agent.jobs.get(job_id, 0)
    return counts


@given(cases())
@PROPERTY
def test_every_task_is_placed_or_explained(case: Case) -> None:
    result = case.run()
    ids = [task.task_id for task in case.tasks]
    assert set(result.placements).isdisjoint(result.pending)
    assert sorted([*result.placements, *result.pending]) == sorted(ids)
    assert all(pending.message for pending in result.pending.values())


@given(cases())
@PROPERTY
def test_no_agent_is_over_committed(case: Case) -> None:
    result = case.run()
    agents = {agent.id: agent for agent in case.agents}
    tasks = {task.task_id: task for task in case.tasks}
    used: dict[str, list[int]] = {agent_id: [0] * 6 for agent_id in agents}
    ports: dict[str, list[int]] = {agent_id: [] for agent_id in agents}
    for placement in result.placements.values():
        demand = demand_of(tasks[placement.task_id])
        used[placement.agent_id] = [
            a + b for a, b in zip(used[placement.agent_id], demand, strict=True)
        ]
        ports[placement.agent_id].extend(placement.ports)
        free_ports = agents[placement.agent_id].free_ports
        expected = 0 if isinstance(free_ports, int) else demand[-1]
        assert len(placement.ports) == expected
    for agent_id, agent in agents.items():
        assert fits(free_of(agent), used[agent_id])
        assert len(set(ports[agent_id])) == len(ports[agent_id])
        if not isinstance(agent.free_ports, int):
            assert set(ports[agent_id]) <= set(agent.free_ports)


@given(cases())
@PROPERTY
def test_every_hard_rule_holds(case: Case) -> None:
    result = case.run()
    agents = {agent.id: agent for agent in case.agents}
    tasks = {task.task_id: task for task in case.tasks}
    placed_jobs: Counter[tuple[str, str]] = Counter()
    counts = {job: zone_counts(case, job) for job in JOBS}
    for placement in result.placements.values():
        agent, task = agents[placement.agent_id], tasks[placement.task_id]
        zone = agent.attributes["zone"]
        assert agent.state is AgentState.ACTIVE
        assert matches(agent.attributes, task.hard.matchers)
        placed_jobs[agent.id, task.job_id] += 1
        if task.hard.unique_host:
            assert not agent.jobs.get(task.job_id)
            assert placed_jobs[agent.id, task.job_id] == 1
        if task.hard.zone_balance:
            eligible_zones = {
                other.attributes["zone"]
                for other in case.agents
                if other.state is AgentState.ACTIVE
                and matches(other.attributes, task.hard.matchers)
            }
            job_counts = counts[task.job_id]
            assert job_counts[zone] == min(job_counts[z] for z in eligible_zones)
        counts[task.job_id][zone] += 1


@given(cases())
@PROPERTY
def test_same_input_same_output_whatever_the_agent_order(case: Case) -> None:
    first = case.run()
    again = schedule(case.agents[::-1], case.tasks, groups=case.groups, usage=case.usage)
    assert list(first.placements.items()) == list(again.placements.items())
    assert list(first.pending.items()) == list(again.pending.items())


@given(cases())
@PROPERTY
def test_critical_tasks_are_placed_before_flex_ones(case: Case) -> None:
    tiers = {task.task_id: task.tier for task in case.tasks}
    placed = [tiers[task_id] for task_id in case.run().placements]
    assert placed == sorted(placed, key=lambda tier: tier is not Tier.CRITICAL)


@given(cases())
@PROPERTY
def test_group_limits_and_critical_guarantees_hold(case: Case) -> None:
    tasks = {task.task_id: task for task in case.tasks}
    groups = {group.name: group for group in case.groups}
    used = {name: [u.millicores, u.memory_mib, u.tasks] for name, u in case.usage.items()}
    free = [0, 0]
    for agent in case.agents:
        if agent.state is AgentState.ACTIVE:
            free[0] += agent.free.millicores
            free[1] += agent.free.memory_mib
    for task_id in case.run().placements:
        task = tasks[task_id]
        need = (task.resources.millicores, task.resources.memory_mib, 1)
        group = groups.get(task.capacity_group)
        usage = used.setdefault(task.capacity_group, [0, 0, 0])
        if group is not None:
            for have, add, limit in zip(
                usage,
                need,
                (group.max_millicores, group.max_memory_mib, group.max_tasks),
                strict=True,
            ):
                assert limit is None or have + add <= limit
        free = [free[0] - need[0], free[1] - need[1]]
        if task.tier is Tier.FLEX:
            crit = groups["crit"]
            if task.capacity_group != "crit":
                held_cpu = max(crit.guaranteed_millicores - used["crit"][0], 0)
                held_memory = max(crit.guaranteed_memory_mib - used["crit"][1], 0)
                assert need[0] == 0 or free[0] >= held_cpu
                assert need[1] == 0 or free[1] >= held_memory
        used[task.capacity_group] = [have + add for have, add in zip(usage, need, strict=True)]


@given(cases())
@PROPERTY
def test_never_fits_means_no_agent_could_ever_hold_it(case: Case) -> None:
    result = case.run()
    tasks = {task.task_id: task for task in case.tasks}
    for task_id, pending in result.pending.items():
        could = any(fits(capacity_of(agent), demand_of(tasks[task_id])) for agent in case.agents)
        assert pending.never_fits is (bool(case.agents) and not could)


def naive_schedule(case: Case) -> ScheduleResult:
    """The definition, task by task: every agent checked, the best rank_key taken."""
    state = ClusterState(case.agents, {task.job_id for task in case.tasks})
    ledger = CapacityLedger(case.groups, case.usage, state)
    placements: dict[str, Placement] = {}
    pending: dict[str, Pending] = {}
    for run in plan_runs(case.tasks, state.size_weights, state.eligible):
        for task in run.tasks:
            demand = demand_of(task)
            if state.capacities and not state.can_ever_hold(demand):
                pending[task.task_id] = Pending(task.task_id, ReasonCode.NEVER_FITS, "-")
                continue
            refusal = ledger.refusal(task)
            if refusal is not None:
                pending[task.task_id] = Pending(task.task_id, *refusal)
                continue
            zones = state.balanced_zones(task)
            candidates = [
                slot
                for slot in state.eligible(task.hard)
                if admits(slot.free, slot.jobs, demand, task.job_id, task.hard.unique_host)
                and (zones is None or slot.zone in zones)
            ]
            if not candidates:
                pending[task.task_id] = Pending(task.task_id, *no_agent(state, task, demand))
                continue
            counts = state.zone_tasks(task.job_id)
            best = min(candidates, key=lambda slot: rank_key(slot, task, counts))
            placements[task.task_id] = state.place(best, task, demand)
            ledger.record(task)
    return ScheduleResult(placements, pending)


@given(cases())
@PROPERTY
def test_runs_and_heaps_agree_with_the_task_by_task_definition(case: Case) -> None:
    fast, slow = case.run(), naive_schedule(case)
    assert list(fast.placements.items()) == list(slow.placements.items())
    assert {t: p.code for t, p in fast.pending.items()} == {
        t: p.code for t, p in slow.pending.items()
    }
