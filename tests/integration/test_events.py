"""``titus-flow events``: a job's events followed from before it starts, resumed after a kill.

Real dev server, control worker and a process-driver agent (no Docker). The
follower is the CLI as users run it (a subprocess), killed midway and started
again with the cursor of the last event it printed: together the two runs
print every event of the job once, in order.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from titus_cluster import Cluster, ClusterFactory, eventually, fake_agent_worker

from titus_flow import BatchJob, Capacity, Container, Resources, Retry, ServiceJob
from titus_flow.contracts import AttemptExit, LaunchInput, LaunchResult, SuperviseInput
from titus_flow.events import Cursor, Event, EventKind
from titus_flow.lifecycle import FinishReason
from titus_flow.spec.retry import FixedBackoff

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Task 1 fails its first attempt, then succeeds.
# Tasks run 15 s: the first follower is killed mid-job even when a loaded machine
# slows the follower (a CI run: the job ended first with 3 s).
SCRIPT = '[ "$TITUS_TASK_INDEX" = 1 ] && [ "$TITUS_TASK_ATTEMPT" = 1 ] && exit 3; sleep 15'
ATTEMPT = ["Launched", "StartInitiated", "Started"]


def follow(cluster: Cluster, out: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``titus-flow events ARGS --follow -o json`` writing to ``out``."""
    return subprocess.Popen(
        [cluster.python, "-m", "titus_flow", "events", *args, "--follow", "-o", "json"],
        env=cluster.env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def printed(out: Path) -> list[dict[str, Any]]:
    """The events ``out`` holds (whole lines only: a killed writer may leave half of one)."""
    lines = out.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n")]


async def test_follow_prints_every_task_change_in_order_and_resumes_from_a_cursor(
    cluster_factory: Callable[[], Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory()
    cluster.start_worker()
    cluster.start_agent("proc", "--driver", "process", "--cpu", "4", "--memory", "4Gi")
    job_id = f"events-{secrets.token_hex(3)}"
    first_out, second_out = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first = follow(cluster, first_out, "--job", job_id)  # before the job exists
    client = await cluster.client()
    job = BatchJob(
        name="events",
        container=Container(image="busybox:latest", command=["sh", "-c", SCRIPT]),
        resources=Resources(cpu=0.01, memory=8, disk=0, network_mbps=0),
        instances=3,
        retry=Retry(attempts=2, backoff=FixedBackoff(delay="1s")),
    )
    await client.submit(job, job_id)

    async def some_started() -> bool:
        return any(e["state"] == "Started" for e in printed(first_out))

    await eventually(some_started, 45, "the follower to print a Started task")
    first.kill()
    first.wait()
    before = printed(first_out)
    second = follow(cluster, second_out, "--job", job_id, "--after", before[-1]["cursor"])
    assert await asyncio.to_thread(second.wait, 50) == 0, second_out.read_text()
    after = printed(second_out)
    assert before and after, "the follower was killed before the job ended, resumed after"

    events = before + after
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap, no repeat
    assert events[0]["kind"] == "job_accepted"
    assert (events[-1]["kind"], events[-1]["state"]) == ("job_finished", "Succeeded")
    for index in range(3):
        changes = [
            (e["state"], e["reason"])
            for e in events
            if e["task_id"] == f"{job_id}-{index}" and e["kind"] == "task_state"
        ]
        attempt = [(state, None) for state in ATTEMPT]
        retried = [*attempt, ("Accepted", "failed")] if index == 1 else []
        assert changes == [("Accepted", None), *retried, *attempt, ("Finished", "normal")]

    # The cluster's stream: the agent, the job's placements, and the job from visibility.
    result = await asyncio.to_thread(cluster.cli, "events", "-o", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    cluster_events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = {(e["kind"], e["job_id"] or e["agent"]) for e in cluster_events}
    assert ("agent_registered", cluster.agent_id("proc")) in kinds
    assert {("placement", job_id), ("job_accepted", job_id), ("job_finished", job_id)} <= kinds
    # Visibility lists every job of the namespace: other tests' jobs share this server.
    finished = next(
        e for e in cluster_events if e["kind"] == "job_finished" and e["job_id"] == job_id
    )
    assert finished["state"] == "Succeeded"
    resumed = await asyncio.to_thread(
        cluster.cli, "events", "-o", "json", "--after", cluster_events[-1]["cursor"], timeout=60
    )
    assert resumed.returncode == 0 and resumed.stdout == "", resumed


async def test_service_job_events_show_scaling_task_changes_and_the_kill(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    cluster.start_worker()
    cluster.start_agent("proc", "--driver", "process", "--cpu", "4", "--memory", "4Gi")
    client = await cluster.client()
    service = ServiceJob(
        name="evsvc",
        container=Container(image="busybox:latest", command=["sh", "-c", "sleep 300"]),
        resources=Resources(cpu=0.01, memory=8, disk=0, network_mbps=0),
        capacity=Capacity(desired=1, min=0, max=3),
    )
    job_id = await client.submit(service)

    async def events_of() -> list[Event]:
        return [event async for event in client.job_events(job_id)]

    async def started(count: int) -> bool:
        return sum(e.state == "Started" for e in await events_of()) >= count

    await eventually(lambda: started(1), 45, "the first task to start")
    await client.scale(job_id, desired=2)
    await eventually(lambda: started(2), 45, "the second task to start")
    await client.kill(job_id)
    events = [event async for event in client.job_events(job_id, follow=True)]
    assert events[0].kind is EventKind.JOB_ACCEPTED
    assert (events[-1].kind, events[-1].state) == (EventKind.JOB_FINISHED, "Killed")
    assert any(e.kind is EventKind.SCALING and "desired 2" in e.message for e in events)
    for index in range(2):
        task_id = f"{job_id}-{index}"
        changes = [
            (e.state, e.reason) for e in events if e.task_id == task_id and e.kind == "task_state"
        ]
        attempt = [(state, None) for state in ATTEMPT]
        # A job kill cancels its tasks at once (no KillInitiated of their own).
        assert changes == [("Accepted", None), *attempt, ("Finished", "killed")], task_id


@activity.defn(name="launch")
async def instant_launch(request: LaunchInput) -> LaunchResult:
    return LaunchResult(agent_id="fake", started_at=datetime.now(UTC))


@activity.defn(name="supervise")
async def instant_success(request: SuperviseInput) -> AttemptExit:
    return AttemptExit(reason=FinishReason.NORMAL, exit_code=0, finished_at=datetime.now(UTC))


async def test_a_partitioned_job_streams_every_partition_once_from_any_cursor(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(TITUS_FLOW_PARTITION_SIZE="100")
    cluster.start_worker()
    client = await cluster.client()
    tasks = 120  # two partitions
    agent = cluster.agent_id("fake")
    async with fake_agent_worker(cluster, agent, [instant_launch, instant_success]):
        job_id = await client.submit(
            BatchJob(
                name="evparts",
                container=Container(image="busybox:latest", command="true"),
                resources=Resources(cpu=0.01, memory=8, disk=0, network_mbps=0),
                instances=tasks,
            )
        )
        events = [event async for event in client.job_events(job_id, follow=True)]
    assert (events[0].kind, events[-1].kind) == (EventKind.JOB_ACCEPTED, EventKind.JOB_FINISHED)
    assert len(Cursor.parse(events[-1].cursor).seqs) == 3  # the root and two partitions
    by_task: dict[str, list[str | None]] = {}
    for event in events:
        if event.kind is EventKind.TASK_STATE and event.task_id:
            by_task.setdefault(event.task_id, []).append(event.state)
    assert len(by_task) == tasks
    assert set(map(tuple, by_task.values())) == {("Accepted", *ATTEMPT, "Finished")}
    middle = len(events) // 2
    rest = [e async for e in client.job_events(job_id, after=events[middle].cursor)]

    # The same events (partitions interleave by time within each round of pages).
    def key(e: Event) -> tuple[str, int, str]:
        return (e.task_id or e.kind, e.seq, e.kind)

    assert sorted(map(key, rest)) == sorted(map(key, events[middle + 1 :]))
    assert len(set(map(key, events))) == len(events)  # none twice
