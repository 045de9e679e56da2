"""What a job looks like from outside: the describe/list views and the job result."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from titus_flow.lifecycle import FinishReason, JobState, RolloutPhase, TaskState


class View(BaseModel):
    """Base of views: plain data, JSON-ready.

    Unknown fields are ignored, not refused: a CLI or client of this release
    reads the views of a newer control plane (which adds fields) as
    Kubernetes clients do, rather than failing to describe every job.
    """

    model_config = ConfigDict(extra="ignore")


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


ROW_ATTEMPTS = 5
"""Attempts a bounded task row keeps (the latest; ``attempts_omitted`` counts the rest)."""
ROW_LOG_LINES = 20
"""Log-tail lines a bounded task row keeps (the last), each cut at :data:`ROW_TEXT_CHARS`."""
ROW_TEXT_CHARS = 500
"""Longest message or log line in a bounded task row."""
VIEW_TASK_BYTES = 256 * 1024
"""Most JSON bytes of task rows one view or page carries (Temporal warns past 512 KiB)."""
PAGE_MAX_TASKS = 500
"""Most tasks one page of tasks holds."""


def _cut(text: str) -> str:
    return text if len(text) <= ROW_TEXT_CHARS else text[: ROW_TEXT_CHARS - 1] + "…"


class TaskView(View):
    """One task of a job, with its attempts (a bounded row keeps the latest)."""

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
    attempts_omitted: int = 0  # earlier attempts a bounded row leaves out

    @property
    def count_key(self) -> str:
        """The task's state as progress counts it: the state, Finished split by reason."""
        if self.state is TaskState.FINISHED and self.reason is not None:
            return f"Finished/{self.reason.value}"
        return self.state.value

    @property
    def failed(self) -> bool:
        """Whether the task finished other than normally (failed, killed, lost, ...)."""
        return self.state is TaskState.FINISHED and self.reason is not FinishReason.NORMAL

    def bounded(self) -> TaskView:
        """A copy of the row, bounded: the latest attempts, short texts, a short log tail.

        The output stays whole (the agent caps it); a view drops rows, not
        outputs, when rows pass its budget (:func:`bounded_tasks`).
        """
        attempts = [
            a.model_copy(update={"message": _cut(a.message)}) for a in self.attempts[-ROW_ATTEMPTS:]
        ]
        return self.model_copy(
            update={
                "message": _cut(self.message),
                "attempts": attempts,
                "attempts_omitted": self.attempts_omitted + len(self.attempts) - len(attempts),
                "log_tail": [_cut(line) for line in self.log_tail[-ROW_LOG_LINES:]],
            }
        )


def failed_first(task: TaskView) -> tuple[int, int]:
    """Sort key: tasks that finished other than normally, then live ones, then by index.

    Live tasks come before those that finished normally so that a bounded view
    of a running job still names the tasks it runs.
    """
    rank = 0 if task.failed else 1 if task.state is not TaskState.FINISHED else 2
    return (rank, task.index)


def bounded_tasks(tasks: list[TaskView], budget: int = VIEW_TASK_BYTES) -> list[TaskView]:
    """Bounded rows of ``tasks``, failed first, while their JSON fits in ``budget`` bytes.

    The first row is always kept (so a failed job's first failure is never
    left out). Deterministic: workflows call it.
    """
    kept: list[TaskView] = []
    used = 0
    for task in sorted(tasks, key=failed_first):
        row = task.bounded()
        used += len(row.model_dump_json())
        if kept and used > budget:
            break
        kept.append(row)
    return kept


TRUNCATED = "truncated; see task logs"
"""What stands for an output or log tail a carried row could not keep (:class:`CarriedTasks`)."""
CARRIED_BYTES = 1024 * 1024
"""Most JSON bytes :class:`CarriedTasks` may take before it gives up every output and log tail."""


class TaskCarry(View):
    """What a live batch task needs besides its row to go on in another workflow run."""

    user_failures: int = 0  # attempts that used the retry budget
    system_failures: int = 0  # attempts the platform lost (lost, system_error)
    not_before: datetime | None = None  # in retry backoff until then
    avoid_agent: str | None = None  # the agent of its last platform failure
    task_queue: str | None = None  # while Started: the queue of the agent it runs on
    started_at: datetime | None = None  # while Started: when its container started
    kill: FinishReason | None = None  # a kill requested, not done yet


Row = list[JsonValue]


