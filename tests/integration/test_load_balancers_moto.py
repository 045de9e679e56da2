"""Load balancer registration against elbv2 (moto server on 127.0.0.1), through boto3.

Real dev server, control worker and three process-driver agents of one CPU
each, so each task runs on an agent of its own: its ``private_ip`` attribute is
the address registered in the ``ip`` target group (moto keys a group's targets
by address alone, so two tasks on one address would be one target there; AWS
keys them by address and port). A watcher samples
the target group and the job every quarter second through the whole test and
holds the order to its rules: a task's target is in the group only once the task
is healthy, and out of it (for the group's 2 s deregistration delay) before the
task stops, through a rolling update and a task kill. Then drift: a target
removed by hand is registered again, a deregistered one put back by hand is
removed again, by the job's reconciler (every 2 s here).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_fleet_moto import REGION, Moto, aws_env, moto  # noqa: F401  (fixtures)
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Container, HttpCheck, Resources, ServiceJob
from titus_flow.client import TitusClient
from titus_flow.contracts import ServiceJobInput
from titus_flow.contracts.load_balancers import TargetState
from titus_flow.errors import UserError
from titus_flow.fleet.ec2 import ENDPOINT_ENV
from titus_flow.lifecycle import TaskState
from titus_flow.load_balancers.aws import fleet_vpcs
from titus_flow.load_balancers.check import check_target_groups
from titus_flow.workflows.service import ServiceJobWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

AGENT_IPS = {"a": "10.42.0.10", "b": "10.42.0.11", "c": "10.42.0.12"}
DRAIN_SECONDS = 2
ONE_CPU = Resources(cpu=1, memory=8, disk=0, network_mbps=0)  # one task per agent
# Serves the test's directory: the health check GETs /ok, which the test removes and restores.
SERVE = 'exec busybox httpd -f -p "127.0.0.1:$PORT" -h "$ROOT"'


@dataclass
class TargetGroup:
    arn: str
    moto: Moto

    @functools.cached_property
    def elb(self) -> Any:
        """One client for the test (making one costs CPU; calls from threads are safe)."""
        return boto3.client("elbv2", region_name=REGION, endpoint_url=self.moto.url)

    def targets(self) -> set[tuple[str, int]]:
        """The (address, port) targets the group holds."""
        found = self.elb.describe_target_health(TargetGroupArn=self.arn)
        return {(d["Target"]["Id"], d["Target"]["Port"]) for d in found["TargetHealthDescriptions"]}


@pytest.fixture
def target_group(moto: Moto) -> TargetGroup:  # noqa: F811
    """An ``ip`` target group in the moto VPC, draining for 2 s."""
    elb = boto3.client("elbv2", region_name=REGION, endpoint_url=moto.url)
    vpc = moto.ec2().describe_subnets(SubnetIds=[moto.subnets[0][0]])["Subnets"][0]["VpcId"]
    name = f"tg-{uuid.uuid4().hex[:8]}"
    arn = elb.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(
        TargetGroupArn=arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(DRAIN_SECONDS)}],
    )
    return TargetGroup(arn=arn, moto=moto)


@pytest.fixture
def aws_cluster(
    cluster_factory: Callable[[], Cluster],
    moto: Moto,  # noqa: F811
) -> Cluster:
    """A control worker talking to moto, and three one-CPU agents with private IPs."""
    cluster = cluster_factory()
    cluster.env[ENDPOINT_ENV] = moto.url
    cluster.start_worker()
    for name, ip in AGENT_IPS.items():
        cluster.start_agent(
            name, "--driver", "process", "--cpu", "1", "--memory", "1Gi",
            "--attribute", f"private_ip={ip}",
        )  # fmt: skip
    return cluster


def web(arn: str, root: Path, tag: str = "v1", check: str = "60s") -> ServiceJob:
    return ServiceJob(
        name="elbweb",
        container=Container(
            image="busybox:latest",
            command=["sh", "-c", SERVE],
            ports=["http"],
            env={"TAG": tag, "ROOT": str(root)},
        ),
        resources=ONE_CPU,
        capacity=Capacity(min=0, desired=2, max=4),
        health_check=HttpCheck(port="http", path="/ok", interval="1s", unhealthy_threshold=2),
        load_balancers=[arn],
        load_balancer_check_interval=check,
    )


Target = tuple[str, int]  # (address, port)


@dataclass
class Sample:
    at: float
    in_group: set[Target]
    tasks: dict[str, tuple[TaskState, bool, Target | None]]  # id -> state, healthy, target

    def members(self) -> set[str]:
        """The tasks whose target the group holds.

        An agent gives a stopped task's port to a later task, so two tasks of a
        sample may have one target: it is the newest task's (the only one that
        can still be running).
        """
        owner: dict[Target, str] = {}
        for task, (_, _, target) in sorted(self.tasks.items(), key=lambda i: task_index(i[0])):
            if target is not None:
                owner[target] = task
        return {task for target, task in owner.items() if target in self.in_group}


@dataclass
class Watcher:
    """Samples of the group and the job, and the order rules checked over them."""

    samples: list[Sample] = field(default_factory=list)
    # Tasks the test saw finish (client.task): a loaded machine's samples can miss
    # the moment between a task finishing and leaving the job's view.
    finished: set[str] = field(default_factory=set)

    async def saw_registered(self, tasks: Iterable[str], what: str) -> None:
        """Wait until some sample shows each of ``tasks`` in the group.

        A loaded machine samples slowly; the test must not move on (and replace
        them) before the samples that :meth:`check` reads have caught them.
        """
        wanted = set(tasks)

        async def seen() -> bool:
            return wanted <= set().union(*(s.members() for s in self.samples))

        await eventually(seen, 30, what)

    def check(self) -> None:
        """Registered only when healthy; out of the group for the drain before stopping."""
        members = [sample.members() for sample in self.samples]
        for sample, inside in zip(self.samples, members, strict=True):
            for task in inside:
                state, healthy, _ = sample.tasks[task]
                assert state is not TaskState.FINISHED, (task, "finished, still in the group")
                assert healthy or state is TaskState.KILL_INITIATED, (task, "unhealthy")
        registered = set().union(*members)
        stopped = self.finished | {
            t for s in self.samples for t, (st, _, _) in s.tasks.items() if st is TaskState.FINISHED
        }
        assert len(registered & stopped) >= 3, (registered, stopped)  # 2 updated, 1 killed
        for task in registered & stopped:
            # Out of the group while it still ran, for about the group's delay.
            out_running = [
                s.at
                for s, inside in zip(self.samples, members, strict=True)
                if task in s.tasks
                and s.tasks[task][0] is TaskState.KILL_INITIATED
                and task not in inside
            ]
            assert out_running, f"{task} stopped without a sample out of the group first"
            assert max(out_running) - min(out_running) >= DRAIN_SECONDS - 0.75, (task, out_running)


@contextlib.asynccontextmanager
async def watching(
    client: TitusClient, cluster: Cluster, job_id: str, group: TargetGroup
) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    ips = {cluster.agent_id(name): ip for name, ip in AGENT_IPS.items()}

    async def sample_forever() -> None:
        while True:
            in_group = await asyncio.to_thread(group.targets)
            view = await client.describe(job_id)
            tasks = {
                t.id: (
                    t.state,
                    bool(t.healthy),
                    (ips[t.agent], t.ports["http"]) if t.agent and "http" in t.ports else None,
                )
                for t in view.tasks
            }
            watcher.samples.append(Sample(time.monotonic(), in_group, tasks))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_forever())
    try:
        yield watcher
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


async def group_holds(
    client: TitusClient, cluster: Cluster, job_id: str, group: TargetGroup, what: str
) -> dict[str, Target]:
    """Wait until the group holds exactly the job's two healthy tasks; task id -> target."""
    ips = {cluster.agent_id(name): ip for name, ip in AGENT_IPS.items()}
    found: dict[str, Target] = {}

    async def exact() -> bool:
        view = await client.describe(job_id)
        healthy = {t.id: (ips[t.agent or ""], t.ports["http"]) for t in view.tasks if t.healthy}
        found.clear()
        found.update(healthy)
        targets = await asyncio.to_thread(group.targets)
        return len(healthy) == 2 and targets == set(healthy.values())

    await eventually(exact, 90, what)
    return found


