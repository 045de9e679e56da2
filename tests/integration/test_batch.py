"""Batch jobs end to end: real dev server, real control worker and agent processes,
real Docker containers (issue: batch lifecycle)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from temporalio.client import WorkflowExecutionStatus
from titus_cluster import Cluster, ClusterFactory

from titus_flow import BatchJob, Container, ExponentialBackoff, Resources, Retry
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.runtime.base import LABEL_JOB_ID, LABEL_TASK_ID
from titus_flow.views import TaskQuery

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

SMALL = Resources(cpu=0.1, memory=32, disk=0)


def job(name: str, command: str, **fields: object) -> BatchJob:
    """A small busybox job running ``sh -c command``."""
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", command]),
        resources=fields.pop("resources", SMALL),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def containers_of(job_id: str) -> list[dict[str, str]]:
    """All containers (any state) of a job, from the Docker CLI."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label={LABEL_JOB_ID}={job_id}",
            "--format",
            "{{json .}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def write_job_file(path: Path, spec: BatchJob) -> Path:
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path


async def test_three_echo_tasks_succeed_and_logs_hold_their_index(cluster: Cluster) -> None:
    client = await cluster.client()
    job_id = await client.submit(job("echo3", 'echo "index=$TITUS_TASK_INDEX"', instances=3))
    view = await cluster.wait_for(job_id)
    assert view.state is JobState.SUCCEEDED, view
    for task in view.tasks:
        assert task.state is TaskState.FINISHED and task.reason is FinishReason.NORMAL
        logs = await client.read_logs(task.id)
        assert logs.data.strip() == f"index={task.index}"
        assert logs.complete
    assert containers_of(job_id) == []  # nothing left behind


async def test_retry_with_exponential_backoff_succeeds_on_third_attempt(cluster: Cluster) -> None:
    client = await cluster.client()
    spec = job(
        "retry3",
        '[ "$TITUS_TASK_ATTEMPT" -ge 3 ]',
        retry=Retry(attempts=3, backoff=ExponentialBackoff(initial="1s", max="10s", multiplier=2)),
    )
    view = await cluster.wait_for(await client.submit(spec))
    assert view.state is JobState.SUCCEEDED, view
    attempts = view.tasks[0].attempts
    assert [a.exit_code for a in attempts] == [1, 1, 0]
    assert [a.reason for a in attempts] == [
        FinishReason.FAILED,
        FinishReason.FAILED,
        FinishReason.NORMAL,
    ]
    for previous, following, delay in (
        (attempts[0], attempts[1], 1.0),
        (attempts[1], attempts[2], 2.0),
    ):
        assert previous.finished_at and following.launched_at
        gap = (following.launched_at - previous.finished_at).total_seconds()
        assert delay <= gap < delay + 5, (gap, delay)


async def test_exhausted_attempts_fail_the_job_and_run_exits_1(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = write_job_file(
        tmp_path / "fail.yaml",
        job("fail2", "echo boom-$TITUS_TASK_ATTEMPT; exit 3", retry=Retry(attempts=2)),
    )
    result = await asyncio.to_thread(cluster.cli, "run", str(path))
    assert result.returncode == 1, result
    assert "failed" in result.stderr and "exited with code 3" in result.stderr
    assert "boom-2" in result.stderr  # the last log lines are shown
    assert "Traceback" not in result.stderr


async def test_never_retry_exit_code_is_not_retried(cluster: Cluster) -> None:
    client = await cluster.client()
    spec = job("noretry", "exit 42", retry=Retry(attempts=3, never_retry_on_exit_codes=[42]))
    view = await cluster.wait_for(await client.submit(spec))
    assert view.state is JobState.FAILED
    assert [a.exit_code for a in view.tasks[0].attempts] == [42]


async def test_runtime_limit_stops_the_container(cluster: Cluster) -> None:
    client = await cluster.client()
    started = time.monotonic()
    job_id = await client.submit(job("limit", "sleep 60", runtime_limit="2s"))
    view = await cluster.wait_for(job_id, timeout=40)
    assert time.monotonic() - started < 30
    assert view.tasks[0].reason is FinishReason.RUNTIME_LIMIT_EXCEEDED, view
    assert containers_of(job_id) == []


async def test_memory_limit_exceeded_is_oom_killed(cluster: Cluster) -> None:
    client = await cluster.client()
    spec = job(
        "oom",
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
        resources=Resources(cpu=0.1, memory=16, disk=0),
    )
    view = await cluster.wait_for(await client.submit(spec))
    assert view.tasks[0].reason is FinishReason.OOM_KILLED, view


async def test_job_kill_stops_every_container_and_releases_capacity(cluster: Cluster) -> None:
    client = await cluster.client()
    job_id = await client.submit(job("killme", "sleep 300", instances=2))
    for _ in range(100):
        view = await client.describe(job_id)
        if all(t.state is TaskState.STARTED for t in view.tasks):
            break
        await asyncio.sleep(0.2)
    assert len([c for c in containers_of(job_id) if c["State"] == "running"]) == 2
    killed_at = time.monotonic()
    await client.kill(job_id)
    view = await cluster.wait_for(job_id, timeout=30)
    while containers_of(job_id) and time.monotonic() - killed_at < 10:
        await asyncio.sleep(0.2)
    assert containers_of(job_id) == []
    assert view.state is JobState.KILLED
    assert {t.reason for t in view.tasks} == {FinishReason.KILLED}
    await _assert_no_reservations(cluster, job_id)


async def _assert_no_reservations(cluster: Cluster, job_id: str) -> None:
    client = await cluster.client()
    for _ in range(50):  # releases are signalled; give the scheduler a moment
        agents = await client.agents()
        if not any(task.startswith(job_id) for a in agents for task in a.tasks):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"reservations of {job_id} still held: {agents}")


