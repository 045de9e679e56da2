"""The pure parts of the batch job workflow: partitions, retry counting, the job's ending."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from titus_flow.config import load_settings
from titus_flow.contracts import BatchJobInput
from titus_flow.errors import UserError
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.outcomes import batch_job_ending
from titus_flow.spec import BatchJob, Container
from titus_flow.views import TaskView
from titus_flow.workflows.batch_partitions import (
    PARTITION_SIZE,
    partition_holding,
    partition_id,
    partition_input,
    partition_summaries,
    summed_counts,
)

NORMAL = f"Finished/{FinishReason.NORMAL.value}"
FAILED = f"Finished/{FinishReason.FAILED.value}"


def _job(instances: int = 1) -> BatchJob:
    return BatchJob(name="b", instances=instances, container=Container(image="busybox"))


def test_a_job_is_sliced_into_partitions_of_at_most_partition_size() -> None:
    summaries = partition_summaries("j", 2 * PARTITION_SIZE + 1)
    assert [(s.id, s.first_index, s.count) for s in summaries] == [
        ("j-p0", 0, PARTITION_SIZE),
        ("j-p1", PARTITION_SIZE, PARTITION_SIZE),
        ("j-p2", 2 * PARTITION_SIZE, 1),
    ]
    request = BatchJobInput(job=_job(1001), submitted_at=datetime(2026, 1, 1, tzinfo=UTC))
    part = partition_input(request, "j", summaries[2])
    assert (part.job_id, part.first_index, part.count) == ("j", 2 * PARTITION_SIZE, 1)


def test_a_smaller_partition_size_slices_and_finds_tasks_alike() -> None:
    summaries = partition_summaries("j", 250, size=100)
    assert [(s.id, s.first_index, s.count) for s in summaries] == [
        ("j-p0", 0, 100),
        ("j-p1", 100, 100),
        ("j-p2", 200, 50),
    ]
    for index in (0, 99, 100, 249):
        holder = partition_holding(summaries, index)
        assert holder is not None and holder.id == partition_id("j", index, 100)
    assert partition_holding(summaries, 250) is None


def test_an_input_of_an_earlier_release_reads_as_the_default_partition_size() -> None:
    old = {"job": _job(1).model_dump(mode="json"), "submitted_at": "2026-01-01T00:00:00Z"}
    assert BatchJobInput.model_validate(old).partition_size == PARTITION_SIZE


def test_the_partition_size_setting(tmp_path: Path) -> None:
    home = {"TITUS_FLOW_HOME": str(tmp_path)}
    assert load_settings(environ=home).partition_size == PARTITION_SIZE
    settings = load_settings(environ={**home, "TITUS_FLOW_PARTITION_SIZE": "100"})
    assert settings.partition_size == 100
    with pytest.raises(UserError, match="partition_size"):
        load_settings(environ={**home, "TITUS_FLOW_PARTITION_SIZE": "5"})


def test_partition_counts_add_up() -> None:
    assert summed_counts([{NORMAL: 2}, {NORMAL: 1, FAILED: 3}, {}]) == {NORMAL: 3, FAILED: 3}


def test_a_job_succeeds_only_if_every_task_did() -> None:
    assert batch_job_ending({NORMAL: 3}, []) == (JobState.SUCCEEDED, "")
    failed = [
        TaskView(id="j-7", index=7, state=TaskState.FINISHED, reason=FinishReason.FAILED),
        TaskView(
            id="j-2", index=2, state=TaskState.FINISHED, reason=FinishReason.FAILED, message="x"
        ),
    ]
    assert batch_job_ending({NORMAL: 1, FAILED: 2}, failed) == (
        JobState.FAILED,
        "2 of 3 task(s) failed; first: task 2 failed: x",
    )
    assert batch_job_ending({FAILED: 1}, []) == (JobState.FAILED, "1 of 1 task(s) failed")
