"""Messages between the fleet workflow, its activities and the scheduler.

Plain pydantic, no I/O imports, so the workflow sandbox can load them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from titus_flow.contracts import AgentView, Message
from titus_flow.fleet.spec import FleetSpec
from titus_flow.spec import Constraints, Resources

Market = Literal["on-demand", "spot"]


class Instance(Message):
    """An EC2 instance of the fleet as ``describe_instances`` reports it."""

    instance_id: str
    instance_type: str
    zone: str
    subnet_id: str | None = None
    state: str  # pending | running | shutting-down | terminated | stopping | stopped
    private_ip: str | None = None
    launched_at: datetime
    launch_seq: int | None = None
    market: Market = "on-demand"


class LaunchOption(Message):
    """One (instance type, subnet) to try; a launch tries its options in order."""

    instance_type: str
    subnet_id: str
    zone: str


class LaunchInput(Message):
    """Launch up to ``count`` instances as launch number ``seq`` of the fleet."""

    spec: FleetSpec
    seq: int
    count: int = Field(ge=1)
    market: Market = "on-demand"
    options: list[LaunchOption] = Field(min_length=1)
    user_data: str = ""


class LaunchOutput(Message):
    """What a launch made (or found already made by an earlier try)."""

    instances: list[Instance]
    adopted: bool = False  # True: an earlier attempt had launched them already
    tried: list[str] = Field(default_factory=list)  # "type@zone: error" for each fallback


class FleetRef(Message):
    """Which fleet (and where its instances live) an activity works on."""

    spec: FleetSpec


class TerminateInput(Message):
    """Terminate these instances of the fleet."""

    spec: FleetSpec
    instance_ids: list[str]


# --- what the fleet tells the scheduler ---------------------------------------------------


class FleetShape(Message):
    """An agent a fleet can add: one instance type in one zone, as its agent would register."""

    instance_type: str
    zone: str
    resources: Resources  # what the agent offers (the type's size minus the OS reserve)
    attributes: dict[str, str]  # the agent's attributes, zone and instance type included


class FleetCapacity(Message):
    """What a fleet could add to the cluster (scheduler signal ``fleet_capacity``).

    The scheduler keeps it so that a task no current agent holds, but one of the
    fleet's instance types would, waits for the fleet instead of failing, and so
    that pending tasks can say when the fleet is at its ``max``. No ``shapes``:
    the fleet is gone (deleted), forget it.
    """

    fleet: str
    workflow_id: str
    shapes: list[FleetShape] = Field(default_factory=list)  # cheapest type first
    max: int = 0
    at_max: bool = False


# --- what the fleet asks of the scheduler -----------------------------------------------


class PendingDemand(Message):
    """``count`` tasks of one job waiting for capacity alike: what each needs, where it may go.

    ``key`` is the first of them. Schedulers before issue 11 send one per task
    (no ``count``): a demand that grows with tasks, read as groups of one.
    """

    key: str
    job_id: str
    resources: Resources
    constraints: Constraints = Field(default_factory=Constraints)
    reason: str | None = None
    count: int = Field(default=1, ge=1)


class DemandQuery(Message):
    """Argument of query ``demand``: ``agent_ids`` limits its agents to those (a fleet's own).

    None: every agent (the answer then grows with the cluster's agents).
    """

    agent_ids: list[str] | None = None


class ObserveInput(Message):
    """Input of activity ``fleet_observe_own``: the scheduler's demand and these agents."""

    scheduler_id: str
    agent_ids: list[str]


class ClusterDemand(Message):
    """The scheduler's pending requests and its agents (answer of query ``demand``).

    ``pending`` is grouped (:class:`PendingDemand`): its size follows the jobs and
    shapes waiting, not their tasks.
    """

    pending: list[PendingDemand] = Field(default_factory=list)
    agents: list[AgentView] = Field(default_factory=list)
    # What the scheduler knows of each fleet; None: a scheduler that does not track fleets.
    fleets: list[FleetCapacity] | None = None
