"""What starts a job workflow, and the requests users send to running jobs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from titus_flow.cluster import PARTITION_SIZE
from titus_flow.contracts.autoscaling import AutoscalingCarry
from titus_flow.contracts.base import Message
from titus_flow.contracts.load_balancers import LoadBalancersView
from titus_flow.contracts.service_carry import CarriedService, ServiceTaskRecord
from titus_flow.events.model import EventTail
from titus_flow.lifecycle import RolloutPhase
from titus_flow.spec import BatchJob, Capacity, ServiceJob
from titus_flow.views import CarriedTasks, JobView, TaskView


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
    events: EventTail | None = None  # the end of the previous run's event journal
    # Continue as new past this many history events or bytes, whatever the
    # server suggests (tests lower them): Temporal warns at 10,240 events and 10 MB,
    # and results landing while a run hands over add to it (6.8 MB past a 4 MiB
    # start in a loaded CI run of 500 loud failures: hence 2 MiB).
    history_limit: int = 6_000
    history_bytes_limit: int = 2 * 1024 * 1024
    # A job of more tasks than this runs as partitions of at most this many
    # (the client's ``partition_size`` setting); a partition gets its root's.
    # Inputs of earlier releases read as the constant they used.
    partition_size: int = Field(default=PARTITION_SIZE, ge=1)
    # Job ids of the jobs this one depends on with mode n_to_n, by name (the DAG
    # workflow sets them; see titus_flow.workflows.batch_gates).
    upstream: dict[str, str] = Field(default_factory=dict)


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
    events: EventTail | None = None  # the end of the previous run's event journal
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
    # The autoscaling state (metric buffer, latest decisions, pause) of the previous run.
    autoscaling: AutoscalingCarry | None = None
    # The job's load balancer targets as the previous run left them.
    load_balancers: LoadBalancersView | None = None
    # How often the targets of AWS groups are compared with AWS: the spec's
    # load_balancer_check_interval at submit (tests set it directly).
    targets_check: timedelta = timedelta(seconds=60)

    @classmethod
    def submitted(cls, job: ServiceJob, at: datetime) -> ServiceJobInput:
        """The first run's input of ``job`` submitted ``at``, with its spec's settings."""
        return cls(job=job, submitted_at=at, targets_check=job.load_balancer_check_interval)


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


class AutoscalingPauseInput(Message):
    """Pause or resume a service job's autoscaling (the ``service_autoscaling_paused`` activity)."""

    job_id: str
    paused: bool


class PutMetricInput(Message):
    """One value of a job's metric, now (the ``service_put_metric`` activity)."""

    job_id: str
    name: str  # custom:<name>, a bare <name> (the same) or a built-in metric
    value: float


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
