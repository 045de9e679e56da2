"""Record histories of the built-in workflows for the replay tests (tests/unit/test_*replay*.py).

Each scenario runs on a fresh in-memory dev server (a free loopback port) with
a real control worker and real agent processes (the process driver: Docker is
not the point here), started from this checkout's code::

    .venv/bin/python scripts/record_histories.py --out tests/histories           # all
    .venv/bin/python scripts/record_histories.py --out /tmp/h fleet dag --tag v2  # some

Every run of each workflow's continue-as-new chain is written as
``<name>.json.gz`` (or ``<name>-run-<n>.json.gz`` for a chain of runs): the
format the replay tests read (``temporal workflow show -o json`` output,
gzipped). ``--tag`` adds a suffix to every name (``fleet-v2``). A file that
exists is never overwritten (``--force`` does): a history is what one release
did, and replaying it is what keeps later releases compatible with it.

To record what an older release does, run this file from a checkout of it
(``git worktree add /tmp/prev <commit>``) with this repo's venv. Scenarios:
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# This checkout's code; tests/ holds cli_fork, which the cluster driver imports.
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

# The integration tests' cluster driver, moto helpers and EC2 boot hook.
from test_fleet_e2e import BootHook  # type: ignore[import-not-found]  # noqa: E402
from test_fleet_moto import AWS_ENV, Moto  # type: ignore[import-not-found]  # noqa: E402
from test_fleet_moto import moto_server as start_moto  # noqa: E402
from test_scheduled_actions import exists  # type: ignore[import-not-found]  # noqa: E402
from titus_cluster import Cluster, eventually  # type: ignore[import-not-found]  # noqa: E402

from titus_flow import (  # noqa: E402
    BatchJob,
    Capacity,
    Container,
    ExecCheck,
    Resources,
    ServiceJob,
    stack,
)
from titus_flow.autoscaling.scheduled import schedule_id  # noqa: E402
from titus_flow.cluster import fleet_workflow_id, scheduler_workflow_id  # noqa: E402
from titus_flow.contracts import BatchJobInput  # noqa: E402
from titus_flow.fleet.ec2 import ENDPOINT_ENV  # noqa: E402
from titus_flow.fleet.userdata import agent_environment  # noqa: E402
from titus_flow.lifecycle import JobState  # noqa: E402
from titus_flow.spec import Autoscaling, ScheduledAction, TargetTrackingPolicy  # noqa: E402
from titus_flow.spec.retry import Retry  # noqa: E402
from titus_flow.workflows.batch import BatchJobWorkflow  # noqa: E402

SMALL = Resources(cpu=0.1, memory=16, disk=0, network_mbps=0)

Recorder = Callable[[Cluster], Awaitable[dict[str, str]]]
"""A scenario: drives the cluster, returns {history name: workflow id} to write."""


@dataclass(frozen=True)
class Scenario:
    """How to record one scenario."""

    record: Recorder
    server_options: tuple[str, ...] = ()
    """Extra ``temporal server start-dev`` arguments."""


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, *server_options: str) -> Callable[[Recorder], Recorder]:
    """Register a scenario under ``name`` (the command line's name for it)."""

    def register(record: Recorder) -> Recorder:
        SCENARIOS[name] = Scenario(record, server_options)
        return record

    return register


def _job(name: str, command: str, instances: int = 1, attempts: int = 1, **fields: Any) -> BatchJob:
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", command]),
        resources=SMALL,
        instances=instances,
        retry=Retry(attempts=attempts),
        **fields,
    )


def _service(name: str, command: str) -> ServiceJob:
    return ServiceJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", command]),
        resources=SMALL,
        capacity=Capacity(min=0, desired=2, max=4),
        health_check=ExecCheck(command="true", interval="1s"),
    )


def _process_agent(cluster: Cluster, name: str = "a", cpu: str = "4") -> None:
    cluster.start_agent(name, "--driver", "process", "--cpu", cpu, "--memory", "2Gi")


# --- scenarios --------------------------------------------------------------------------


