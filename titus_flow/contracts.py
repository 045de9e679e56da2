"""Small typed messages between workflows, activities and the scheduler.

Kept free of I/O imports so workflow code can import them inside the sandbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from titus_flow.lifecycle import FinishReason, RolloutPhase, TaskState
from titus_flow.spec import (
    BatchJob,
    Capacity,
    CapacityGroup,
    Constraints,
    Container,
    HealthCheck,
    Resources,
    ServiceJob,
)
from titus_flow.spec.constraints import placement_constraints
from titus_flow.views import AttemptView, CarriedTasks, JobView, Row, TaskView, _int, _list


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
    # A run that continued as new: its tasks as the previous run left them.
    carried: CarriedTasks | None = None
    # Continue as new past this many history events or bytes, whatever the
    # server suggests (tests lower them): Temporal warns at 10,240 events and 10 MB,
    # and results landing while a run hands over add to it (6.8 MB past a 4 MiB
    # start in a loaded CI run of 500 loud failures: hence 2 MiB).
    history_limit: int = 6_000
    history_bytes_limit: int = 2 * 1024 * 1024


class ServiceTaskRecord(Message):
    """A live service task, as carried across continue-as-new."""

    view: TaskView
    task_queue: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    started_at: datetime | None = None
    was_healthy: bool = False  # passed its health check at least once
    moving: bool = False  # its agent is draining: replace it, then stop it
    kill_held: bool = False  # a kill request waits for the disruption budget


SERVICE_ROW_FLAGS = ("was_healthy", "moving", "kill_held")
"""The boolean fields of a :class:`ServiceTaskRecord`, in the order of a carried shape's flags."""


