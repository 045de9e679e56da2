"""What a job looks like from outside: the describe/list views and the job result."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from titus_flow.lifecycle import FinishReason, JobState, RolloutPhase, TaskState


class View(BaseModel):
    """Base of views: plain data, JSON-ready."""

    model_config = ConfigDict(extra="forbid")


class AttemptView(View):
    """One attempt of one task."""

    attempt: int
    agent: str | None = None
    state: TaskState = TaskState.LAUNCHED
    reason: FinishReason | None = None
    exit_code: int | None = None
    message: str = ""
    launched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    counts_against_retries: bool = True


class TaskView(View):
    """One task of a job, with all its attempts."""

    id: str
    index: int
    state: TaskState = TaskState.ACCEPTED
    reason: FinishReason | None = None
    message: str = ""
    pending_reason: str | None = None
    attempt: int = 0
    agent: str | None = None
    attempts: list[AttemptView] = Field(default_factory=list)
    log_tail: list[str] = Field(default_factory=list)
    output: JsonValue = None  # JSON the last attempt wrote to $TITUS_OUTPUT_PATH
    revision: int | None = None  # service tasks: the job revision the task runs
    healthy: bool | None = None  # service tasks: passes its health check
    ports: dict[str, int] = Field(default_factory=dict)  # named port -> host port


class ServiceStatus(View):
    """What a service job is holding to, and how close it is."""

    desired: int
    min: int
    max: int
    revision: int
    healthy: int = 0
    update: str = ""  # rolling update progress, or how the last one ended
    rollout: RolloutPhase = RolloutPhase.NONE
    canary: int | None = None  # while a canary holds: tasks on the new revision
    waiting: list[str] = Field(default_factory=list)  # requests held by the budget


class JobView(View):
    """A job as ``titus-flow job describe`` shows it."""

    id: str
    name: str
    type: str
    owner: str = ""
    state: JobState = JobState.ACCEPTED
    message: str = ""
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    tasks: list[TaskView] = Field(default_factory=list)
    # Workflow ids of the partitions of a large job; their views hold the tasks.
    partitions: list[str] = Field(default_factory=list)
    service: ServiceStatus | None = None

    def counts(self) -> dict[str, int]:
        """Number of tasks per state (Finished split by reason), for progress displays."""
        counts: dict[str, int] = {}
        for task in self.tasks:
            key = task.state.value
            if task.state is TaskState.FINISHED and task.reason is not None:
                key = f"Finished/{task.reason.value}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def live_tasks(self) -> list[TaskView]:
        """The tasks that have not finished."""
        return [t for t in self.tasks if t.state is not TaskState.FINISHED]

    def healthy_tasks(self, revision: int | None = None) -> int:
        """Live healthy tasks of a service job (only those on ``revision`` if given)."""
        return sum(
            1
            for t in self.live_tasks()
            if t.healthy and (revision is None or t.revision == revision)
        )

    @property
    def canary_ready(self) -> bool:
        """Whether a service job's canary holds with all its tasks healthy."""
        status = self.service
        return (
            status is not None
            and status.rollout is RolloutPhase.CANARY
            and status.canary is not None
            and self.healthy_tasks(status.revision) >= status.canary
        )


class JobProgress(View):
    """A cheap summary of a running job (no per-task detail)."""

    id: str
    state: JobState
    counts: dict[str, int]
    pending_reasons: list[str] = Field(default_factory=list)