@scenario(
    "scheduler",
    # Low enough that the scheduler continues as new a few times.
    "--dynamic-config-value",
    "limit.historyCount.suggestContinueAsNew=80",
)
async def scheduler(cluster: Cluster) -> dict[str, str]:
    """Jobs, a retry, a capacity group, a drain and a lost agent on one scheduler."""
    cluster.start_worker()
    _process_agent(cluster, "a", cpu="2")
    _process_agent(cluster, "b", cpu="1")
    client = await cluster.wait_for_agents(2)
    ok = await client.submit(_job("ok", "true", instances=3))
    assert (await cluster.wait_for(ok)).state is JobState.SUCCEEDED, ok
    await cluster.wait_for(await client.submit(_job("retried", "exit 3", 2, attempts=2)))
    result = cluster.cli("capacity-groups", "create", "batchy", "--limit-tasks", "5")
    assert result.returncode == 0, result.stderr
    await cluster.wait_for(await client.submit(_job("grouped", "true", 2, capacity_group="batchy")))
    await client.drain_agent(cluster.agent_id("b"))
    cluster.kill9("agent-b")

    async def lost() -> bool:
        states = {a.agent_id: a.state for a in await client.agents()}
        return states.get(cluster.agent_id("b")) == "lost"

    await eventually(lost, 120, "agent b marked lost")
    await cluster.wait_for(await client.submit(_job("after", "true", instances=2)))
    return {"scheduler": scheduler_workflow_id(cluster.control_queue)}


@scenario("batch-continued")
async def batch_continued(cluster: Cluster) -> dict[str, str]:
    """A Failed batch job of retried tasks that continues as new every ~150 events."""
    cluster.start_worker()
    _process_agent(cluster)
    client = await cluster.wait_for_agents(1)
    # Task i fails until attempt i % 3 + 1; every fourth task never succeeds.
    command = (
        "sleep 0.$((TITUS_TASK_INDEX % 5)); [ $((TITUS_TASK_INDEX % 4)) -ne 0 ]"
        ' && [ "$TITUS_TASK_ATTEMPT" -ge $((TITUS_TASK_INDEX % 3 + 1)) ]'
    )
    job = _job("continued", command, instances=12, attempts=3)
    workflow_id = f"continued-{cluster.control_queue}"
    await client.temporal.start_workflow(
        BatchJobWorkflow.run,
        BatchJobInput(job=job, submitted_at=datetime.now(UTC), history_limit=150),
        id=workflow_id,
        task_queue=cluster.control_queue,
    )
    assert (await cluster.wait_for(workflow_id, 240)).state is JobState.FAILED
    return {"batch-continued": workflow_id}


@scenario("dag")
async def dag(cluster: Cluster) -> dict[str, str]:
    """A DAG that succeeds (a fan-out of two) and one whose middle node fails."""
    cluster.start_worker()
    _process_agent(cluster)
    client = await cluster.wait_for_agents(1)
    succeeds: list[BatchJob | ServiceJob] = [
        _job("extract", "true"),
        _job("transform", "true", instances=2, depends_on=["extract"]),
        _job("report", "true", depends_on=["extract"]),
    ]
    fails: list[BatchJob | ServiceJob] = [
        _job("extract", "true"),
        _job("transform", "exit 1", depends_on=["extract"]),
        _job("report", "true", depends_on=["transform"]),  # skipped
        _job("archive", "true", depends_on=["extract"]),
    ]
    ids = {
        "dag-succeeded": await client.start_dag(succeeds, f"dag-ok-{cluster.control_queue}"),
        "dag-node-failed": await client.start_dag(fails, f"dag-ko-{cluster.control_queue}"),
    }
    ok, failed = [await asyncio.wait_for(client.wait_dag(i), 120) for i in ids.values()]
    assert ok.succeeded, ok.message
    assert not failed.succeeded and "report" in failed.skipped, failed.message
    return ids


@scenario("service-canary")
async def service_canary(cluster: Cluster) -> dict[str, str]:
    """Two 2-task services: a canary of one task promoted, another rolled back; both killed."""
    cluster.start_worker()
    _process_agent(cluster)
    client = await cluster.wait_for_agents(1)

    async def canary(name: str, promote: bool) -> str:
        job_id: str = await client.submit(_service(name, "sleep 600"))
        await client.wait_healthy(job_id, timeout=60, revision=1)
        revision = await client.update_service(job_id, _service(name, "sleep 601"), canary=1)
        assert (await client.wait_rollout(job_id, timeout=60)).canary_ready, job_id
        if promote:
            assert await client.promote(job_id) == revision
            await client.wait_healthy(job_id, timeout=60, revision=revision)
        else:
            assert await client.rollback(job_id, "canary check failed") == 1
            await client.wait_healthy(job_id, timeout=60, revision=1)
        await client.kill(job_id)
        assert (await cluster.wait_for(job_id, 60)).state is JobState.KILLED
        return job_id

    promoted, rolled_back = await asyncio.gather(
        canary("promoted", promote=True), canary("rolled-back", promote=False)
    )
    return {"service-canary-promoted": promoted, "service-canary-rolled-back": rolled_back}