class CarriedService(Message):
    """A service run's live tasks in compact form, carried across continue-as-new.

    About 30 bytes a task instead of ~620 for a :class:`ServiceTaskRecord`, so
    a service of 10,000 live tasks stays below Temporal's 512 KiB payload
    warning. What tasks share is written once: strings in ``texts``, and in
    ``shapes`` what a task is besides its index, agent, times and port numbers:
    ``[revision, state, healthy, message, task queue, attempt, attempt state,
    port names, flags]`` (strings as indexes into ``texts``; the task queue -2
    when it is the agent's own, :func:`agent_task_queue`; flags the bits of
    :data:`SERVICE_ROW_FLAGS`). A task is ``[shape, index, agent, launched,
    started, *ports]``: launched in milliseconds after the previous row's
    launch (the first: after ``base``), started after its launch (after
    ``base`` without one). A live service task has its one attempt at most,
    and no reason, output or log tail yet: the row holds all it has.
    """

    format: Literal["service-1"] = "service-1"
    base: datetime
    texts: list[str] = Field(default_factory=list)
    shapes: list[Row] = Field(default_factory=list)
    rows: list[Row] = Field(default_factory=list)

    @classmethod
    def of(cls, records: list[ServiceTaskRecord], base: datetime) -> CarriedService:
        """``records`` in compact form. Deterministic: workflows call it."""
        texts: dict[str, int] = {}
        shapes: dict[str, int] = {}
        shape_rows: list[Row] = []

        def text(value: str | None) -> int:
            return -1 if value is None else texts.setdefault(value, len(texts))

        def ms(when: datetime, since: datetime) -> int:
            return round((when - since).total_seconds() * 1000)

        rows: list[Row] = []
        previous = base
        for record in records:
            view = record.view
            attempt = view.attempts[-1] if view.attempts else None
            own = view.agent is not None and record.task_queue == agent_task_queue(view.agent)
            shape: Row = [
                view.revision,
                text(view.state.value),
                None if view.healthy is None else int(view.healthy),
                text(view.message),
                -2 if own else text(record.task_queue),
                view.attempt,
                None if attempt is None else text(attempt.state.value),
                [text(name) for name in record.ports],
                sum(1 << n for n, f in enumerate(SERVICE_ROW_FLAGS) if getattr(record, f)),
            ]
            key = repr(shape)
            if key not in shapes:
                shapes[key] = len(shape_rows)
                shape_rows.append(shape)
            launched: int | None = None
            if attempt is not None and attempt.launched_at is not None:
                launched = ms(attempt.launched_at, previous)
                previous = attempt.launched_at
            started = None
            if record.started_at is not None:
                since = base if launched is None else previous
                started = ms(record.started_at, since)
            rows.append(
                [
                    shapes[key],
                    view.index,
                    text(view.agent),
                    launched,
                    started,
                    *record.ports.values(),
                ]
            )
        return cls(base=base, texts=list(texts), shapes=shape_rows, rows=rows)

    def records(self, job_id: str) -> list[ServiceTaskRecord]:
        """The carried tasks as records again (task ids ``<job_id>-<index>``)."""
        texts = self.texts

        def text(n: JsonValue) -> str | None:
            return None if n == -1 else texts[_int(n)]

        out: list[ServiceTaskRecord] = []
        previous = self.base
        for shape_index, index, agent, launched, started, *port_numbers in self.rows:
            shape = self.shapes[_int(shape_index)]
            revision, state, healthy, message, queue, attempt, attempt_state, names, flags = shape
            agent_id = text(agent)
            ports = {
                str(text(name)): _int(port)
                for name, port in zip(_list(names), port_numbers, strict=True)
            }
            launched_at = None
            if launched is not None:
                launched_at = previous = previous + timedelta(milliseconds=_int(launched))
            started_at = None
            if started is not None:
                since = self.base if launched_at is None else launched_at
                started_at = since + timedelta(milliseconds=_int(started))
            attempts = []
            if attempt_state is not None:
                attempts.append(
                    AttemptView(
                        attempt=_int(attempt),
                        agent=agent_id,
                        state=TaskState(str(text(attempt_state))),
                        launched_at=launched_at,
                        started_at=started_at,
                    )
                )
            view = TaskView(
                id=f"{job_id}-{index}",
                index=_int(index),
                revision=None if revision is None else _int(revision),
                state=TaskState(str(text(state))),
                healthy=None if healthy is None else bool(healthy),
                message=text(message) or "",
                agent=agent_id,
                attempt=_int(attempt),
                attempts=attempts,
                ports=dict(ports),
            )
            bits = _int(flags)
            out.append(
                ServiceTaskRecord(
                    view=view,
                    task_queue=agent_task_queue(agent_id)
                    if queue == -2 and agent_id is not None
                    else text(queue),
                    ports=ports,
                    started_at=started_at,
                    **{f: bool(bits >> n & 1) for n, f in enumerate(SERVICE_ROW_FLAGS)},
                )
            )
        return out


class ServiceJobInput(Message):
    """Start (or continue) a service job."""

    job: ServiceJob
    submitted_at: datetime
    revision: int = 1
    latest_revision: int = 1  # revisions only go up, even after a rollback
    previous: ServiceJob | None = None  # the revision an update rolls back to
    previous_revision: int | None = None
    capacity: Capacity | None = None  # after scaling; None: the spec's
    tasks: list[ServiceTaskRecord] = Field(default_factory=list)  # the previous release's carry
    finished: list[TaskView] = Field(default_factory=list)  # the latest few, as bounded rows
    # Live tasks carried by this release (``tasks`` stays empty): compact rows.
    carried: CarriedService | None = None
    next_index: int = 0
    crash_failures: int = 0
    update: str = ""
    rollout: RolloutPhase = RolloutPhase.NONE
    canary: int | None = None  # a canary holds this many tasks on the new revision
    # Continue as new past this many history events (tests lower it).
    history_limit: int = 10_000


class ScaleRequest(Message):
    """Change a service job's capacity; unset fields keep their value."""

    desired: int | None = Field(default=None, ge=0)
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class CanaryRequest(Message):
    """Move ``tasks`` tasks of a service job to ``job``'s revision, then hold."""

    job: ServiceJob
    tasks: int = Field(default=1, ge=1)


