"""Small typed messages between workflows, activities and the scheduler.

Kept free of I/O imports so workflow code can import them inside the sandbox.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from titus_flow.lifecycle import FinishReason
from titus_flow.spec import (
    BatchJob,
    Capacity,
    Constraints,
    Container,
    HealthCheck,
    Resources,
    ServiceJob,
)
from titus_flow.views import TaskView


class Message(BaseModel):
    """Base of every message: unknown fields are a bug, not data."""

    model_config = ConfigDict(extra="forbid")


def agent_task_queue(agent_id: str) -> str:
    """The task queue an agent serves."""
    return f"titus-agent-{agent_id}"


# --- job workflows -----------------------------------------------------------


class BatchJobInput(Message):
    """Start a batch job: the validated spec and when it was submitted."""

    job: BatchJob
    submitted_at: datetime
    # A large job runs as partitions (child workflows); each gets the root job's
    # id and its slice of task indices. None: this workflow is the whole job.
    job_id: str | None = None
    first_index: int = 0
    count: int | None = None


class ServiceTaskRecord(Message):
    """A live service task, as carried across continue-as-new."""

    view: TaskView
    task_queue: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    started_at: datetime | None = None
    was_healthy: bool = False  # passed its health check at least once


class ServiceJobInput(Message):
    """Start (or continue) a service job."""

    job: ServiceJob
    submitted_at: datetime
    revision: int = 1
    previous: ServiceJob | None = None  # the revision an update rolls back to
    previous_revision: int | None = None
    capacity: Capacity | None = None  # after scaling; None: the spec's
    tasks: list[ServiceTaskRecord] = Field(default_factory=list)
    finished: list[TaskView] = Field(default_factory=list)
    next_index: int = 0
    crash_failures: int = 0
    update: str = ""
    # Continue as new past this many history events (tests lower it).
    history_limit: int = 10_000


class ScaleRequest(Message):
    """Change a service job's capacity; unset fields keep their value."""

    desired: int | None = Field(default=None, ge=0)
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class KillTaskRequest(Message):
    """Kill one task of a service job."""

    task_id: str
    shrink: bool = False  # lower desired by one instead of replacing the task
    force: bool = False  # ignore the disruption budget


# --- agent activities -------------------------------------------------------


class LaunchInput(Message):
    """Start attempt ``attempt`` of task ``task_id`` on the agent."""

    job_id: str
    task_id: str
    task_index: int
    attempt: int
    container: Container
    resources: Resources
    ports: dict[str, int] = Field(default_factory=dict)


class LaunchResult(Message):
    """The container runs (or already ran: a retried launch adopts it)."""

    agent_id: str
    started_at: datetime


class SuperviseInput(Message):
    """Watch a launched attempt until it exits.

    The agent enforces the runtime limit and, for service tasks, the health check.
    """

    task_id: str
    attempt: int
    runtime_limit_seconds: float | None = None
    started_at: datetime
    health_check: HealthCheck | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    workflow_id: str | None = None  # where health changes are signalled


class TaskHealth(Message):
    """A task's health changed (sent by the agent as a ``task_health`` signal)."""

    task_id: str
    attempt: int
    healthy: bool
    message: str = ""
    at: datetime


class AttemptExit(Message):
    """How an attempt's container ended, with the tail of its output."""

    reason: FinishReason
    exit_code: int | None = None
    finished_at: datetime
    message: str = ""
    log_tail: list[str] = Field(default_factory=list)
    output: JsonValue = None  # the task's JSON result, if it wrote one
    became_healthy: bool = False  # passed its health check at least once


class LogsInput(Message):
    """Read the saved output of one attempt from ``offset`` on."""

    task_id: str
    attempt: int
    offset: int = 0
    limit: int = 1 << 20


class LogsChunk(Message):
    """Part of an attempt's output; ``complete`` once the attempt has ended."""

    data: str
    next_offset: int
    complete: bool


# --- scheduler ---------------------------------------------------------------


class AgentInfo(Message):
    """What an agent declares when it registers."""

    agent_id: str
    task_queue: str
    resources: Resources
    attributes: dict[str, str] = Field(default_factory=dict)
    port_range: tuple[int, int] = (20000, 29999)


class PlacementItem(Message):
    """One task attempt that needs capacity."""

    key: str  # task id; one reservation per task at a time
    job_id: str
    resources: Resources
    constraints: Constraints = Field(default_factory=Constraints)
    capacity_group: str = "default"
    ports: list[str] = Field(default_factory=list)


class PlacementRequest(Message):
    """A batch of items from one job workflow, placed in the next iteration."""

    requester: str  # workflow id the answer is signalled to
    items: list[PlacementItem]


class ReleaseRequest(Message):
    """Give back the reservations (or withdraw the pending requests) of ``keys``."""

    requester: str
    keys: list[str]


class Placed(Message):
    """Where an item was placed."""

    key: str
    agent_id: str
    task_queue: str
    ports: dict[str, int] = Field(default_factory=dict)


class Unplaced(Message):
    """An item not placed: waiting with a reason, or rejected for good."""

    key: str
    reason: str


class PlacementUpdate(Message):
    """The scheduler's answer to one requester for one iteration."""

    placed: list[Placed] = Field(default_factory=list)
    pending: list[Unplaced] = Field(default_factory=list)
    rejected: list[Unplaced] = Field(default_factory=list)


class AgentView(Message):
    """An agent as the ledger sees it."""

    agent_id: str
    task_queue: str
    state: str
    attributes: dict[str, str]
    total: Resources
    reserved_cpu: float
    reserved_memory: int
    tasks: list[str]
