"""The scheduler's event journal: agents registered, lost and drained, and placements.

The cluster-wide half of the event stream (``titus-flow events`` without
``--job``), kept like a job's (:mod:`titus_flow.workflows.journal`): in memory,
appended where the scheduler already acts, read by the ``events`` query. A
placement is one event per job per scheduling iteration (how many of its tasks
were placed, how many wait), not one per task: each task's placement is in its
job's own stream (its Launched event names the agent). The scheduler's metrics
(placement latency, agents lost, agents and capacity by state and resource) are
emitted here too.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow import metrics as names
    from titus_flow.contracts import (
        AgentInfo,
        CapacityGroupView,
        PlacementRequest,
        PlacementUpdate,
        ReleaseRequest,
    )
    from titus_flow.events import EventKind, EventTail
    from titus_flow.ledger.state import LedgerState
    from titus_flow.spec import Resources
    from titus_flow.workflows.journal import MeteredJournal


class ClusterJournal(MeteredJournal):
    """The scheduler's journal, and the metrics it emits."""

    def __init__(self, tail: EventTail | None = None) -> None:
        super().__init__(None, tail)
        # Requests waiting for capacity: when each was asked (placement latency).
        # In memory only: a request carried across continue-as-new is not timed.
        self._asked: dict[str, tuple[datetime, str]] = {}

    def registered(self, info: AgentInfo, previous_state: str | None) -> None:
        """Agent ``info`` registered: new, back after being lost, or again (not journaled)."""
        if previous_state not in (None, "lost"):
            return
        r = info.resources
        message = f"{r.cpu:g} cpu, {r.memory} MiB memory" + (" (back)" if previous_state else "")
        self.append(
            workflow.now(), EventKind.AGENT_REGISTERED, agent=info.agent_id, message=message
        )

    def lost(self, agent_ids: list[str]) -> None:
        """The scheduler stopped hearing from ``agent_ids``."""
        for agent_id in agent_ids:
            self.append(workflow.now(), EventKind.AGENT_LOST, agent=agent_id, message="silent")
            self._count(names.AGENTS_LOST)

    def drained(self, agent_id: str) -> None:
        """Nothing more is placed on ``agent_id``."""
        self.append(workflow.now(), EventKind.AGENT_DRAINED, agent=agent_id)

    def requested(self, request: PlacementRequest) -> None:
        """A job asked for capacity: time each request until it is placed."""
        now = workflow.now()
        for item in request.all_items():
            self._asked.setdefault(item.key, (now, item.job_id))

    def released(self, request: ReleaseRequest) -> None:
        """A job released capacity or withdrew requests."""
        for key in request.keys:
            self._asked.pop(key, None)

    def placed(self, updates: dict[str, PlacementUpdate]) -> None:
        """One scheduling iteration's answers: a placement event per job that got any."""
        now = workflow.now()
        for requester, update in updates.items():
            job_id = requester
            for placed in update.placed:
                asked = self._asked.pop(placed.key, None)
                if asked is not None:
                    self._observe(names.PLACEMENT_LATENCY, now - asked[0])
                    job_id = asked[1]
            for rejected in update.rejected:
                self._asked.pop(rejected.key, None)
            if not update.placed:
                continue
            agents = len({placed.agent_id for placed in update.placed})
            message = f"{len(update.placed)} task(s) placed on {agents} agent(s)"
            if update.pending:
                message += f"; {len(update.pending)} wait: {update.pending[0].reason}"
            self.append(now, EventKind.PLACEMENT, job_id=job_id, message=message)

    def gauges(self, state: LedgerState, groups: list[CapacityGroupView]) -> None:
        """Agents by state, capacity and reservations by resource, pending tasks, groups."""
        by_state = {"active": 0, "draining": 0, "lost": 0}
        total = reserved = Resources.model_construct(cpu=0, memory=0, disk=0, network_mbps=0, gpu=0)
        for record in state.agents.values():
            if record.state in by_state:  # bounded: a state of a later release is not a label
                by_state[record.state] += 1
            if record.state != "lost":
                total = _add(total, record.info.resources)
        for reservation in state.reservations.values():
            reserved = _add(reserved, reservation.item.resources)
        for agent_state, count in by_state.items():
            self._gauge(names.AGENTS, count, state=agent_state)
        for name, resources in ((names.AGENT_CAPACITY, total), (names.AGENT_RESERVED, reserved)):
            for resource, value in _by_resource(resources).items():
                self._gauge(name, value, resource=resource)
        held = sum(1 for request in state.pending.values() if request.held_by_group)
        self._gauge(names.PENDING_TASKS, len(state.pending) - held, reason="capacity")
        self._gauge(names.PENDING_TASKS, held, reason="capacity_group")
        self._group_gauges(groups)

    def _group_gauges(self, groups: list[CapacityGroupView]) -> None:
        """Each capacity group's usage and guarantee, by resource."""
        for view in groups:
            group, guarantee = view.group.name, view.group.guarantee
            usage = {"cpu_millicores": view.used_cpu * 1000, "memory_mib": view.used_memory}
            promised = {
                "cpu_millicores": guarantee.cpu * 1000 if guarantee else 0.0,
                "memory_mib": guarantee.memory if guarantee else 0,
            }
            pairs = (
                (names.CAPACITY_GROUP_USAGE, usage),
                (names.CAPACITY_GROUP_GUARANTEE, promised),
            )
            for name, values in pairs:
                for resource, value in values.items():
                    self._gauge(name, value, capacity_group=group, resource=resource)


def _add(a: Resources, b: Resources) -> Resources:
    return Resources.model_construct(
        cpu=a.cpu + b.cpu,
        memory=a.memory + b.memory,
        disk=a.disk + b.disk,
        network_mbps=a.network_mbps + b.network_mbps,
        gpu=a.gpu + b.gpu,
    )


def _by_resource(r: Resources) -> dict[str, float]:
    return {
        "cpu_millicores": r.cpu * 1000,
        "memory_mib": r.memory,
        "disk_mib": r.disk,
        "gpu": r.gpu,
        "network_mbps": r.network_mbps,
    }
