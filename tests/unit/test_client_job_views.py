"""The client's view assembly across partitions (titus_flow/client/job_views.py), no server.

A partitioned job's page of tasks is built from its partitions' counts and
pages: failed tasks of every partition first, then the rest by index; only
the partitions that hold rows of the page are asked for rows. The two calls
that reach Temporal (a partition's counts, a page of its tasks) are replaced
by answers from task lists kept here.
"""

from __future__ import annotations

from typing import Any

import pytest

from titus_flow.client import job_views
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.views import JobView, PartitionSummary, TaskPage, TaskQuery, TaskView, page_tasks

SIZE = 4  # tasks a partition


def _task(index: int, failed: bool) -> TaskView:
    reason = FinishReason.FAILED if failed else FinishReason.NORMAL
    return TaskView(id=f"job-{index}", index=index, state=TaskState.FINISHED, reason=reason)


def _counts(tasks: list[TaskView]) -> dict[str, int]:
    return JobView(id="p", name="p", type="batch", tasks=tasks).counts()


class Partitions:
    """Three partitions of four tasks; task 5 and 10 failed. Records what was asked."""

    def __init__(self) -> None:
        failed = {5, 10}
        self.tasks = {
            f"job-p{n}": [_task(i, i in failed) for i in range(n * SIZE, (n + 1) * SIZE)]
            for n in range(3)
        }
        self.asked: list[str] = []

    def root(self) -> JobView:
        summaries = [
            PartitionSummary(
                id=pid,
                first_index=n * SIZE,
                count=SIZE,
                state=JobState.FAILED if n < 2 else JobState.SUCCEEDED,
                counts=_counts(tasks),
            )
            for n, (pid, tasks) in enumerate(self.tasks.items())
        ]
        return JobView(
            id="job",
            name="job",
            type="batch",
            partitions=list(self.tasks),
            partition_views=summaries,
            total_tasks=3 * SIZE,
        )

    async def counts_of(self, temporal: Any, summary: PartitionSummary) -> dict[str, int]:
        return summary.counts

    async def partition_page(
        self, temporal: Any, summary: PartitionSummary, query: TaskQuery
    ) -> TaskPage:
        self.asked.append(summary.id)
        return page_tasks(self.tasks[summary.id], query)


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> Partitions:
    parts = Partitions()
    monkeypatch.setattr(job_views, "_counts_of", parts.counts_of)
    monkeypatch.setattr(job_views, "_partition_page", parts.partition_page)
    return parts


async def test_failed_tasks_of_every_partition_come_first(parts: Partitions) -> None:
    page, counts = await job_views.task_page(None, parts.root(), TaskQuery(limit=5))  # type: ignore[arg-type]
    assert [t.index for t in page.tasks] == [5, 10, 0, 1, 2]
    assert page.total == 12
    assert counts == {"Finished/failed": 2, "Finished/normal": 10}


async def test_a_deep_page_asks_only_the_partitions_that_hold_its_rows(parts: Partitions) -> None:
    query = TaskQuery(failed=False, offset=8, limit=2)
    page, _ = await job_views.task_page(None, parts.root(), query)  # type: ignore[arg-type]
    # Not failed: 0-4, 6-9, 11. Rows 8 and 9 of those are tasks 9 and 11.
    assert [t.index for t in page.tasks] == [9, 11]
    assert page.total == 10
    assert "job-p0" not in parts.asked  # its 4 matching tasks are all before the page


async def test_an_index_range_skips_partitions_outside_it(parts: Partitions) -> None:
    query = TaskQuery(first=4, last=7)
    page, _ = await job_views.task_page(None, parts.root(), query)  # type: ignore[arg-type]
    assert [t.index for t in page.tasks] == [5, 4, 6, 7]
    assert set(parts.asked) == {"job-p1"}


def test_a_root_of_the_previous_release_has_partitions_by_index() -> None:
    root = JobView(id="job", name="job", type="batch", partitions=["job-p0", "job-p1"])
    summaries = job_views.partitions_of(root)
    assert [(s.id, s.first_index) for s in summaries] == [
        ("job-p0", 0),
        ("job-p1", job_views.PARTITION_SIZE),
    ]


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (None, None, (True, True)),
        (0, 3, (True, True)),
        (2, 9, (True, False)),
        (4, 9, (False, False)),
    ],
)
def test_overlaps(first: int | None, last: int | None, expected: tuple[bool, bool]) -> None:
    summary = PartitionSummary(id="p", first_index=0, count=SIZE)
    assert job_views._overlaps(summary, TaskQuery(first=first, last=last)) == expected