@scenario("service-scheduled")
async def service_scheduled(cluster: Cluster) -> dict[str, str]:
    """A 2-task service whose scheduled action is triggered, then dropped by an update; killed."""
    cluster.start_worker()
    _process_agent(cluster)
    client = await cluster.wait_for_agents(1)
    never = "0 3 1 1 *"  # only trigger() runs these
    actions = [
        ScheduledAction(name="morning", cron=never, min=1, desired=3),
        ScheduledAction(name="night", cron=never, desired=1),
    ]
    job = _service("scheduled", "sleep 600")
    job_id: str = await client.submit(
        job.model_copy(update={"autoscaling": Autoscaling(scheduled=actions)})
    )
    await client.wait_healthy(job_id, timeout=60, revision=1)
    morning, night = (
        client.temporal.get_schedule_handle(schedule_id(job_id, a.name)) for a in actions
    )
    await eventually(lambda: exists(night), 30, "the schedules made")
    await morning.trigger()

    async def scaled() -> bool:
        return (await client.autoscaling(job_id)).desired == 3

    await eventually(scaled, 30, "the morning action applied")
    await client.update_service(
        job_id, job.model_copy(update={"autoscaling": Autoscaling(scheduled=actions[:1])})
    )

    async def dropped() -> bool:
        return not await exists(night)

    await eventually(dropped, 30, "the night schedule deleted")
    await client.kill(job_id)
    assert (await cluster.wait_for(job_id, 60)).state is JobState.KILLED
    runs = client.temporal.list_workflows("WorkflowType = 'ScheduledScaling'")
    (scaling,) = [run.id async for run in runs]
    return {"service-scheduled-killed": job_id, "scheduled-scaling": scaling}


@scenario("service-autoscaled")
async def service_autoscaled(cluster: Cluster) -> dict[str, str]:
    """A 2-task service on a pushed metric: held within tolerance, out to 4, in to 1; killed."""
    cluster.start_worker()
    _process_agent(cluster)
    client = await cluster.wait_for_agents(1)
    policy = TargetTrackingPolicy(
        name="queue",
        metric="custom:queue",
        target=10,
        scale_out_cooldown="0s",
        scale_in_cooldown="0s",
    )
    job = _service("autoscaled", "sleep 600").model_copy(
        update={"autoscaling": Autoscaling(policies=[policy], interval="1s", window="2s")}
    )
    job_id: str = await client.submit(job)
    await client.wait_healthy(job_id, timeout=60, revision=1)

    async def pushing(value: float, desired: int, what: str) -> None:
        async def reached() -> bool:
            await client.put_metric(job_id, "custom:queue", value)
            view = await client.autoscaling(job_id)
            last = view.decisions[-1].reason if view.decisions else ""
            return view.desired == desired and f" {value:g} " in last

        await eventually(reached, 60, what)

    await pushing(10.5, 2, "a hold within the tolerance")
    await pushing(20, 4, "a scale-out to 4")
    await pushing(1, 1, "a scale-in to min 1")
    await client.kill(job_id)
    assert (await cluster.wait_for(job_id, 60)).state is JobState.KILLED
    return {"service-autoscaled-killed": job_id}


@scenario("fleet")
async def fleet(cluster: Cluster) -> dict[str, str]:
    """A fleet on moto grows from 0 to 2 instances for a job, shrinks to 0, is deleted.

    Moto starts no machines: the integration tests' boot hook starts a process
    agent for each instance moto reports running, and kills it when it is gone.
    """
    async with moto_server(cluster.home) as moto:
        cluster.env.update(AWS_ENV)
        cluster.env[ENDPOINT_ENV] = moto.url
        spec = moto.fleet(
            "rec",
            endpoint_url=None,  # the worker's environment says where EC2 is
            temporal={"address": cluster.address, "control_task_queue": cluster.control_queue},
            agent={"driver": "process"},
            instance_types=["m5.large"],
            min=0,
            max=2,
            idle_timeout="3s",
            poll_interval="1s",
        )
        cluster.env.update(agent_environment(spec))
        path = cluster.home / "fleet.yaml"
        path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
        cluster.start_worker()
        result = cluster.cli("fleet", "apply", str(path))
        assert result.returncode == 0, result.stderr
        client = await cluster.client()
        async with BootHook(cluster, moto.ec2(), spec) as hook:
            # Two 1.5-core tasks: one m5.large (2 cores) each.
            job_id = await client.submit(
                _job("burst", "sleep 2", instances=2).model_copy(
                    update={"resources": Resources(cpu=1.5, memory=256)}
                )
            )
            assert (await cluster.wait_for(job_id, 120)).state is JobState.SUCCEEDED
            assert len(hook.booted) == 2, hook.booted

            async def shrunk() -> bool:
                return not await asyncio.to_thread(hook.live)

            await eventually(shrunk, 90, "the fleet back at 0 instances")
        result = cluster.cli("fleet", "delete", spec.name, "--timeout", "60")
        assert result.returncode == 0, result.stderr
    return {"fleet": fleet_workflow_id(cluster.control_queue, spec.name)}


