"""Fleets end to end: real control worker, real agent processes, EC2 on moto_server.

The control worker (``titus-flow worker``) runs the Fleet workflow and its boto3
activities against moto through ``TITUS_FLOW_AWS_ENDPOINT_URL`` and fake
credentials in its environment. Moto starts no machines, so a boot hook plays
EC2: for each instance moto reports running it starts ``titus-flow agent`` with
the instance's id, type and zone - the command the user data runs, built by the
same code (``--driver process``: no Docker needed) - and it kills that agent
when moto says the instance is gone, as the machine dying would.
"""

# ruff: noqa: F811  (the moto fixtures are imported from test_fleet_moto, then requested)

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import pytest
import yaml
from mypy_boto3_ec2 import EC2Client
from test_fleet_moto import AWS_ENV, REGION, Moto, aws_env, moto  # noqa: F401  (fixtures)
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Container, Resources
from titus_flow.fleet import FleetSpec
from titus_flow.fleet.ec2 import ENDPOINT_ENV, FLEET_TAG
from titus_flow.fleet.userdata import agent_arguments, agent_environment
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.views import JobView

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIVE = ("pending", "running")


class BootHook:
    """Plays EC2 for a fleet's instances: boots an agent per running instance, kills it when gone.

    ``most_live`` is the most instances moto ever reported pending or running at once.
    """

    def __init__(self, cluster: Cluster, ec2: EC2Client, spec: FleetSpec) -> None:
        # The user data starts the agent with exactly this environment.
        assert agent_environment(spec).items() <= cluster.env.items()
        self.cluster, self.ec2, self.spec = cluster, ec2, spec
        self.booted: dict[str, str] = {}  # instance id -> its agent's instance type
        self.most_live = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BootHook:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def instances(self) -> list[dict[str, Any]]:
        """Every instance tagged as the fleet's, in any state."""
        pages = self.ec2.describe_instances(
            Filters=[{"Name": f"tag:{FLEET_TAG}", "Values": [self.spec.name]}]
        )
        return [dict(i) for r in pages["Reservations"] for i in r["Instances"]]

    async def _run(self) -> None:
        while True:
            self._step(await asyncio.to_thread(self.instances))
            await asyncio.sleep(0.5)

    def _step(self, instances: list[dict[str, Any]]) -> None:
        live = 0
        for raw in instances:
            iid, state = raw["InstanceId"], raw["State"]["Name"]
            live += state in LIVE
            process = f"agent-{iid}"
            if state == "running" and iid not in self.booted:
                declared = self.spec.instance_type(raw["InstanceType"])
                assert declared is not None, raw["InstanceType"]
                zone = raw["Placement"]["AvailabilityZone"]
                self.cluster.start(process, *agent_arguments(self.spec, declared, iid, zone))
                self.booted[iid] = declared.name
            elif state not in LIVE and process in self.cluster.processes:
                self.cluster.kill9(process)  # the machine is gone, its agent with it
        self.most_live = max(self.most_live, live)

    def live(self) -> list[str]:
        """Ids of the fleet's instances moto reports pending or running."""
        return sorted(i["InstanceId"] for i in self.instances() if i["State"]["Name"] in LIVE)