class ServiceRolloutInput(Message):
    """A user workflow's request to a running service job (the ``service_rollout`` activity)."""

    job_id: str
    action: Literal["update", "canary", "promote", "rollback"]
    job: ServiceJob | None = None  # for update and canary
    canary: int | None = Field(default=None, ge=1)
    reason: str = ""  # for rollback


class ServiceWaitInput(Message):
    """Wait for a service job (the ``service_wait`` activity).

    ``healthy``: ``desired`` healthy tasks on ``revision`` (default: current).
    ``settled``: the latest update rolled out, rolled back, or its canary is healthy.
    Either also returns when the job ended or ``timeout_seconds`` passed.
    """

    job_id: str
    until: Literal["healthy", "settled"]
    revision: int | None = None
    timeout_seconds: float = 600.0


class CanaryCheckInput(Message):
    """What a user's canary check activity gets: the job with its canary healthy.

    Example::

        @activity.defn
        async def serves_ok(request: CanaryCheckInput) -> bool:
            canaries = [t for t in request.view.live_tasks() if t.revision == request.revision]
            return all(probe(t.ports["http"]) for t in canaries)
    """

    job_id: str
    revision: int  # the canary's revision; its tasks have ``revision`` equal to it
    view: JobView


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

    @classmethod
    def for_task(
        cls,
        job_id: str,
        task: TaskView,
        attempt: int,
        job: BatchJob | ServiceJob,
        ports: dict[str, int],
    ) -> LaunchInput:
        """Launch ``attempt`` of ``task`` as ``job`` describes it, on its placed ``ports``."""
        return cls(
            job_id=job_id,
            task_id=task.id,
            task_index=task.index,
            attempt=attempt,
            container=job.container,
            resources=job.resources,
            ports=ports,
        )


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


class StopInput(Message):
    """Stop and remove one attempt's container, keeping its output (a kill).

    Sent when a kill's cancellation never reached the agent that watched the
    attempt (it died meanwhile): the server does not retry a cancelled
    activity, so only this stop reaches the container the restarted agent runs.
    """

    task_id: str
    attempt: int
    message: str = "killed by request"


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


LOGS_PAGE_BYTES = 256 * 1024
"""Most output bytes one read returns: as JSON (escapes included) it stays under
Temporal's 2 MB payload limit."""

LOGS_MAX_WAIT_SECONDS = 10.0
"""Longest a read waits for new output (well inside the read's 30 s activity timeout)."""


class LogsInput(Message):
    """Read one attempt's output from byte ``offset`` on (while it runs, too).

    At most ``limit`` bytes (capped at :data:`LOGS_PAGE_BYTES`). With ``wait``,
    a read that finds nothing new waits up to that many seconds (capped at
    :data:`LOGS_MAX_WAIT_SECONDS`) for output or for the attempt to end, so a
    follower need not poll.
    """

    task_id: str
    attempt: int
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=LOGS_PAGE_BYTES, ge=1)
    wait: float = Field(default=0.0, ge=0)