async def test_targets_follow_updates_kills_and_drift(
    aws_cluster: Cluster,
    target_group: TargetGroup,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "ok").write_text("ok")
    monkeypatch.setenv(ENDPOINT_ENV, target_group.moto.url)  # the client checks the update
    client = await aws_cluster.wait_for_agents(1)
    job_id = f"elbweb-{uuid.uuid4().hex[:8]}"
    await client.temporal.start_workflow(
        ServiceJobWorkflow.run,
        # Drift is checked hourly until the update below makes it every 2 s.
        ServiceJobInput.submitted(web(target_group.arn, tmp_path, check="1h"), datetime.now(UTC)),
        id=job_id,
        task_queue=aws_cluster.control_queue,
    )
    try:
        async with watching(client, aws_cluster, job_id, target_group) as watcher:
            first = await group_holds(client, aws_cluster, job_id, target_group, "2 registered")

            async def recorded() -> bool:  # the call's answer reaches the workflow after AWS
                [group] = (await client.load_balancers(job_id)).groups
                assert group.drain == timedelta(seconds=DRAIN_SECONDS)
                return {(t.task_id, t.target, t.port, t.state) for t in group.targets} == {
                    (task, *target, TargetState.REGISTERED) for task, target in first.items()
                }

            await eventually(recorded, 15, "the job to record its targets")
            await watcher.saw_registered(first, "samples of the first tasks in the group")

            v2 = web(target_group.arn, tmp_path, tag="v2", check="2s")
            await client.update_service(job_id, v2)
            await client.wait_rollout(job_id, timeout=120)
            updated = await group_holds(client, aws_cluster, job_id, target_group, "updated")
            assert not updated.keys() & first.keys()  # every task replaced, and registered
            await watcher.saw_registered(updated, "samples of the updated tasks in the group")
            watcher.finished.update([t for t in first if await _finished(client, t)])

            victim = next(t for t in (await client.describe(job_id)).tasks if t.healthy)
            await client.kill_task(victim.id, force=True)
            await eventually(lambda: _finished(client, victim.id), 60, f"{victim.id} to finish")
            watcher.finished.add(victim.id)
            serving = await group_holds(client, aws_cluster, job_id, target_group, "a replacement")
        watcher.check()

        # Drift: a target removed by hand comes back; a stale one put back goes again,
        # within the interval of the update (the hourly check of v1 would not come).
        held = await asyncio.to_thread(target_group.targets)
        lost = min(held)
        [group] = (await client.load_balancers(job_id)).groups
        stale = next(
            (t.target, t.port)
            for t in group.targets
            if t.state is TargetState.DEREGISTERED and t.target not in {ip for ip, _ in held}
        )
        elb = target_group.elb
        elb.deregister_targets(TargetGroupArn=target_group.arn, Targets=[_target(lost)])
        elb.register_targets(TargetGroupArn=target_group.arn, Targets=[_target(stale)])

        async def repaired() -> bool:
            return await asyncio.to_thread(target_group.targets) == held

        await eventually(repaired, 30, "the reconciler to repair the group")

        # Unhealthy tasks leave the group; the agent stops them (their health check
        # failed) and the job replaces them. The old rows end deregistered, not draining.
        (tmp_path / "ok").unlink()

        async def empty() -> bool:
            return not await asyncio.to_thread(target_group.targets)

        await eventually(empty, 30, "the unhealthy tasks to be deregistered")
        (tmp_path / "ok").write_text("ok")
        back = await group_holds(client, aws_cluster, job_id, target_group, "healthy again")
        assert not back.keys() & serving.keys()

        async def settled() -> bool:
            [group] = (await client.load_balancers(job_id)).groups
            rows = {t.task_id: t.state for t in group.targets}
            return {rows.get(task) for task in serving} == {TargetState.DEREGISTERED}

        await eventually(settled, 15, "the unhealthy tasks' targets to finish draining")
    finally:
        await client.kill(job_id)
        await aws_cluster.wait_for(job_id, timeout=60)
    assert await asyncio.to_thread(target_group.targets) == set()  # the job kill drained all


