"""Array dependencies on a real cluster (issue #16): ``task_order: sequential`` and
``depends_on`` ``mode: n_to_n``, observed through the tasks' start and finish times."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from titus_cluster import Cluster

from titus_flow.lifecycle import FinishReason
from titus_flow.spec import BatchJob
from titus_flow.views import TaskView
from titus_flow.workflows.dag import dag_job_id

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


def job(name: str, script: str, **fields: Any) -> BatchJob:
    """A batch job of small busybox tasks running ``script``, without retries."""
    return BatchJob.model_validate(
        {
            "name": name,
            "container": {"image": "busybox:latest", "command": ["sh", "-c", script]},
            "resources": {"cpu": 0.1, "memory": 32, "disk": 0},
            "runtime_limit": "60s",
            **fields,
        }
    )


def window(task: TaskView) -> tuple[Any, Any]:
    """When the task's (only) attempt's container started and finished."""
    (attempt,) = task.attempts
    assert attempt.started_at and attempt.finished_at, task
    return attempt.started_at, attempt.finished_at


async def tasks_of(cluster: Cluster, job_id: str) -> list[TaskView]:
    client = await cluster.client()
    return sorted((await client.describe(job_id)).tasks, key=lambda t: t.index)


async def test_sequential_tasks_run_one_after_the_other(cluster: Cluster) -> None:
    client = await cluster.client()
    # Task 2 fails: task 3 never runs, and says why.
    spec = job(
        "seq",
        'sleep 0.5; [ "$TITUS_TASK_INDEX" != 2 ]',
        instances=4,
        task_order="sequential",
    )
    view = await cluster.wait_for(await client.submit(spec), 60)
    tasks = sorted(view.tasks, key=lambda t: t.index)
    assert [t.reason for t in tasks] == [
        FinishReason.NORMAL,
        FinishReason.NORMAL,
        FinishReason.FAILED,
        FinishReason.FAILED,
    ], tasks
    for before, after in itertools.pairwise(tasks[:3]):
        assert window(after)[0] >= window(before)[1], (before, after)
    assert tasks[3].attempts == []
    assert (
        tasks[3].message == "not started: task 2 of this job did not succeed (it finished failed)"
    )


async def test_n_to_n_task_waits_for_its_upstream_task_only(cluster: Cluster) -> None:
    client = await cluster.client()
    # Upstream task i sleeps 10*i s (task 2 the longest: room for task 0 downstream
    # to finish first on a loaded machine), and task 1 fails.
    split = job(
        "split",
        'sleep $((TITUS_TASK_INDEX * 10)); [ "$TITUS_TASK_INDEX" != 1 ]',
        instances=3,
    )
    work = job(
        "work",
        "true",
        instances=3,
        depends_on=[{"job": "split", "mode": "n_to_n"}],
    )
    dag_id = await client.start_dag([split, work])
    result = await client.wait_dag(dag_id)
    assert not result.succeeded
    ups = await tasks_of(cluster, dag_job_id(dag_id, "split"))
    downs = await tasks_of(cluster, dag_job_id(dag_id, "work"))
    assert [t.reason for t in downs] == [
        FinishReason.NORMAL,
        FinishReason.FAILED,
        FinishReason.NORMAL,
    ], downs
    for index in (0, 2):
        assert window(downs[index])[0] >= window(ups[index])[1], index
    # Task 0 did not wait for the whole upstream job: it ran before task 2 upstream ended.
    assert window(downs[0])[1] <= window(ups[2])[1]
    assert downs[1].attempts == []
    assert downs[1].message == (
        "not started: task 1 of job split did not succeed (it finished failed)"
    )
