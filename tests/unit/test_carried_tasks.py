"""A batch run's tasks carried across continue-as-new: compact, bounded, read back the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.views import (
    CARRIED_BYTES,
    PAGE_MAX_TASKS,
    TRUNCATED,
    AttemptView,
    CarriedTasks,
    JobView,
    TaskCarry,
    TaskQuery,
    TaskView,
    page_tasks,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)
JOB = "job-1a2b3c4d"


def attempt(n: int, reason: FinishReason, agent: str = "agent-a") -> AttemptView:
    at = BASE + timedelta(seconds=n)
    return AttemptView(
        attempt=n,
        agent=agent,
        state=TaskState.FINISHED,
        reason=reason,
        exit_code=0 if reason is FinishReason.NORMAL else 3,
        message="" if reason is FinishReason.NORMAL else "exited with code 3",
        launched_at=at,
        started_at=at + timedelta(milliseconds=5),
        finished_at=at + timedelta(milliseconds=900),
        counts_against_retries=reason is not FinishReason.LOST,
    )


def finished(index: int, attempts: int, output: object = None, failed: bool = False) -> TaskView:
    reasons = [FinishReason.FAILED] * (attempts - 1)
    reasons.append(FinishReason.FAILED if failed else FinishReason.NORMAL)
    rows = [attempt(n + 1, r) for n, r in enumerate(reasons)]
    last = rows[-1]
    return TaskView(
        id=f"{JOB}-{index}",
        index=index,
        state=TaskState.FINISHED,
        reason=last.reason,
        message=last.message,
        attempt=attempts,
        agent=last.agent,
        attempts=rows,
        output=output,
        log_tail=["boom"] * 20 if failed else [],
    )


def test_tasks_read_back_as_their_bounded_rows_with_their_carries() -> None:
    tasks = [
        finished(0, 7, output={"n": 0}, failed=True),  # more attempts than a row keeps
        finished(1, 1, output=[1, 2]),
        TaskView(
            id=f"{JOB}-2",
            index=2,
            state=TaskState.ACCEPTED,
            attempt=1,
            agent="agent-a",
            attempts=[attempt(1, FinishReason.LOST)],
        ),
        TaskView(
            id=f"{JOB}-3",
            index=3,
            state=TaskState.STARTED,
            attempt=1,
            agent="agent-b",
            attempts=[
                attempt(1, FinishReason.NORMAL, "agent-b").model_copy(
                    update={"state": TaskState.STARTED, "reason": None, "finished_at": None}
                )
            ],
        ),
        TaskView(id=f"{JOB}-4", index=4),
    ]
    carries = {
        f"{JOB}-2": TaskCarry(
            system_failures=1, not_before=BASE + timedelta(seconds=9), avoid_agent="agent-a"
        ),
        f"{JOB}-3": TaskCarry(
            task_queue="titus-agent-agent-b", started_at=BASE, kill=FinishReason.KILLED
        ),
        f"{JOB}-4": TaskCarry(),
    }
    carried = CarriedTasks.of(tasks, carries, BASE, state=JobState.RUNNING, killed=True)
    decoded = CarriedTasks.model_validate_json(carried.model_dump_json())
    back = decoded.tasks(JOB)
    assert [view for view, _ in back] == [task.bounded() for task in tasks]
    assert [carry for _, carry in back] == [None, None, *carries.values()]
    assert (decoded.state, decoded.killed) == (JobState.RUNNING, True)
    row = back[0][0]
    assert (row.attempt, len(row.attempts), row.attempts_omitted) == (7, 5, 2)
    # The same page before and after.
    query = TaskQuery(limit=10)
    assert page_tasks([v for v, _ in back], query) == page_tasks(tasks, query)


def test_outputs_past_the_view_budget_are_truncated_and_the_carry_stays_bounded() -> None:
    # 500 tasks of 64 KiB outputs (the agent's cap): 32 MB as whole views.
    output = {"data": "x" * 64 * 1024}
    tasks = [finished(i, 3, output=output, failed=i % 2 == 0) for i in range(PAGE_MAX_TASKS)]
    carried = CarriedTasks.of(tasks, {}, BASE)
    size = len(carried.model_dump_json())
    assert size < 512 * 1024, size
    back = [view for view, _ in carried.tasks(JOB)]
    whole = [t.index for t in back if t.output == output]
    # Failed tasks first, as a final view keeps them: the rows it shows stay whole.
    final = JobView(id=JOB, name="n", type="batch", tasks=tasks).bounded()
    assert whole == sorted(t.index for t in final.tasks)
    assert all(t.output == TRUNCATED for t in back if t.index not in whole)
    assert all(t.log_tail == [TRUNCATED] for t in back if t.index not in whole and t.failed)
    assert size < CARRIED_BYTES


def test_a_carry_that_would_be_too_large_gives_up_every_output() -> None:
    # Whole rows alone cannot pass the budget by much, but a tiny budget shows the
    # fallback: with everything past it truncated, what is carried is rows only.
    output = {"data": "x" * 1024}
    tasks = [finished(i, 1, output=output) for i in range(10)]
    carried = CarriedTasks.of(tasks, {}, BASE, budget=0)
    outputs = [view.output for view, _ in carried.tasks(JOB)]
    assert outputs == [output] + [TRUNCATED] * 9  # the first row is always whole
