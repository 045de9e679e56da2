"""The scheduling pipeline: order the tasks, then filter, rank and select per run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from titus_flow.scheduler.candidates import CandidatePool
from titus_flow.scheduler.capacity import CapacityLedger
from titus_flow.scheduler.explain import no_agent, too_big
from titus_flow.scheduler.model import (
    Agent,
    CapacityGroup,
    GroupUsage,
    Pending,
    Placement,
    Reason,
    ReasonCode,
    ScheduleResult,
    TaskRequest,
)
from titus_flow.scheduler.ordering import Run, plan_runs
from titus_flow.scheduler.state import ClusterState


def schedule(
    agents: Iterable[Agent],
    tasks: Iterable[TaskRequest],
    *,
    groups: Iterable[CapacityGroup] = (),
    usage: Mapping[str, GroupUsage] | None = None,
) -> ScheduleResult:
    """Place as many of ``tasks`` as fit on ``agents``; explain the rest.

    ``groups`` are the capacity groups (a task naming an unknown group is
    unlimited) and ``usage`` what each group's running tasks use now. The same
    input always gives the same result, whatever the order of ``agents``.
    """
    pending_tasks = list(tasks)
    if len({task.task_id for task in pending_tasks}) != len(pending_tasks):
        raise ValueError("duplicate task ids")
    state = ClusterState(agents, {task.job_id for task in pending_tasks})
    ledger = CapacityLedger(groups, usage or {}, state)
    placements: dict[str, Placement] = {}
    pending: dict[str, Pending] = {}
    for run in plan_runs(pending_tasks, state.size_weights, state.eligible):
        _place_run(run, state, ledger, placements, pending)
    return ScheduleResult(placements, pending)


def _place_run(
    run: Run,
    state: ClusterState,
    ledger: CapacityLedger,
    placements: dict[str, Placement],
    pending: dict[str, Pending],
) -> None:
    stuck: Reason | None = None
    if state.capacities and not state.can_ever_hold(run.demand):
        stuck = ReasonCode.NEVER_FITS, too_big(state.capacities, run.demand)
    pool: CandidatePool | None = None
    for task in run.tasks:
        # Once one task of a run finds no agent, the identical rest cannot either.
        reason = stuck or ledger.refusal(task)
        if reason is None:
            if pool is None:
                pool = CandidatePool(state, run.model, run.demand)
            placement = pool.take(task)
            if placement is not None:
                ledger.record(task)
                placements[task.task_id] = placement
                continue
            stuck = reason = no_agent(state, run.model, run.demand)
        pending[task.task_id] = Pending(task.task_id, *reason)
