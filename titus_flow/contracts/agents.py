"""The agent activities' messages: launch, supervise, stop, health changes, logs."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, JsonValue

from titus_flow.contracts.base import Message
from titus_flow.lifecycle import FinishReason
from titus_flow.spec import (
    BatchJob,
    Container,
    HealthCheck,
    Resources,
    SecurityProfile,
    ServiceJob,
    Volume,
)
from titus_flow.views import LogRef, TaskView


class LaunchInput(Message):
    """Start attempt ``attempt`` of task ``task_id`` on the agent."""

    job_id: str
    task_id: str
    task_index: int
    attempt: int
    container: Container
    resources: Resources
    ports: dict[str, int] = Field(default_factory=dict)
    volumes: list[Volume] = Field(default_factory=list)  # the job's; container.mounts use them
    security: SecurityProfile = Field(default_factory=SecurityProfile)

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
            volumes=job.volumes,
            security=job.security,
        )


class LaunchResult(Message):
    """The container runs (or already ran: a retried launch adopts it)."""

    agent_id: str
    started_at: datetime


CPU_METRIC = "cpu_utilization"
MIN_CPU_REPORT_SECONDS = 5.0
"""Shortest period of an agent's CPU reports: each is a signal in the job's history."""


class CpuReporting(Message):
    """What an agent needs to report a service task's CPU use to its job.

    Set on :class:`SuperviseInput` for a job with a policy on ``cpu_utilization``:
    the agent then sends the job one report per ``period_seconds`` for all of
    the job's tasks it runs (see :mod:`titus_flow.activities.agent_usage`).
    """

    period_seconds: float = Field(gt=0)
    cpu: float = Field(gt=0)  # the task's CPU request in cores: what 100 % stands for

    @classmethod
    def for_job(cls, job: ServiceJob) -> CpuReporting | None:
        """How ``job``'s tasks report: every max(interval / 2, 5 s); None if no policy asks."""
        scaling = job.autoscaling
        if scaling is None or all(policy.metric != CPU_METRIC for policy in scaling.policies):
            return None
        # Half the evaluation interval: every evaluation sees a fresh sample.
        half = scaling.interval.total_seconds() / 2
        return cls(period_seconds=max(half, MIN_CPU_REPORT_SECONDS), cpu=job.resources.cpu)


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
    workflow_id: str | None = None  # where health changes (and CPU reports) are signalled
    cpu_report: CpuReporting | None = None  # set when the job scales on cpu_utilization


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
    log: LogRef | None = None  # where the agent uploads its log (agents with a log bucket)


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