def fleet_cluster(
    cluster_factory: Callable[[], Cluster],
    moto: Moto,
    dev_server: str,
    tmp_path: Path,
    **fields: Any,
) -> tuple[Cluster, FleetSpec, Path]:
    """A cluster whose control worker reaches moto through the environment, and a fleet file."""
    cluster = cluster_factory()
    cluster.env.update(AWS_ENV)
    cluster.env[ENDPOINT_ENV] = moto.url
    spec = moto.fleet(
        f"e2e{secrets.token_hex(3)}",
        endpoint_url=None,  # the worker's environment says where EC2 is
        temporal={"address": dev_server, "control_task_queue": cluster.control_queue},
        agent={"driver": "process"},
        poll_interval="1s",
        **fields,
    )
    cluster.env.update(agent_environment(spec))  # what the instances' agents get
    path = tmp_path / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    cluster.start_worker()
    return cluster, spec, path


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file tasks wait for, so a test decides when they end; opened at teardown at the latest.

    Task processes outlive a killed agent (as containers would), so none may wait forever.
    """
    path = tmp_path / "gate"
    yield path
    path.touch()


def blocks_until(gate: Path) -> str:
    """Shell that blocks until ``gate`` exists."""
    return f"until [ -e {gate} ]; do sleep 0.2; done"


def cli_json(cluster: Cluster, *args: str) -> Any:
    """Run a CLI command with ``-o json``; its parsed output (it must exit 0)."""
    result = cluster.cli(*args, "-o", "json")
    assert result.returncode == 0, f"{args}: {result.stderr}\n{cluster.logs()}"
    return json.loads(result.stdout)


def job(name: str, command: str, cpu: float, instances: int = 1) -> BatchJob:
    """A batch job of ``sh -c command`` tasks (the process driver ignores the image)."""
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", command]),
        resources=Resources(cpu=cpu, memory=256),
        instances=instances,
    )


SERVICE_FILE = """
name: {name}
kind: service
container: {{image: "busybox:latest", command: "sleep 60", ports: [http]}}
resources: {{cpu: 0.01, memory: 8, disk: 0, network_mbps: 0}}
capacity: {{min: 0, desired: 0, max: 1}}
load_balancers: [{arn}]
"""


async def submit_checks_the_fleets_vpc(cluster: Cluster, moto: Moto, tmp_path: Path) -> None:
    """``run`` of a service refuses a target group outside the running fleet's VPC (exit 2,
    nothing submitted) and accepts one inside it: the fleet's subnets, as its workflow
    holds them, resolved through moto's DescribeSubnets by the CLI's own process.
    """
    elb = boto3.client("elbv2", region_name=REGION, endpoint_url=moto.url)
    ec2 = moto.ec2()
    own = ec2.describe_subnets(SubnetIds=[moto.subnets[0][0]])["Subnets"][0]["VpcId"]
    other = ec2.create_vpc(CidrBlock="10.44.0.0/16")["Vpc"]["VpcId"]

    def group(vpc: str) -> str:
        name = f"tg-{secrets.token_hex(4)}"
        made = elb.create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip"
        )
        arn: str = made["TargetGroups"][0]["TargetGroupArn"]
        return arn

    spec = tmp_path / "web.yaml"
    outside, inside = group(other), group(own)
    spec.write_text(SERVICE_FILE.format(name="outside", arn=outside))
    refused = cluster.cli("run", "--detach", str(spec))
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert f"load_balancers[0]: target group {outside} is in VPC {other};" in refused.stderr
    assert own in refused.stderr and "Traceback" not in refused.stderr
    client = await cluster.client()
    assert not [j for j in await client.list_jobs() if j["name"] == "outside"]
    spec.write_text(SERVICE_FILE.format(name="inside", arn=inside))
    accepted = cluster.cli("run", "--detach", str(spec))
    assert accepted.returncode == 0, (accepted.stdout, accepted.stderr)
    await client.kill(accepted.stdout.strip())


@pytest.mark.slow
async def test_fleet_grows_for_a_job_stops_at_max_then_shrinks_to_zero(
    cluster_factory: Callable[[], Cluster], moto: Moto, dev_server: str, tmp_path: Path, gate: Path
) -> None:
    cluster, spec, path = fleet_cluster(
        cluster_factory,
        moto,
        dev_server,
        tmp_path,
        instance_types=["m5.large", "m5.xlarge"],
        min=0,
        max=3,
        idle_timeout="3s",
    )
    assert cli_json(cluster, "fleet", "apply", str(path)) == {
        "fleet": spec.name,
        "action": "started",
    }
    client = await cluster.client()
    async with BootHook(cluster, moto.ec2(), spec) as hook:
        # No agent at all: three 1.5-core tasks need three m5.large (2 cores each).
        burst = await client.submit(job("burst", blocks_until(gate), cpu=1.5, instances=3))

        async def burst_running() -> bool:
            view = await client.describe(burst)
            return all(t.state is TaskState.STARTED for t in view.tasks)

        await eventually(burst_running, 60, "three tasks running on fleet agents")
        live = hook.live()
        assert len(live) == 3 and {hook.booted[i] for i in live} == {"m5.large"}
        view = await client.describe(burst)
        assert {t.agent for t in view.tasks} == set(live)  # one task per instance's agent
        await submit_checks_the_fleets_vpc(cluster, moto, tmp_path)

        # A task bigger than every agent (3 cores) that an m5.xlarge would hold waits -
        # it is not rejected - and says the fleet is at its limit.
        big = await client.submit(job("big", "echo big", cpu=3))

        async def says_at_max() -> bool:
            task = (await client.describe(big)).tasks[0]
            assert task.state is TaskState.ACCEPTED, task
            return f"fleet {spec.name} is at its max of 3 instances" in (task.pending_reason or "")

        await eventually(says_at_max, 20, "the big task to say the fleet is at max")

        async def fleet_says_at_max() -> bool:  # in `fleet status`, after its next round
            status = cli_json(cluster, "fleet", "status", spec.name)
            assert len(status["instances"]) == 3, status
            assert all(i["agent_id"] for i in status["instances"]), status
            return any("at max" in why for why in status["unfit"].values())

        await eventually(fleet_says_at_max, 20, "fleet status to show the task it cannot serve")

        gate.touch()
        assert (await cluster.wait_for(burst, 60)).state is JobState.SUCCEEDED
        # Idle m5.large instances are drained and terminated; then an m5.xlarge is
        # launched for the big task, which runs on it.
        done: JobView = await cluster.wait_for(big, 90)
        assert done.state is JobState.SUCCEEDED, done
        assert hook.booted[done.tasks[0].agent or ""] == "m5.xlarge"

        async def back_to_zero() -> bool:
            return hook.live() == [] and not any(p.startswith("agent-") for p in cluster.processes)

        async def forgotten() -> bool:  # by the fleet, and by the scheduler once terminated
            status = cli_json(cluster, "fleet", "status", spec.name)
            return status["instances"] == [] and await client.agents() == []

        await eventually(back_to_zero, 60, "the fleet back at 0 instances")
        await eventually(forgotten, 20, "no instance in fleet status, no agent in the scheduler")
        assert hook.most_live <= 3, "the fleet went past its max"
    result = cluster.cli("fleet", "delete", spec.name, "--timeout", "60")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
async def test_instance_terminated_behind_the_fleets_back_is_replaced_and_its_task_rerun(
    cluster_factory: Callable[[], Cluster], moto: Moto, dev_server: str, tmp_path: Path, gate: Path
) -> None:
    cluster, spec, path = fleet_cluster(
        cluster_factory, moto, dev_server, tmp_path, instance_types=["m5.large"], max=2
    )
    assert cli_json(cluster, "fleet", "apply", str(path))["action"] == "started"
    client = await cluster.client()
    async with BootHook(cluster, moto.ec2(), spec) as hook:
        # Default retry policy: one attempt. Success after a lost attempt proves the
        # platform's relaunch did not use the user's retry budget.
        # The first attempt runs until its machine dies (and then until the gate opens,
        # an orphan as a container on a dead host would be); the second one just ends.
        first_waits = f'if [ "$TITUS_TASK_ATTEMPT" = 1 ]; then {blocks_until(gate)}; fi; sleep 1'
        job_id = await client.submit(job("survivor", first_waits, cpu=1.5))

        async def started() -> bool:
            return (await client.describe(job_id)).tasks[0].state is TaskState.STARTED

        await eventually(started, 60, "the task running on a fleet agent")
        victim = (await client.describe(job_id)).tasks[0].agent
        assert victim is not None and hook.live() == [victim]
        moto.ec2().terminate_instances(InstanceIds=[victim])  # not through the fleet

        async def replaced() -> bool:
            return [i for i in hook.live() if i != victim] != []

        await eventually(replaced, 30, "a replacement instance")

        # The fleet saw the instance die: its agent leaves the scheduler at once (no
        # waiting for the 45 s heartbeat silence that marks an unknown agent lost).
        async def agent_gone() -> bool:
            return victim not in {a.agent_id for a in await client.agents()}

        await eventually(agent_gone, 30, "the dead instance's agent out of the scheduler")

        view = await cluster.wait_for(job_id, 100)
        assert view.state is JobState.SUCCEEDED, view
        first, second = view.tasks[0].attempts
        assert (first.agent, first.reason) == (victim, FinishReason.LOST)
        assert not first.counts_against_retries
        assert second.reason is FinishReason.NORMAL and second.agent != victim
        assert second.agent in hook.booted
        assert len(hook.booted) == 2 and hook.most_live <= 2
        events = cli_json(cluster, "fleet", "status", spec.name)["events"]
        assert any(f"replacing dead instance {victim}" in e for e in events), events
    result = cluster.cli("fleet", "delete", spec.name, "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert hook.live() == []
