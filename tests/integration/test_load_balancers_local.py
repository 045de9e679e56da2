"""A service job's ``local:`` load balancer group: registered once healthy, drained before a stop.

Real dev server, control worker and process-driver agent; the tasks are busybox
httpd processes on loopback. The group lives in the job's workflow only (no AWS
call): what the local proxy (``titus-flow lb``) reads through the
``load_balancers`` query.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from test_service_quiet import SMALL, kill_and_replay
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Container, ServiceJob, TcpCheck
from titus_flow.client import TitusClient
from titus_flow.contracts.load_balancers import LoadBalancersView, TargetState
from titus_flow.lifecycle import TaskState
from titus_flow.load_balancers.rules import LOCAL_DRAIN

pytestmark = pytest.mark.asyncio(loop_scope="session")

GROUP = "local:web"
SERVE = 'exec busybox httpd -f -p "127.0.0.1:$PORT" -h /tmp'


@pytest.fixture
def proc_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    cluster = cluster_factory()
    cluster.start_worker()
    cluster.start_agent("proc", "--driver", "process", "--cpu", "2", "--memory", "2Gi")
    return cluster


def web(desired: int) -> ServiceJob:
    return ServiceJob(
        name="lbweb",
        container=Container(image="busybox:latest", command=["sh", "-c", SERVE], ports=["http"]),
        resources=SMALL,
        capacity=Capacity(min=0, desired=desired, max=3),
        health_check=TcpCheck(port="http", interval="1s"),
        load_balancers=[GROUP],
    )


def states(view: LoadBalancersView) -> dict[str, TargetState]:
    [group] = view.groups
    return {t.task_id: t.state for t in group.targets}


async def registered(client: TitusClient, job_id: str, count: int) -> LoadBalancersView:
    async def enough() -> bool:
        view = await client.load_balancers(job_id)
        found = states(view) if view.groups else {}
        return sum(1 for s in found.values() if s is TargetState.REGISTERED) == count

    await eventually(enough, 60, f"{count} registered target(s)")
    return await client.load_balancers(job_id)


async def test_local_group_registers_healthy_tasks_and_drains_before_stop(
    proc_cluster: Cluster,
) -> None:
    client = await proc_cluster.client()
    job_id = await client.submit(web(desired=2))
    try:
        view = await registered(client, job_id, 2)
        [group] = view.groups
        assert group.target_group == GROUP and group.drain == LOCAL_DRAIN
        job = await client.describe(job_id)
        ports = {t.id: t.ports["http"] for t in job.tasks if t.state is TaskState.STARTED}
        assert {t.task_id: (t.target, t.port) for t in group.targets} == {
            task: ("127.0.0.1", port) for task, port in ports.items()
        }

        # A killed task leaves the group first, drains, and only then stops.
        victim = sorted(ports)[0]
        await client.kill_task(victim, force=True)
        seen: list[tuple[TargetState, TaskState]] = []
        while True:
            lb = states(await client.load_balancers(job_id))[victim]
            task = await client.task(victim)
            seen.append((lb, task.state))
            if task.state is TaskState.FINISHED:
                break
            await asyncio.sleep(0.2)
        assert (TargetState.DRAINING, TaskState.KILL_INITIATED) in seen, seen
        assert seen[-1][0] is TargetState.DEREGISTERED, seen
        assert all(s is not TargetState.REGISTERED for s, t in seen if t is TaskState.FINISHED)
        await registered(client, job_id, 2)  # its replacement

        # describe shows each task's registration; the CLI lists the targets.
        described = proc_cluster.cli("job", "describe", job_id, "-o", "json")
        assert described.returncode == 0, described.stderr
        shown = json.loads(described.stdout)["load_balancers"]
        assert LoadBalancersView.model_validate(shown).groups[0].target_group == GROUP
        listed = proc_cluster.cli("job", "load-balancers", job_id)
        assert listed.returncode == 0 and "registered" in listed.stdout, listed
    finally:
        history = await kill_and_replay(proc_cluster, client, job_id)
    final = states(await client.load_balancers(job_id))
    assert set(final.values()) == {TargetState.DEREGISTERED}, final
    assert any("drain every task" in str(e) for e in history.events)


async def test_a_job_without_load_balancers_answers_no_groups(proc_cluster: Cluster) -> None:
    client = await proc_cluster.client()
    job_id = await client.submit(web(desired=0).model_copy(update={"load_balancers": []}))
    try:
        assert (await client.load_balancers(job_id)).groups == []
        listed = proc_cluster.cli("job", "load-balancers", job_id)
        assert listed.returncode == 0 and "no load balancers" in listed.stdout, listed
        missing = proc_cluster.cli("job", "load-balancers", "nosuchjob-1234")
        assert missing.returncode == 2, missing
    finally:
        await kill_and_replay(proc_cluster, client, job_id)
