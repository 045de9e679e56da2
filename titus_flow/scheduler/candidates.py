"""The agents one run of identical tasks may use, kept ranked as tasks are placed.

Built once per run: every eligible agent that admits the task goes into a heap
for its zone, ordered by :func:`~titus_flow.scheduler.rankers.agent_key`. The
zone term of the ranking changes with every placement of the job, so it is
applied when choosing between the (few) zone heads rather than stored in the
heaps. An agent only changes when a task is placed on it, and it is popped
then, so every stored key stays current.
"""

from __future__ import annotations

import heapq

from titus_flow.scheduler.dimensions import Vector
from titus_flow.scheduler.filters import admits, fits, free_of_job
from titus_flow.scheduler.model import Placement, TaskRequest
from titus_flow.scheduler.rankers import Entry, RankKey, agent_key, ranked, zone_tasks
from titus_flow.scheduler.state import ClusterState


class CandidatePool:
    """Ranked candidate agents for tasks like ``model``."""

    __slots__ = ("_demand", "_heaps", "_model", "_state", "_zone_counts")

    def __init__(self, state: ClusterState, model: TaskRequest, demand: Vector) -> None:
        self._state = state
        self._model = model
        self._demand = demand
        self._zone_counts = state.zone_tasks(model.job_id)
        self._heaps: dict[str, list[Entry]] = {}
        for zone, slots in state.eligible_by_zone(model.hard).items():
            fitting = [slot for slot in slots if fits(slot.free, demand)]
            if model.hard.unique_host:
                fitting = [slot for slot in fitting if free_of_job(slot.jobs, model.job_id)]
            heap = ranked(fitting, model)
            heapq.heapify(heap)
            self._heaps[zone] = heap

    def take(self, task: TaskRequest) -> Placement | None:
        """Place ``task`` (one of the run) on the best agent, or return ``None`` if none fits."""
        allowed = self._state.balanced_zones(self._model)
        best: RankKey | None = None
        best_heap: list[Entry] = []
        for zone, heap in self._heaps.items():
            if not heap or (allowed is not None and zone not in allowed):
                continue
            violations, score, rank, _ = heap[0]
            key = (violations, zone_tasks(self._zone_counts, zone, self._model), score, rank)
            if best is None or key < best:
                best, best_heap = key, heap
        if best is None:
            return None
        slot = heapq.heappop(best_heap)[-1]
        placement = self._state.place(slot, task, self._demand)
        model = self._model
        if admits(slot.free, slot.jobs, self._demand, model.job_id, model.hard.unique_host):
            heapq.heappush(best_heap, (*agent_key(slot, model), slot))
        return placement