class CarriedTasks(View):
    """A batch workflow's tasks in compact form, carried across continue-as-new.

    A task is a short list, not a :class:`TaskView`: repeated strings (agent
    ids, task queues, messages) are written once in ``texts`` and times are
    milliseconds after ``base``. A row keeps what a bounded row shows (the
    latest :data:`ROW_ATTEMPTS` attempts, messages cut at
    :data:`ROW_TEXT_CHARS`), so describe and task pages read the same after
    the run continued. Outputs and log tails stay whole for the rows a final
    view keeps (failed first, within :data:`VIEW_TASK_BYTES`); the others
    carry :data:`TRUNCATED` instead, so 500 tasks of 64 KiB outputs cannot pass
    Temporal's payload limits.

    A row is ``[index, state, reason, message, attempt, agent, attempts
    omitted, attempts, output, log tail, carry]``; an attempt ``[attempt,
    agent, state, reason, exit code, message, launched, started, finished,
    counts against retries]``; a carry (live tasks only) the fields of
    :class:`TaskCarry` in order.
    """

    format: Literal["tasks-1"] = "tasks-1"
    base: datetime
    state: JobState = JobState.ACCEPTED
    killed: bool = False  # the job's kill was requested
    texts: list[str] = Field(default_factory=list)
    rows: list[Row] = Field(default_factory=list)
    releases: list[str] = Field(default_factory=list)  # capacity to give back, not sent yet

    @classmethod
    def of(
        cls,
        tasks: list[TaskView],
        carries: dict[str, TaskCarry],
        base: datetime,
        *,
        state: JobState = JobState.ACCEPTED,
        killed: bool = False,
        releases: list[str] | None = None,
        budget: int = VIEW_TASK_BYTES,
    ) -> CarriedTasks:
        """``tasks`` (in index order) and the ``carries`` of the live ones, by task id.

        Deterministic: workflows call it.
        """
        # A final view keeps whole rows failed first (bounded_tasks). Ranked the
        # same, with live tasks last, a finished row only gains rows ahead of
        # it later: so the rows kept whole here include every row a final view
        # can show whole.
        finished = sorted((t for t in tasks if t.state is TaskState.FINISHED), key=failed_first)
        live = [t for t in tasks if t.state is not TaskState.FINISHED]
        whole: set[str] = set()
        used = 0
        for task in [*finished, *live]:
            used += len(task.bounded().model_dump_json())
            if whole and used > budget:
                break
            whole.add(task.id)
        carried = cls._encode(tasks, carries, base, state, killed, whole)
        if len(carried.model_dump_json()) > CARRIED_BYTES:
            carried = cls._encode(tasks, carries, base, state, killed, set())
        carried.releases = list(releases or [])
        return carried

    @classmethod
    def _encode(
        cls,
        tasks: list[TaskView],
        carries: dict[str, TaskCarry],
        base: datetime,
        state: JobState,
        killed: bool,
        whole: set[str],
    ) -> CarriedTasks:
        texts: dict[str, int] = {}

        def text(value: str | None) -> int:
            return -1 if value is None else texts.setdefault(value, len(texts))

        def at(when: datetime | None) -> int | None:
            return None if when is None else round((when - base).total_seconds() * 1000)

        def attempt_row(a: AttemptView) -> Row:
            return [
                a.attempt,
                text(a.agent),
                a.state.value,
                a.reason.value if a.reason else None,
                a.exit_code,
                text(_cut(a.message)),
                at(a.launched_at),
                at(a.started_at),
                at(a.finished_at),
                int(a.counts_against_retries),
            ]

        rows: list[Row] = []
        for task in tasks:
            kept = task.attempts[-ROW_ATTEMPTS:]
            keep = task.id in whole
            carry = carries.get(task.id) if task.state is not TaskState.FINISHED else None
            rows.append(
                [
                    task.index,
                    task.state.value,
                    task.reason.value if task.reason else None,
                    text(task.message),
                    task.attempt,
                    text(task.agent),
                    task.attempts_omitted + len(task.attempts) - len(kept),
                    [attempt_row(a) for a in kept],
                    task.output if keep or task.output is None else TRUNCATED,
                    list(task.log_tail) if keep or not task.log_tail else [TRUNCATED],
                    None
                    if carry is None
                    else [
                        carry.user_failures,
                        carry.system_failures,
                        at(carry.not_before),
                        text(carry.avoid_agent),
                        text(carry.task_queue),
                        at(carry.started_at),
                        carry.kill.value if carry.kill else None,
                    ],
                ]
            )
        return cls(base=base, state=state, killed=killed, texts=list(texts), rows=rows)

    def tasks(self, job_id: str) -> list[tuple[TaskView, TaskCarry | None]]:
        """Every task as a :class:`TaskView` (ids ``<job_id>-<index>``), with its carry if live."""
        texts = self.texts

        def text(n: JsonValue) -> str | None:
            return None if n == -1 else texts[_int(n)]

        def at(ms: JsonValue) -> datetime | None:
            return None if ms is None else self.base + timedelta(milliseconds=_int(ms))

        def reason(value: JsonValue) -> FinishReason | None:
            return None if value is None else FinishReason(str(value))

        out: list[tuple[TaskView, TaskCarry | None]] = []
        for row in self.rows:
            index, state, why, message, attempt, agent, omitted, attempts, output, tail, carry = row
            view = TaskView(
                id=f"{job_id}-{index}",
                index=_int(index),
                state=TaskState(str(state)),
                reason=reason(why),
                message=text(message) or "",
                attempt=_int(attempt),
                agent=text(agent),
                attempts_omitted=_int(omitted),
                attempts=[
                    AttemptView(
                        attempt=_int(a[0]),
                        agent=text(a[1]),
                        state=TaskState(str(a[2])),
                        reason=reason(a[3]),
                        exit_code=None if a[4] is None else _int(a[4]),
                        message=text(a[5]) or "",
                        launched_at=at(a[6]),
                        started_at=at(a[7]),
                        finished_at=at(a[8]),
                        counts_against_retries=bool(a[9]),
                    )
                    for a in map(_list, _list(attempts))
                ],
                output=output,
                log_tail=[str(line) for line in _list(tail)],
            )
            live = None
            if isinstance(carry, list):
                users, systems, not_before, avoid, queue, started, kill = carry
                live = TaskCarry(
                    user_failures=_int(users),
                    system_failures=_int(systems),
                    not_before=at(not_before),
                    avoid_agent=text(avoid),
                    task_queue=text(queue),
                    started_at=at(started),
                    kill=reason(kill),
                )
            out.append((view, live))
        return out


