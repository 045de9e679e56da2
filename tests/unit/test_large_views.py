"""Bounded job views and task pages (issue 11): no payload grows with the job's tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from titus_flow.cli import _register_commands, job_commands
from titus_flow.cli.app import cli
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.views import (
    VIEW_TASK_BYTES,
    AttemptView,
    JobView,
    TaskQuery,
    TaskView,
    page_tasks,
)

LIMIT = 512 * 1024  # Temporal's payload warning
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def failed_task(index: int, output_bytes: int = 64 * 1024, attempts: int = 3) -> TaskView:
    """A task that failed ``attempts`` times, with a large output and log tail."""
    return TaskView(
        id=f"big-1-{index}",
        index=index,
        state=TaskState.FINISHED,
        reason=FinishReason.FAILED,
        message="exited with code 3 " + "x" * 2000,
        attempt=attempts,
        agent="agent-1",
        attempts=[
            AttemptView(
                attempt=n,
                agent="agent-1",
                state=TaskState.FINISHED,
                reason=FinishReason.FAILED,
                exit_code=3,
                message="exited with code 3",
                launched_at=NOW,
                started_at=NOW,
                finished_at=NOW,
            )
            for n in range(1, attempts + 1)
        ],
        log_tail=["e" * 1000] * 50,
        output={"data": "o" * output_bytes},
    )


def task(index: int, state: TaskState, reason: FinishReason | None = None) -> TaskView:
    return TaskView(id=f"j-1-{index}", index=index, state=state, reason=reason)


def test_a_partition_of_failures_with_large_outputs_ends_with_a_bounded_view() -> None:
    # Before: 500 such tasks made a view of tens of megabytes (the partition could not end).
    view = JobView(id="big-1", name="big", type="batch", tasks=[failed_task(i) for i in range(500)])
    assert len(view.model_dump_json()) > 30 * 1024 * 1024
    bounded = view.bounded()
    size = len(bounded.model_dump_json())
    assert size < LIMIT, size
    assert bounded.total_tasks == 500
    assert bounded.counts() == {"Finished/failed": 500}
    assert bounded.tasks[0].index == 0  # the first failure is always kept
    row = bounded.tasks[0]
    assert len(row.log_tail) <= 20 and all(len(line) <= 500 for line in row.log_tail)
    assert len(row.message) <= 500


def test_many_attempts_are_cut_to_the_latest() -> None:
    row = failed_task(0, output_bytes=10, attempts=40).bounded()
    assert [a.attempt for a in row.attempts] == [36, 37, 38, 39, 40]
    assert row.attempts_omitted == 35


def test_a_small_view_is_kept_whole_in_index_order() -> None:
    tasks = [
        task(0, TaskState.FINISHED, FinishReason.NORMAL),
        task(1, TaskState.FINISHED, FinishReason.FAILED),
        task(2, TaskState.STARTED),
    ]
    view = JobView(id="j-1", name="j", type="batch", tasks=tasks)
    assert view.bounded() == view
    assert view.bounded().total_tasks is None


def test_a_large_view_keeps_failed_then_live_tasks_first() -> None:
    tasks = [task(i, TaskState.FINISHED, FinishReason.NORMAL) for i in range(5000)]
    tasks[4000] = task(4000, TaskState.FINISHED, FinishReason.OOM_KILLED)
    tasks[4500] = task(4500, TaskState.STARTED)
    bounded = JobView(id="j-1", name="j", type="batch", tasks=tasks).bounded()
    assert [t.index for t in bounded.tasks[:3]] == [4000, 4500, 0]
    assert bounded.total_tasks == 5000
    assert bounded.counts() == {"Finished/normal": 4998, "Finished/oom_killed": 1, "Started": 1}
    assert len(bounded.model_dump_json()) < VIEW_TASK_BYTES + 4096


@pytest.mark.parametrize(
    ("query", "indexes", "total"),
    [
        (TaskQuery(limit=3), [3, 7, 5], 10),
        (TaskQuery(states=["failed"]), [3, 7], 2),
        (TaskQuery(states=["Started"]), [5], 1),
        (TaskQuery(states=["finished/NORMAL"], offset=2, limit=2), [2, 4], 7),
        (TaskQuery(failed=False, first=4, last=6), [5, 4, 6], 3),
        (TaskQuery(first=7), [7, 8, 9], 3),
    ],
)
def test_pages_filter_by_state_and_index_failed_first(
    query: TaskQuery, indexes: list[int], total: int
) -> None:
    tasks = [task(i, TaskState.FINISHED, FinishReason.NORMAL) for i in range(10)]
    tasks[3] = task(3, TaskState.FINISHED, FinishReason.FAILED)
    tasks[7] = task(7, TaskState.FINISHED, FinishReason.FAILED)
    tasks[5] = task(5, TaskState.STARTED)
    page = page_tasks(tasks, query)
    assert [t.index for t in page.tasks] == indexes
    assert page.total == total
    counts = JobView(id="j-1", name="j", type="batch", tasks=tasks).counts()
    if query.first is None and query.last is None:
        assert query.count(counts) == total  # what the client plans pages with


def test_describe_pages_a_large_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked: list[TaskQuery | None] = []
    page = [task(17, TaskState.FINISHED, FinishReason.FAILED)]

    class PagingClient:
        @classmethod
        async def connect(cls, settings: object = None) -> PagingClient:
            return cls()

        async def describe(self, job_id: str, query: TaskQuery | None = None) -> JobView:
            asked.append(query)
            return JobView(
                id=job_id,
                name="big",
                type="batch",
                state=JobState.RUNNING,
                tasks=page,
                total_tasks=10_000,
                task_counts={"Finished/failed": 3, "Started": 9997},
                partitions=[f"{job_id}-p{n}" for n in range(20)],
            )

    _register_commands()
    monkeypatch.setattr(job_commands, "TitusClient", PagingClient)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(
            cli,
            ["--home", str(tmp_path / "home"), "--address", "127.0.0.1:9", *args],
            env={"TITUS_FLOW_CONFIG": str(tmp_path / "no-config.yaml")},
        )

    result = invoke(
        "job", "describe", "big-1", "--state", "failed", "--limit", "1", "--tasks", "0-99"
    )
    assert result.exit_code == 0, result.output
    assert asked == [TaskQuery(states=["failed"], first=0, last=99, limit=1)]
    assert "tasks: 10000 (3 Finished/failed, 9997 Started)" in result.output
    assert "partitions: 20 (0 ended)" in result.output
    assert "j-1-17" in result.output
    result = invoke("job", "describe", "big-1", "--state", "failed", "--limit", "1")
    assert "showing 1 of 3 matching; next page: --offset 1 (failed first)" in result.output
    bad = invoke("job", "describe", "big-1", "--tasks", "9-2")
    assert bad.exit_code == 2 and "ends before it starts" in bad.output
