"""Array dependencies' pure parts: index ranges and which runs gate their tasks."""

from __future__ import annotations

from datetime import UTC, datetime

from titus_flow.contracts import BatchJobInput
from titus_flow.contracts.task_gates import FinishedTasks, as_ranges, in_ranges
from titus_flow.spec import BatchJob, Container
from titus_flow.views import TaskView
from titus_flow.workflows.batch_gates import TaskGates
from titus_flow.workflows.batch_partitions import partition_id, partition_summaries


def test_ranges_compress_and_expand() -> None:
    assert as_ranges([]) == []
    assert as_ranges([5, 1, 2, 3, 9, 2]) == [(1, 3), (5, 5), (9, 9)]
    assert in_ranges([(1, 3), (5, 5)]) == {1, 2, 3, 5}
    everything = range(10_000)
    assert as_ranges(everything) == [(0, 9_999)]  # 10,000 waiting tasks: one pair
    assert in_ranges(as_ranges(everything)) == set(everything)
    assert FinishedTasks().empty and not FinishedTasks(failed={3: "failed"}).empty


def _input(**fields: object) -> BatchJobInput:
    job = BatchJob.model_validate({"name": "b", "container": {"image": "busybox"}, **fields})
    return BatchJobInput(job=job, submitted_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_only_sequential_or_known_n_to_n_jobs_gate_their_tasks() -> None:
    tasks = [TaskView(id="j-0", index=0)]
    assert not TaskGates(_input(), "j", tasks).active
    assert not TaskGates(_input(depends_on=["a"]), "j", tasks).active
    assert TaskGates(_input(task_order="sequential"), "j", tasks).active
    n_to_n = _input(depends_on=[{"job": "a", "mode": "n_to_n"}])
    # Outside a DAG nobody says which job "a" is: its tasks are not gated.
    assert not TaskGates(n_to_n, "j", tasks).active
    told = n_to_n.model_copy(update={"upstream": {"a": "dag-1-a"}})
    assert TaskGates(told, "j", tasks).active


def test_the_input_of_a_job_without_array_dependencies_reads_as_before() -> None:
    job = BatchJob(name="b", container=Container(image="busybox"))
    recorded = {"job": job.model_dump(mode="json"), "submitted_at": "2026-01-01T00:00:00Z"}
    assert BatchJobInput.model_validate(recorded).upstream == {}


def test_a_task_is_asked_of_the_partition_that_runs_it() -> None:
    assert partition_id("j", 0) == "j-p0"
    assert partition_id("j", 499) == "j-p0"
    assert partition_id("j", 500) == "j-p1"
    summaries = partition_summaries("j", 10_000)
    assert [s.id for s in summaries] == [partition_id("j", s.first_index) for s in summaries]