assert __doc__ is not None
__doc__ += "\n".join(f"``{n}``: {s.record.__doc__}" for n, s in SCENARIOS.items())


# --- machinery --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def moto_server(home: Path) -> AsyncIterator[Moto]:
    """The fleet tests' ``moto_server`` (a VPC of two subnets) on a free loopback port.

    Fake credentials go into this process's environment too: the boot hook's
    EC2 client reads them from there.
    """
    os.environ.update(AWS_ENV)
    with start_moto(_free_port(), home / "moto.log") as server:
        yield server


@contextlib.asynccontextmanager
async def dev_server(options: tuple[str, ...]) -> AsyncIterator[Cluster]:
    """A fresh in-memory dev server; a cluster (no process yet) on it; everything stopped after."""
    binary = stack.temporal_binary()
    port = _free_port()
    argv = [*stack.server_argv(binary, port=port, ui_port=None, db_filename=None), *options]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = stack.start_process(argv, home / "temporal.log")

        def alive() -> bool:
            return proc.poll() is None

        address = f"127.0.0.1:{port}"
        cluster = Cluster(
            address=address,
            home=home / "cluster",
            control_queue="rec",
            cwd=ROOT,  # the processes run this checkout's code too
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("TITUS_FLOW_")},
                "TITUS_FLOW_ADDRESS": address,
                "TITUS_FLOW_HOME": str(home / "cluster"),
                "TITUS_FLOW_CONTROL_TASK_QUEUE": "rec",
                "TITUS_FLOW_LOG_LEVEL": "INFO",
                "TITUS_FLOW_TASK_NETWORK": "titus-flow-rec",  # what stop_all removes
            },
        )
        (cluster.home / "logs").mkdir(parents=True)
        try:
            stack.wait_ready(binary, address, alive, home / "temporal.log")
            yield cluster
        except BaseException:
            print(cluster.logs(), file=sys.stderr)
            raise
        finally:
            try:
                await asyncio.to_thread(cluster.stop_all)  # it runs an event loop of its own
            finally:
                stack.stop_process_group(proc.pid, alive)


async def chain(cluster: Cluster, workflow_id: str) -> list[str]:
    """The JSON history of every run of ``workflow_id``'s continue-as-new chain, first first."""
    temporal = (await cluster.client()).temporal
    runs: list[str] = []
    run_id: str | None = None
    while True:
        history = await temporal.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.insert(0, history.to_json())
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if run_id is None:
            return runs


async def record(name: str, out: Path, tag: str, force: bool) -> list[Path]:
    """Run scenario ``name`` on a fresh server; write its histories; return the files."""
    written = []
    async with dev_server(SCENARIOS[name].server_options) as cluster:
        for history, workflow_id in (await SCENARIOS[name].record(cluster)).items():
            runs = await chain(cluster, workflow_id)
            base = f"{history}-{tag}" if tag else history
            for n, text in enumerate(runs, start=1):
                path = out / (f"{base}-run-{n}.json.gz" if len(runs) > 1 else f"{base}.json.gz")
                if path.exists() and not force:
                    raise SystemExit(f"{path} exists (a release's history): --tag or --force")
                path.write_bytes(gzip.compress(text.encode(), mtime=0))
                written.append(path)
    return written


async def main() -> None:
    """Record the scenarios asked for (all by default), one after another."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the files")
    parser.add_argument("--tag", default="", help="suffix of every history name (a release)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument(
        "names", nargs="*", help=f"scenarios (default: all): {', '.join(SCENARIOS)}"
    )
    args = parser.parse_args()
    if unknown := set(args.names) - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or SCENARIOS:
        for path in await record(name, args.out, args.tag, args.force):
            print(path)


if __name__ == "__main__":
    asyncio.run(main())
