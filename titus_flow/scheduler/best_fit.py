"""The best-fit score: how much of an agent's CPU and memory is still free.

A leaf module: :class:`~titus_flow.scheduler.state.AgentSlot` keeps each agent's
score current as tasks are placed, and :mod:`titus_flow.scheduler.rankers` ranks
agents by it, so both import it from here rather than from each other.
:mod:`titus_flow.scheduler.rankers` still exports it under its old name.
"""

from __future__ import annotations

from collections.abc import Sequence

from titus_flow.scheduler.dimensions import CPU, MEMORY


def best_fit_score(free: Sequence[int], inverse_total: Sequence[float]) -> float:
    """Fractions of the agent's CPU and memory still free, summed: lower is fuller.

    Ranking the fullest agent that fits first is best fit: tasks go where others
    already run and empty agents stay empty (to take big tasks, or scale down).
    CPU and memory are what strands capacity; the other dimensions only filter.
    """
    return free[CPU] * inverse_total[CPU] + free[MEMORY] * inverse_total[MEMORY]