async def _finished(client: TitusClient, task_id: str) -> bool:
    return (await client.task(task_id)).state is TaskState.FINISHED


def task_index(task_id: str) -> int:
    """A task's index in its job: later tasks have higher ones."""
    return int(task_id.rpartition("-")[2])


def _target(target: Target) -> dict[str, Any]:
    return {"Id": target[0], "Port": target[1]}


JOB_FILE = """
name: {name}
kind: service
container: {{image: "busybox:latest", command: "sleep 60", ports: [http]}}
resources: {{cpu: 0.01, memory: 8, disk: 0, network_mbps: 0}}
load_balancers: [{arn}, "local:web"]
"""


async def test_submit_checks_target_groups(
    aws_cluster: Cluster, target_group: TargetGroup, tmp_path: Path
) -> None:
    lam = target_group.elb.create_target_group(Name="fn", TargetType="lambda")
    lambda_arn = lam["TargetGroups"][0]["TargetGroupArn"]
    missing = target_group.arn[:-4] + "0000"
    spec = tmp_path / "job.yaml"
    name = f"elbcheck-{uuid.uuid4().hex[:8]}"
    for arn, reason in ((missing, "does not exist"), (lambda_arn, "registers lambda targets")):
        spec.write_text(JOB_FILE.format(name=name, arn=arn))
        result = aws_cluster.cli("run", "--detach", str(spec))
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert reason in result.stderr and arn in result.stderr, result.stderr
    client = await aws_cluster.client()
    assert not [j for j in await client.list_jobs() if j["name"] == name]  # nothing submitted
    spec.write_text(JOB_FILE.format(name=name, arn=target_group.arn))
    result = aws_cluster.cli("run", "--detach", str(spec))
    assert result.returncode == 0, (result.stdout, result.stderr)
    await client.kill(result.stdout.strip())


async def test_a_group_outside_the_fleets_vpc_is_refused(
    moto: Moto,  # noqa: F811
    target_group: TargetGroup,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fleet's subnets resolve to their VPC through DescribeSubnets; no cluster needed."""
    monkeypatch.setenv(ENDPOINT_ENV, moto.url)
    vpcs = fleet_vpcs([moto.fleet()])
    other_vpc = moto.ec2().create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    assert other_vpc not in vpcs and len(vpcs) == 1
    other = target_group.elb.create_target_group(
        Name=f"tg-{uuid.uuid4().hex[:8]}", Protocol="HTTP", Port=80, VpcId=other_vpc,
        TargetType="ip",
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    await check_target_groups([target_group.arn, "local:web"], vpcs)
    with pytest.raises(UserError) as info:
        await check_target_groups([target_group.arn, "local:web", other], vpcs)
    [message] = info.value.messages
    assert message.startswith(f"load_balancers[2]: target group {other} is in VPC {other_vpc};")
    assert vpcs[0] in message
    await check_target_groups([other], [])  # no fleet: no VPC check