async def test_task_needing_more_than_any_agent_is_invalid_request(
    cluster: Cluster, tmp_path: Path
) -> None:
    spec = job("toobig", "true", resources=Resources(cpu=0.1, memory="64Gi"))
    result = await asyncio.to_thread(
        cluster.cli, "run", str(write_job_file(tmp_path / "big.yaml", spec))
    )
    assert result.returncode == 1, result
    assert "invalid_request" in result.stderr and "memory" in result.stderr


class _ContainerWatch:
    """Samples the job's containers every 100 ms; records any task with two at once."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.violations: list[str] = []
        self.attempts_seen: set[tuple[str, str]] = set()
        self._stop = False

    async def run(self) -> None:
        while not self._stop:
            running: dict[str, int] = {}
            for c in await asyncio.to_thread(containers_of, self.job_id):
                labels = dict(kv.split("=", 1) for kv in c["Labels"].split(",") if "=" in kv)
                task = labels.get(LABEL_TASK_ID, "")
                self.attempts_seen.add((task, c["Names"]))
                if c["State"] == "running":
                    running[task] = running.get(task, 0) + 1
            self.violations += [f"{t}: {n} running" for t, n in running.items() if n > 1]
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self._stop = True


async def test_control_worker_kill9_mid_job_completes_without_duplicates(cluster: Cluster) -> None:
    client = await cluster.client()
    job_id = await client.submit(job("crashw", "sleep 3", instances=5))
    watch = _ContainerWatch(job_id)
    watcher = asyncio.create_task(watch.run())
    await asyncio.sleep(2.0)
    cluster.kill9("worker")
    await asyncio.sleep(1.0)
    cluster.start_worker("worker2")
    view = await cluster.wait_for(job_id)
    watch.stop()
    await watcher
    assert view.state is JobState.SUCCEEDED, view
    assert watch.violations == []
    # One container per task attempt, ever: names are unique per attempt.
    names = [name for _, name in watch.attempts_seen]
    assert len(names) == len(set(names))
    assert all(len(t.attempts) == 1 for t in view.tasks), view


async def test_agent_kill9_mid_task_readopts_or_relaunches_without_overlap(
    cluster: Cluster,
) -> None:
    client = await cluster.client()
    job_id = await client.submit(job("crasha", "sleep 8", retry=Retry(attempts=1)))
    watch = _ContainerWatch(job_id)
    watcher = asyncio.create_task(watch.run())
    for _ in range(100):
        if (await client.describe(job_id)).tasks[0].state is TaskState.STARTED:
            break
        await asyncio.sleep(0.2)
    cluster.kill9("agent-local")
    await asyncio.sleep(2.0)
    cluster.start_agent("local", "--cpu", "2", "--memory", "2Gi")
    view = await cluster.wait_for(job_id, timeout=120)
    watch.stop()
    await watcher
    assert view.state is JobState.SUCCEEDED, view
    assert watch.violations == []
    user_attempts = [a for a in view.tasks[0].attempts if a.counts_against_retries]
    assert len(user_attempts) == 1  # a lost attempt never used the retry budget
    await asyncio.sleep(1.0)
    assert containers_of(job_id) == []


async def test_task_output_written_to_titus_output_path_is_returned(cluster: Cluster) -> None:
    client = await cluster.client()
    spec = job(
        "output", 'echo "{\\"index\\": $TITUS_TASK_INDEX}" > "$TITUS_OUTPUT_PATH"', instances=2
    )
    view = await cluster.wait_for(await client.submit(spec))
    assert view.state is JobState.SUCCEEDED, view
    assert [t.output for t in view.tasks] == [{"index": 0}, {"index": 1}]


@pytest.mark.slow
async def test_large_job_runs_as_partitions_and_reads_as_one(
    cluster_factory: ClusterFactory,
) -> None:
    # Partitions of 100 tasks (the default is 500: the same paths, a fifth of the
    # work); a process-driver agent keeps 240 tasks cheap.
    c = cluster_factory(TITUS_FLOW_PARTITION_SIZE="100")
    c.start_worker()
    c.start_agent("proc", "--driver", "process", "--cpu", "64", "--memory", "64Gi")
    client = await c.client()
    count = 240
    spec = job(
        "large",
        'test "$TITUS_TASK_INDEX" != 220',
        instances=count,
        resources=Resources(cpu=0.01, memory=8, disk=0, network_mbps=0),
    )
    job_id = await client.submit(spec)
    view = await c.wait_for(job_id, timeout=400)
    assert view.state is JobState.FAILED
    # One page of tasks, the failed one first; counts of all of them.
    assert [t.index for t in view.tasks] == [220, *range(99)]
    assert view.counts() == {"Finished/normal": count - 1, "Finished/failed": 1}
    assert "1 of 240 task(s) failed" in view.message
    assert [(p.first_index, p.count) for p in view.partition_views] == [
        (0, 100),
        (100, 100),
        (200, 40),
    ]
    described = await client.describe(job_id)
    assert described == view
    # A page across two partitions: the failed task first, then by index.
    page = await client.tasks(job_id, TaskQuery(first=80, last=239, offset=1, limit=50))
    assert [t.index for t in page.tasks] == list(range(80, 130))
    assert page.total == count - 80
    # The job's workflow failed, as did the partition of task 220 (200-239): the
    # Web UI shows them red; the other partitions completed.
    statuses = [
        (await client.temporal.get_workflow_handle(w).describe()).status
        for w in [job_id, *view.partitions]
    ]
    assert statuses == [
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.COMPLETED,
        WorkflowExecutionStatus.COMPLETED,
        WorkflowExecutionStatus.FAILED,
    ]
