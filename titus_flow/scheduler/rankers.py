"""Rankers: order the agents that passed the filters; the smallest key wins.

The full key is ``(soft violations, zone tasks, best-fit score, agent rank)``:
honour as many soft rules as possible, then spread a zone-balanced job to its
emptiest zone, then pack onto the fullest agent (the filters already made sure
it fits), then break ties by agent id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from titus_flow.scheduler.best_fit import best_fit_score as best_fit_score
from titus_flow.scheduler.filters import matches
from titus_flow.scheduler.model import TaskRequest
from titus_flow.scheduler.state import AgentSlot

AgentKey = tuple[int, float, int]
"""Soft violations, best-fit score, agent rank."""
Entry = tuple[int, float, int, AgentSlot]
"""An :data:`AgentKey` followed by its agent: a heap entry."""
RankKey = tuple[int, int, float, int]
"""Soft violations, tasks of the job in the agent's zone, best-fit score, agent rank."""


def has_soft_rules(task: TaskRequest) -> bool:
    """Whether any agent could break one of ``task``'s soft rules."""
    return bool(task.soft.matchers) or task.soft.unique_host or bool(task.avoid)


def soft_violations(
    attributes: Mapping[str, str], jobs: Mapping[str, int], task: TaskRequest, agent_id: str = ""
) -> int:
    """How many of ``task``'s soft rules the agent breaks (each attribute counts once).

    An agent the task avoids (``task.avoid``) breaks one more.
    """
    soft = task.soft
    broken = sum(not matches(attributes, (matcher,)) for matcher in soft.matchers)
    if soft.unique_host and jobs.get(task.job_id):
        broken += 1
    if agent_id in task.avoid:
        broken += 1
    return broken


def zone_tasks(counts: Mapping[str, int], zone: str, task: TaskRequest) -> int:
    """Tasks of the job already in ``zone`` when the task asks for zone balance, else 0."""
    if task.hard.zone_balance or task.soft.zone_balance:
        return counts.get(zone, 0)
    return 0


def agent_key(slot: AgentSlot, task: TaskRequest) -> AgentKey:
    """The part of the ranking key that depends on the agent alone."""
    return (
        soft_violations(slot.agent.attributes, slot.jobs, task, slot.agent.id),
        slot.score,
        slot.rank,
    )


def ranked(slots: Iterable[AgentSlot], task: TaskRequest) -> list[Entry]:
    """An :data:`Entry` for each slot (unordered: the caller heapifies)."""
    if not has_soft_rules(task):
        # The common case, once per run per agent: no rule to break, so skip the call.
        return [(0, slot.score, slot.rank, slot) for slot in slots]
    soft = task.soft
    if not (soft.matchers or soft.unique_host):
        # Only agents to avoid (a retry after a platform failure; each such retry
        # is a run of its own): the same keys as agent_key, without a call per agent.
        avoid = task.avoid
        return [(int(slot.agent.id in avoid), slot.score, slot.rank, slot) for slot in slots]
    return [(*agent_key(slot, task), slot) for slot in slots]


def rank_key(slot: AgentSlot, task: TaskRequest, zone_counts: Mapping[str, int]) -> RankKey:
    """The complete ranking key of one agent for one task."""
    violations, score, rank = agent_key(slot, task)
    return violations, zone_tasks(zone_counts, slot.zone, task), score, rank
