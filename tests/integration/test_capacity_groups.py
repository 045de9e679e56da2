"""Capacity groups and tiers end to end (issue 5, point 4): real dev server, control
worker and agent processes (process driver: no Docker needed), groups defined with
the CLI as users do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Container, Resources
from titus_flow.client import TitusClient
from titus_flow.lifecycle import JobState, TaskState
from titus_flow.views import TaskView

pytestmark = pytest.mark.asyncio(loop_scope="session")


def job(
    name: str, command: str, *, cpu: float, instances: int = 1, group: str = "default"
) -> BatchJob:
    """A batch job of ``instances`` tasks running ``sh -c command``."""
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", command]),
        resources=Resources(cpu=cpu, memory=32, disk=0, network_mbps=0),
        instances=instances,
        capacity_group=group,
    )


async def start_cluster(
    cluster_factory: Callable[[], Cluster], cpus: dict[str, str]
) -> tuple[Cluster, TitusClient]:
    """A worker and one process-driver agent per entry of ``cpus``, all registered."""
    cluster = cluster_factory()
    cluster.start_worker()
    for name, cpu in cpus.items():
        cluster.start_agent(name, "--driver", "process", "--cpu", cpu, "--memory", "1Gi")
    client = await cluster.wait_for_agents(len(cpus))
    return cluster, client


async def cli(cluster: Cluster, *args: str) -> str:
    """Run the CLI; it must succeed. Returns its stdout."""
    result = await asyncio.to_thread(cluster.cli, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def started(task: TaskView) -> bool:
    return task.state is TaskState.STARTED


def waiting(task: TaskView, reason: str) -> bool:
    return task.state is TaskState.ACCEPTED and reason in (task.pending_reason or "")


async def test_flex_job_cannot_take_capacity_guaranteed_to_a_critical_group(
    cluster_factory: Callable[[], Cluster],
) -> None:
    # Two agents of one core each; prod is guaranteed one core (all of an agent's).
    cluster, client = await start_cluster(cluster_factory, {"a": "1", "b": "1"})
    await cli(
        cluster, "capacity-groups", "create", "prod", "--tier", "critical", "--guarantee-cpu", "1"
    )

    # A flex job of two one-core tasks: one runs, the other may not take prod's core.
    flex = await client.submit(job("flex", "sleep 8", cpu=1, instances=2))
    guarantee = "guaranteed to critical group(s) 'prod' are held back from flex tasks"
    held: list[TaskView] = []

    async def one_runs_one_held() -> bool:
        tasks = (await client.describe(flex)).tasks
        held[:] = [t for t in tasks if waiting(t, guarantee)]
        return sum(map(started, tasks)) == 1 and len(held) == 1

    await eventually(one_runs_one_held, 60, "one flex task running and one held by the guarantee")

    # The critical job gets the core kept for it at once, although the flex task asked first.
    crit = await client.submit(job("crit", "sleep 1", cpu=1, group="prod"))
    crit_view = await cluster.wait_for(crit, 60)
    assert crit_view.state is JobState.SUCCEEDED, crit_view
    still_held = next(t for t in (await client.describe(flex)).tasks if t.id == held[0].id)
    crit_start = crit_view.tasks[0].attempts[0].started_at
    assert crit_start is not None
    held_start = still_held.attempts[0].started_at if still_held.attempts else None
    assert held_start is None or held_start > crit_start, (still_held, crit_view.tasks[0])

    # Once the first flex task ends, both cores are free: the held task runs on one.
    flex_view = await cluster.wait_for(flex, 60)
    assert flex_view.state is JobState.SUCCEEDED, flex_view


async def test_group_at_its_limit_keeps_new_tasks_pending_then_places_them(
    cluster_factory: Callable[[], Cluster], tmp_path: Path
) -> None:
    cluster, client = await start_cluster(cluster_factory, {"a": "4"})

    # The job names a group nobody created yet: its tasks wait and say how to fix it.
    # Each task runs until the test lets it end (process driver: the host's files).
    gate = tmp_path / "gate"
    limited = await client.submit(
        job(
            "limited",
            f'until [ -e {gate}-"$TITUS_TASK_INDEX" ]; do sleep 0.1; done',
            cpu=0.5,
            instances=3,
            group="batch-flex",
        )
    )
    missing = (
        "capacity group 'batch-flex' does not exist;"
        " create it with `titus-flow capacity-groups create batch-flex`"
    )

    async def all_wait_for_the_group() -> bool:
        tasks = (await client.describe(limited)).tasks
        return all(waiting(t, missing) for t in tasks)

    await eventually(all_wait_for_the_group, 60, "tasks waiting for the missing group")

    # Defining it (from a file) with a limit of 2 tasks: two run, the third waits.
    groups = tmp_path / "groups.yaml"
    groups.write_text("capacity_groups:\n  - name: batch-flex\n    limit: {tasks: 2}\n")
    assert "capacity group batch-flex created" in await cli(cluster, "apply", str(groups))
    at_limit = "capacity group 'batch-flex' at its limit of 2 tasks"

    async def two_run_one_waits() -> bool:
        tasks = (await client.describe(limited)).tasks
        return sum(map(started, tasks)) == 2 and sum(waiting(t, at_limit) for t in tasks) == 1

    await eventually(two_run_one_waits, 60, "two tasks running and one at the group's limit")
    listing = json.loads(await cli(cluster, "capacity-groups", "list", "-o", "json"))
    batch = next(g for g in listing if g["group"]["name"] == "batch-flex")
    assert (batch["defined"], batch["tasks"], batch["pending"], batch["used_cpu"]) == (
        True,
        2,
        1,
        1.0,
    )
    assert batch["group"]["limit"]["tasks"] == 2

    # The third task runs once one of the first two ends and frees the group's room.
    first_two = [t.index for t in (await client.describe(limited)).tasks if started(t)]
    for index in first_two:
        (tmp_path / f"gate-{index}").touch()
    (third,) = {0, 1, 2} - set(first_two)

    async def third_started() -> bool:
        return started((await client.describe(limited)).tasks[third])

    await eventually(third_started, 60, "the third task to start")
    (tmp_path / f"gate-{third}").touch()
    view = await cluster.wait_for(limited, 60)
    assert view.state is JobState.SUCCEEDED, view
    runs = sorted((t.attempts[-1].started_at, t.attempts[-1].finished_at) for t in view.tasks)
    (_, first_end), (_, second_end), (third_start, _) = runs
    assert first_end is not None and second_end is not None and third_start is not None
    assert third_start >= min(first_end, second_end), runs

    # Applying the same file again changes nothing; update changes only what it is given.
    assert "capacity group batch-flex unchanged" in await cli(cluster, "apply", str(groups))
    updated = await cli(cluster, "capacity-groups", "update", "batch-flex", "--limit-cpu", "2")
    assert "limit 2 cores, 2 tasks" in updated
    # The scheduler's update validator refuses to create a group twice; nothing changes.
    again = await asyncio.to_thread(cluster.cli, "capacity-groups", "create", "batch-flex")
    assert again.returncode == 2, again
    assert "capacity group 'batch-flex' already exists; change it with" in again.stderr
    listing = json.loads(await cli(cluster, "capacity-groups", "list", "-o", "json"))
    batch = next(g for g in listing if g["group"]["name"] == "batch-flex")
    assert batch["group"]["limit"] == {"cpu": 2.0, "memory": None, "tasks": 2}
