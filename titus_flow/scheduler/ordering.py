"""Which tasks go first, and which tasks are interchangeable.

Critical tasks go before flex ones. Within a tier, tasks with hard rules go
first, those with the fewest eligible agents soonest: the most constrained
tasks get their scarce agents before unconstrained ones fill them (and the
agents a ``unique_host`` job spreads over are then filled up by the rest rather
than new agents opened). Then the largest go first (as in first-fit-decreasing:
big tasks claim room while there is some, small ones fill the gaps), and the
rest keeps submission order.

Tasks that agree on everything that matters for placement (resources, ports,
rules, group, tier, and the job when a rule is about the job) form a *run*: the
scheduler filters and ranks agents once per run, not once per task, which is
what makes thousands of tasks cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence, Sized
from dataclasses import dataclass, field

from titus_flow.scheduler.dimensions import Vector, demand_of
from titus_flow.scheduler.model import PlacementRules, TaskRequest, Tier


@dataclass(slots=True)
class Run:
    """Interchangeable tasks, in submission order."""

    demand: Vector
    tasks: list[TaskRequest] = field(default_factory=list)

    @property
    def model(self) -> TaskRequest:
        """The first task: stands for the whole run when filtering and ranking."""
        return self.tasks[0]


def depends_on_job(task: TaskRequest) -> bool:
    """Whether where ``task`` may or should go depends on where its job's other tasks are."""
    hard, soft = task.hard, task.soft
    return hard.unique_host or hard.zone_balance or soft.unique_host or soft.zone_balance


def run_key(task: TaskRequest) -> Hashable:
    """What tasks of one run share."""
    return (
        task.job_id if depends_on_job(task) else None,
        task.resources,
        task.ports,
        task.hard,
        task.soft,
        task.capacity_group,
        task.tier,
        task.avoid,
    )


def size(demand: Sequence[int], weights: Sequence[float]) -> float:
    """A task's share of the cluster, summed over dimensions (weights are 1 / cluster total)."""
    return sum(need * weight for need, weight in zip(demand, weights, strict=True))


def is_constrained(rules: PlacementRules) -> bool:
    """Whether hard ``rules`` narrow the agents a task may use."""
    return bool(rules.matchers) or rules.unique_host or rules.zone_balance


def plan_runs(
    tasks: Iterable[TaskRequest],
    weights: Sequence[float],
    eligible: Callable[[PlacementRules], Sized],
) -> list[Run]:
    """Group ``tasks`` into runs, in the order they are to be placed.

    ``weights`` turn a demand into a size (see :func:`size`); ``eligible`` gives
    the agents hard rules allow.
    """
    runs: dict[Hashable, Run] = {}
    for task in tasks:
        key = run_key(task)
        run = runs.get(key)
        if run is None:
            run = runs[key] = Run(demand_of(task))
        run.tasks.append(task)

    def order(run: Run) -> tuple[bool, bool, int, float]:
        hard = run.model.hard
        constrained = is_constrained(hard)
        return (
            run.model.tier is not Tier.CRITICAL,
            not constrained,
            len(eligible(hard)) if constrained else 0,
            -size(run.demand, weights),
        )

    # sorted() is stable and runs are in first-submission order, so ties keep it.
    return sorted(runs.values(), key=order)
