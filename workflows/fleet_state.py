"""What the fleet workflow is started with, carries across continue-as-new, and answers.

:class:`~titus_flow.workflows.fleet.FleetWorkflow` takes a :class:`FleetInput`
(its spec and :class:`FleetState`), changes its bounds by :class:`Bounds` and
answers ``status`` with a :class:`FleetStatus`. Plain messages, so the CLI and
tests read them without the workflow.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts import AgentView, Message
    from titus_flow.fleet.messages import Instance
    from titus_flow.fleet.spec import FleetSpec


class Tracked(Message):
    """An instance the fleet launched or adopted, and whether it is on its way out."""

    instance: Instance
    leaving: str | None = None  # "drain" (waiting for tasks to end) | "terminate"
    leaving_since: datetime | None = None


class FleetState(Message):
    """Everything the fleet carries across continue-as-new."""

    instances: dict[str, Tracked] = Field(default_factory=dict)
    next_seq: int = 1
    idle_since: dict[str, datetime] = Field(default_factory=dict)
    agents: dict[str, AgentView] = Field(default_factory=dict)  # fleet agents, last seen
    unfit: dict[str, str] = Field(default_factory=dict)
    deleting: bool = False
    events: list[str] = Field(default_factory=list)


class FleetInput(Message):
    """Start (or continue) a fleet.

    ``scheduler_signals``: drain agents through the scheduler (``drain_agent``)
    before terminating their instances, and ``remove_agent`` once they are gone.
    When false, idle instances are terminated without a drain (a task placed on
    one in the meantime is lost and rescheduled) and agents of terminated
    instances go lost after the scheduler's silence timeout.
    """

    spec: FleetSpec
    state: FleetState = Field(default_factory=FleetState)
    scheduler_signals: bool = True


class Bounds(Message):
    """New ``min`` and ``max`` for :meth:`FleetWorkflow.scale`."""

    min: int
    max: int


class InstanceStatus(Message):
    """One instance in ``fleet status``."""

    instance_id: str
    state: str
    instance_type: str
    zone: str
    market: str
    private_ip: str | None
    agent_id: str | None
    tasks: list[str]  # keys, from schedulers of earlier releases only: see task_count
    leaving: str | None
    task_count: int = 0


class FleetStatus(Message):
    """Answer of the ``status`` query."""

    name: str
    min: int
    max: int
    deleting: bool
    instances: list[InstanceStatus]
    unfit: dict[str, str]
    events: list[str]

    @classmethod
    def of(cls, spec: FleetSpec, state: FleetState) -> FleetStatus:
        """The status of the fleet of ``spec`` in ``state``."""
        return cls(
            name=spec.name,
            min=spec.min,
            max=spec.max,
            deleting=state.deleting,
            instances=[
                InstanceStatus(
                    instance_id=iid,
                    state=t.instance.state,
                    instance_type=t.instance.instance_type,
                    zone=t.instance.zone,
                    market=t.instance.market,
                    private_ip=t.instance.private_ip,
                    agent_id=iid if iid in state.agents else None,
                    tasks=state.agents[iid].tasks if iid in state.agents else [],
                    leaving=t.leaving,
                    task_count=state.agents[iid].task_count if iid in state.agents else 0,
                )
                for iid, t in sorted(state.instances.items())
            ],
            unfit=dict(state.unfit),
            events=list(state.events),
        )
