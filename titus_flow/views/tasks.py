"""A job's task rows and their bounds: what one view or page of tasks may carry."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, JsonValue

from titus_flow.lifecycle import FinishReason, TaskState
from titus_flow.views.base import View


class LogRef(View):
    """Where the agent uploads an attempt's log (stdout and stderr, gzip): ``s3://bucket/key``.

    ``uploaded``: the agent saw the upload done before it reported the attempt's
    end; False means it was still queued or retrying then (it may have landed since).
    """

    url: str
    uploaded: bool = False


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
    log: LogRef | None = None  # its log in S3, when its agent uploads logs


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


def cut_text(text: str) -> str:
    """``text`` cut to :data:`ROW_TEXT_CHARS`, an ellipsis marking the cut."""
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
            a.model_copy(update={"message": cut_text(a.message)})
            for a in self.attempts[-ROW_ATTEMPTS:]
        ]
        return self.model_copy(
            update={
                "message": cut_text(self.message),
                "attempts": attempts,
                "attempts_omitted": self.attempts_omitted + len(self.attempts) - len(attempts),
                "log_tail": [cut_text(line) for line in self.log_tail[-ROW_LOG_LINES:]],
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