def _int(value: JsonValue) -> int:
    assert isinstance(value, int), value
    return value


def _list(value: JsonValue) -> list[JsonValue]:
    assert isinstance(value, list), value
    return value


class TaskQuery(View):
    """Which tasks of a job to list: a filter, failed first then by index, and a page.

    ``states`` holds task states (``Started``), finish reasons (``failed``) or
    progress keys (``Finished/oom_killed``), in any case; a task matches one of
    them. ``failed`` keeps only tasks that finished other than normally (True)
    or only the others (False).
    """

    # A question, not an answer: a filter this release does not know is refused
    # rather than silently dropped (which would list the wrong tasks).
    model_config = ConfigDict(extra="forbid")

    states: list[str] = Field(default_factory=list)
    failed: bool | None = None
    first: int | None = None  # lowest task index
    last: int | None = None  # highest task index
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=PAGE_MAX_TASKS)

    def matches_key(self, key: str) -> bool:
        """Whether tasks counted under progress key ``key`` pass the state filters."""
        if (
            self.failed is not None
            and (key.startswith("Finished/") and key != "Finished/normal") is not self.failed
        ):
            return False
        if not self.states:
            return True
        wanted = {s.lower() for s in self.states}
        state, _, reason = key.lower().partition("/")
        return bool({key.lower(), state, reason} & wanted)

    def matches(self, task: TaskView) -> bool:
        """Whether ``task`` passes every filter."""
        in_range = (self.first is None or task.index >= self.first) and (
            self.last is None or task.index <= self.last
        )
        return in_range and self.matches_key(task.count_key)

    def count(self, counts: dict[str, int]) -> int:
        """Tasks of ``counts`` that pass the state filters (not the index range)."""
        return sum(n for key, n in counts.items() if self.matches_key(key))


class TaskPage(View):
    """One page of a job's tasks: the rows and how many tasks match in all."""

    tasks: list[TaskView] = Field(default_factory=list)
    total: int = 0


def page_tasks(tasks: list[TaskView], query: TaskQuery) -> TaskPage:
    """The page of ``tasks`` that ``query`` asks for, as bounded rows within the byte budget."""
    matching = sorted((t for t in tasks if query.matches(t)), key=failed_first)
    page = matching[query.offset : query.offset + query.limit]
    return TaskPage(tasks=bounded_tasks(page), total=len(matching))


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