class LogsChunk(Message):
    """Part of an attempt's output, bytes ``[offset, next_offset)``.

    ``complete`` once the attempt has ended and this chunk reaches the end of
    its output; ``more`` when more output was there already (read again at once).
    """

    data: str
    next_offset: int
    complete: bool
    more: bool = False
    attempt: int = 0


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
    # Agents to place it elsewhere than if any other fits (a retry after a
    # platform failure there): ranked last, never excluded.
    avoid_agents: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _without_empty_avoid(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Left out when empty: items read as before (by schedulers of the
        # previous release too), and groups of identical tasks stay one group.
        data: dict[str, object] = handler(self)
        if not self.avoid_agents:
            data.pop("avoid_agents", None)
        return data

    @classmethod
    def for_task(
        cls,
        task_id: str,
        job_id: str,
        job: BatchJob | ServiceJob,
        avoid_agents: list[str] | None = None,
    ) -> PlacementItem:
        """The capacity one task of ``job`` needs, with the job's placement rules."""
        return cls(
            key=task_id,
            job_id=job_id,
            resources=job.resources,
            # A host-network task needs an agent that allows it (docs/security.md).
            constraints=placement_constraints(job.constraints, job.container.network),
            capacity_group=job.capacity_group,
            ports=job.container.ports,
            avoid_agents=avoid_agents or [],
        )


CompactKey = int | str
"""A key as carried in compact messages: ``n`` stands for ``f"{job_id}-{n}"`` (a task
id of the item's job), a string for itself."""


def compact_key(key: str, job_id: str) -> CompactKey:
    """``key`` as :data:`CompactKey` (a task index where it is one)."""
    prefix, _, index = key.rpartition("-")
    if prefix == job_id and index.isdigit() and str(int(index)) == index:
        return int(index)
    return key


def full_key(key: CompactKey, job_id: str) -> str:
    """The key a :data:`CompactKey` stands for."""
    return f"{job_id}-{key}" if isinstance(key, int) else key


class ItemGroup(Message):
    """Items that differ only by key: one shared spec and compact keys.

    A 500-task partition asks for capacity in one group of ~3 KB instead of 500
    items of ~320 bytes each (issue 11: no signal grows with tasks past a bound).
    """

    spec: PlacementItem  # its key is unused ("")
    keys: list[CompactKey]

    @classmethod
    def of(cls, items: list[PlacementItem]) -> list[ItemGroup]:
        """``items`` grouped by everything but their key, in order of first appearance."""
        groups: dict[str, ItemGroup] = {}
        for item in items:
            spec = item.model_copy(update={"key": ""})
            group = groups.get(shape := spec.model_dump_json())
            if group is None:
                group = groups[shape] = cls(spec=spec, keys=[])
            group.keys.append(compact_key(item.key, item.job_id))
        return list(groups.values())

    def items(self) -> list[PlacementItem]:
        """The items of the group."""
        job_id = self.spec.job_id
        return [self.spec.model_copy(update={"key": full_key(k, job_id)}) for k in self.keys]


class PlacementRequest(Message):
    """A batch of items from one job workflow, placed in the next iteration.

    Jobs send ``groups`` (compact); ``items`` is what jobs of earlier releases send.
    """

    requester: str  # workflow id the answer is signalled to
    items: list[PlacementItem] = Field(default_factory=list)
    groups: list[ItemGroup] = Field(default_factory=list)

    def all_items(self) -> list[PlacementItem]:
        """Every item asked for, in order."""
        return [*self.items, *(item for group in self.groups for item in group.items())]


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
    # Keys of placed tasks whose agent is draining: a service job moves them.
    evict: list[str] = Field(default_factory=list)


class AgentView(Message):
    """An agent as the ledger sees it.

    ``task_count`` tasks hold capacity on it. Their keys are paged by the
    scheduler's ``agent_tasks`` query (issue 11: one view per agent must not
    grow with tasks); ``tasks`` lists them only in answers of schedulers of
    earlier releases, whose views are counted from it.
    """

    agent_id: str
    task_queue: str
    state: str
    attributes: dict[str, str]
    total: Resources
    reserved_cpu: float
    reserved_memory: int
    tasks: list[str] = Field(default_factory=list)
    task_count: int = 0

    @model_validator(mode="before")
    @classmethod
    def _count_listed_tasks(cls, data: Any) -> Any:
        if isinstance(data, dict) and "task_count" not in data:
            return {**data, "task_count": len(data.get("tasks") or ())}
        return data


class PutCapacityGroup(Message):
    """Create or replace a capacity group; ``expect`` says whether it may already exist."""

    group: CapacityGroup
    expect: Literal["any", "new", "existing"] = "any"


class CapacityGroupView(Message):
    """A capacity group and what its jobs hold and wait for now."""

    group: CapacityGroup
    defined: bool = True  # False: the implicit default group (flex, unlimited)
    used_cpu: float = 0.0  # cores reserved by its tasks
    used_memory: int = 0  # MiB
    tasks: int = 0  # tasks holding capacity
    pending: int = 0  # tasks waiting for capacity
