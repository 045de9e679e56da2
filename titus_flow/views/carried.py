"""A batch workflow's tasks in compact form, carried across continue-as-new."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, JsonValue

from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.views.base import View
from titus_flow.views.tasks import (
    ROW_ATTEMPTS,
    VIEW_TASK_BYTES,
    AttemptView,
    LogRef,
    TaskView,
    cut_text,
    failed_first,
)

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
    counts against retries]``, then ``[log url, uploaded]`` if it has a log in
    S3; a carry (live tasks only) the fields of
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
            log: Row = [] if a.log is None else [[a.log.url, int(a.log.uploaded)]]
            return [
                a.attempt,
                text(a.agent),
                a.state.value,
                a.reason.value if a.reason else None,
                a.exit_code,
                text(cut_text(a.message)),
                at(a.launched_at),
                at(a.started_at),
                at(a.finished_at),
                int(a.counts_against_retries),
                # Only attempts with a log in S3 have the 11th entry: rows of
                # earlier releases (10 entries) read the same.
                *log,
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
            return None if n == -1 else texts[as_int(n)]

        def at(ms: JsonValue) -> datetime | None:
            return None if ms is None else self.base + timedelta(milliseconds=as_int(ms))

        def reason(value: JsonValue) -> FinishReason | None:
            return None if value is None else FinishReason(str(value))

        out: list[tuple[TaskView, TaskCarry | None]] = []
        for row in self.rows:
            index, state, why, message, attempt, agent, omitted, attempts, output, tail, carry = row
            view = TaskView(
                id=f"{job_id}-{index}",
                index=as_int(index),
                state=TaskState(str(state)),
                reason=reason(why),
                message=text(message) or "",
                attempt=as_int(attempt),
                agent=text(agent),
                attempts_omitted=as_int(omitted),
                attempts=[
                    AttemptView(
                        attempt=as_int(a[0]),
                        agent=text(a[1]),
                        state=TaskState(str(a[2])),
                        reason=reason(a[3]),
                        exit_code=None if a[4] is None else as_int(a[4]),
                        message=text(a[5]) or "",
                        launched_at=at(a[6]),
                        started_at=at(a[7]),
                        finished_at=at(a[8]),
                        counts_against_retries=bool(a[9]),
                        log=_log_ref(a[10]) if len(a) > 10 else None,
                    )
                    for a in map(as_list, as_list(attempts))
                ],
                output=output,
                log_tail=[str(line) for line in as_list(tail)],
            )
            live = None
            if isinstance(carry, list):
                users, systems, not_before, avoid, queue, started, kill = carry
                live = TaskCarry(
                    user_failures=as_int(users),
                    system_failures=as_int(systems),
                    not_before=at(not_before),
                    avoid_agent=text(avoid),
                    task_queue=text(queue),
                    started_at=at(started),
                    kill=reason(kill),
                )
            out.append((view, live))
        return out


def _log_ref(value: JsonValue) -> LogRef | None:
    """A carried ``[url, uploaded]`` as the attempt's :class:`LogRef`."""
    if value is None:
        return None
    url, uploaded = as_list(value)
    return LogRef(url=str(url), uploaded=bool(uploaded))


def as_int(value: JsonValue) -> int:
    """A carried field known to be an integer (compact rows are plain JSON)."""
    assert isinstance(value, int), value
    return value


def as_list(value: JsonValue) -> list[JsonValue]:
    """A carried field known to be a list."""
    assert isinstance(value, list), value
    return value
