"""A job as seen from outside: describe views, a service's status, progress."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from titus_flow.lifecycle import JobState, RolloutPhase, TaskState
from titus_flow.spec import SecurityProfile
from titus_flow.views.base import View
from titus_flow.views.tasks import VIEW_TASK_BYTES, TaskView, bounded_tasks


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
    # Live and healthy tasks per revision: what a bounded view (a large service's,
    # which holds only some task rows) counts with.
    live_by_revision: dict[int, int] = Field(default_factory=dict)
    healthy_by_revision: dict[int, int] = Field(default_factory=dict)


class PartitionSummary(View):
    """One partition of a large job, as its root keeps it: counts, not tasks."""

    id: str
    first_index: int
    count: int
    state: JobState = JobState.ACCEPTED
    counts: dict[str, int] = Field(default_factory=dict)  # once ended
    message: str = ""


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
    # A large job's view holds only some of its tasks (failed first): then these
    # say how many it has and how many are in each state.
    total_tasks: int | None = None
    task_counts: dict[str, int] = Field(default_factory=dict)
    partition_views: list[PartitionSummary] = Field(default_factory=list)
    # The job's IAM role and security groups (issue #16), passed to its agents.
    security: SecurityProfile | None = None

    def counts(self) -> dict[str, int]:
        """Number of tasks per state (Finished split by reason), for progress displays."""
        if self.total_tasks is not None:
            return dict(self.task_counts)
        counts: dict[str, int] = {}
        for task in self.tasks:
            counts[task.count_key] = counts.get(task.count_key, 0) + 1
        return counts

    def bounded(self, budget: int = VIEW_TASK_BYTES) -> JobView:
        """A copy of the view with its task rows within ``budget`` bytes, failed first.

        A view whose rows all fit keeps them all (in index order) and looks as
        before; else it keeps the first rows and says how many tasks there are
        (``total_tasks``) and their counts by state (``task_counts``).
        """
        kept = bounded_tasks(self.tasks, budget)
        if self.total_tasks is None and len(kept) == len(self.tasks):
            return self.model_copy(update={"tasks": sorted(kept, key=lambda t: t.index)})
        total = len(self.tasks) if self.total_tasks is None else self.total_tasks
        return self.model_copy(
            update={"tasks": kept, "total_tasks": total, "task_counts": self.counts()}
        )

    def live_tasks(self) -> list[TaskView]:
        """The tasks that have not finished."""
        return [t for t in self.tasks if t.state is not TaskState.FINISHED]

    def _service_counts(self) -> ServiceStatus | None:
        """The service status whose counts stand for rows a bounded view left out."""
        status = self.service
        if self.total_tasks is None or status is None or not status.live_by_revision:
            return None
        return status

    def healthy_tasks(self, revision: int | None = None) -> int:
        """Live healthy tasks of a service job (only those on ``revision`` if given)."""
        if (status := self._service_counts()) is not None:
            by = status.healthy_by_revision
            return sum(by.values()) if revision is None else by.get(revision, 0)
        return sum(
            1
            for t in self.live_tasks()
            if t.healthy and (revision is None or t.revision == revision)
        )

    def runs_other_revisions(self, revision: int) -> bool:
        """Whether a service job still runs tasks of a revision other than ``revision``."""
        if (status := self._service_counts()) is not None:
            return any(n for r, n in status.live_by_revision.items() if r != revision)
        return any(t.revision != revision for t in self.live_tasks())

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
