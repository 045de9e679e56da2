"""Batch task lifecycle throughput and container launch latency, against baselines.

Everything runs in one process against one fresh dev server, so the ratios
compare like with like on a noisy machine:

1. throughput: K batch tasks (process driver, ``true``) through the full
   lifecycle (reserve, launch, supervise, release) versus K minimal workflows of
   four no-op activities on the same server and worker setup;
2. latency: submit -> Started of a one-task docker job versus a bare
   ``docker run --rm IMAGE true`` of the same image (skipped without Docker).

Run: ``.venv/bin/python bench/lifecycle.py [--tasks 300] [--launches 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from titus_flow import BatchJob, Container, Resources, stack
from titus_flow.agent import AgentConfig
from titus_flow.client import TitusClient, connect
from titus_flow.config import Settings, load_settings
from titus_flow.worker import run_control_worker


@activity.defn(name="noop")
async def noop() -> None:
    """Does nothing: the baseline's unit of work."""


@workflow.defn(name="FourNoops")
class FourNoops:
    """The baseline: a minimal workflow of four sequential no-op activities."""

    @workflow.run
    async def run(self) -> None:
        """Run four no-ops."""
        for _ in range(4):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))


async def baseline_rate(client: Client, count: int) -> float:
    """Workflows per second of ``count`` concurrent FourNoops runs."""
    queue = f"bench-{secrets.token_hex(3)}"
    # Unsandboxed: the baseline gets its best case, not the sandbox's import cost.
    async with Worker(
        client,
        task_queue=queue,
        workflows=[FourNoops],
        activities=[noop],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        start = time.perf_counter()
        handles = [
            await client.start_workflow(FourNoops.run, id=f"{queue}-{i}", task_queue=queue)
            for i in range(count)
        ]
        await asyncio.gather(*(h.result() for h in handles))
        return count / (time.perf_counter() - start)


async def titus_rate(titus: TitusClient, count: int) -> float:
    """Tasks per second of one batch job of ``count`` ``true`` tasks (process driver)."""
    job = BatchJob(
        name="bench-lifecycle",
        container=Container(image="busybox:latest", command=["true"]),
        resources=Resources(cpu=0.01, memory=8, disk=0, network_mbps=0),
        instances=count,
    )
    start = time.perf_counter()
    job_id = await titus.submit(job)
    view = await titus.wait(job_id)
    elapsed = time.perf_counter() - start
    if view.state.value != "Succeeded":
        raise SystemExit(f"benchmark job {job_id} ended {view.state}: {view.message}")
    return count / elapsed


async def started_latency(titus: TitusClient, image: str) -> float:
    """Seconds from submit to the Started state of a one-task docker job."""
    job = BatchJob(
        name="bench-launch",
        container=Container(image=image, command=["true"]),
        resources=Resources(cpu=0.1, memory=64),
    )
    submitted = datetime.now(UTC)
    job_id = await titus.submit(job)
    view = await titus.wait(job_id)
    attempt = view.tasks[0].attempts[-1]
    assert attempt.started_at is not None, view
    return (attempt.started_at - submitted).total_seconds()


def bare_docker_run(image: str) -> float:
    """Seconds of one ``docker run --rm IMAGE true``."""
    start = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "true"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def docker_answers() -> bool:
    """Whether a Docker engine is there to measure against."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@contextlib.asynccontextmanager
async def embedded_cluster(
    client: Client, settings: Settings, agent: AgentConfig
) -> AsyncIterator[TitusClient]:
    """A control worker in this process and one agent in its own process (as in
    production: they share no interpreter), on their own control queue."""
    stop = asyncio.Event()
    worker = asyncio.create_task(run_control_worker(client, settings, stop))
    resources = agent.resources
    env = {
        **os.environ,
        "TITUS_FLOW_ADDRESS": settings.address,
        "TITUS_FLOW_HOME": str(settings.home),
        "TITUS_FLOW_CONTROL_TASK_QUEUE": settings.control_task_queue,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "titus_flow",
            "agent",
            "--id",
            agent.agent_id,
            "--driver",
            agent.driver,
            "--cpu",
            str(resources.cpu),
            "--memory",
            str(resources.memory),
            "--network-mbps",
            str(resources.network_mbps),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    titus = TitusClient(client, settings)
    try:
        for _ in range(100):  # until the agent has registered
            await asyncio.sleep(0.2)
            with contextlib.suppress(Exception):
                if any(a.agent_id == agent.agent_id for a in await titus.agents()):
                    break
        yield titus
    finally:
        process.terminate()
        process.wait(timeout=30)
        stop.set()
        await asyncio.gather(worker, return_exceptions=True)


async def main() -> None:
    """Start a dev server, then measure each pair in the same run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks (and baseline workflows)")
    parser.add_argument("--launches", type=int, default=10, help="latency samples")
    parser.add_argument("--image", default="busybox:latest")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="titus-bench-"))
    binary = stack.temporal_binary()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = home / "temporal.log"
    argv = stack.server_argv(binary, port=port, ui_port=None, db_filename=home / "bench.db")
    proc = stack.start_process(argv, log)
    address = f"127.0.0.1:{port}"

    def settings_for(queue: str) -> Settings:
        overrides = {"address": address, "home": str(home), "control_task_queue": queue}
        return load_settings(overrides, environ={})

    try:
        stack.wait_ready(binary, address, lambda: proc.poll() is None, log)
        client = await connect(settings_for("bench"))

        process_agent = AgentConfig(
            agent_id="bench-process",
            driver="process",
            resources=Resources(cpu=64, memory=65536, network_mbps=100_000),
        )
        async with embedded_cluster(client, settings_for("bench-process"), process_agent) as titus:
            await titus_rate(titus, 20)  # warm up both paths before measuring
            await baseline_rate(client, 10)
            ours = await titus_rate(titus, args.tasks)
            base = await baseline_rate(client, args.tasks)
        print(
            f"lifecycle: titus-flow {ours:.1f} tasks/s; baseline 4-activity workflow {base:.1f}/s"
        )
        print(f"lifecycle ratio: {ours / base:.2f}x (target >= 3x)")

        if not docker_answers():
            print("launch latency: skipped, no Docker engine answers")
            return
        docker_agent = AgentConfig(
            agent_id="bench-docker",
            driver="docker",
            resources=Resources(cpu=2, memory=2048, network_mbps=10_000),
        )
        async with embedded_cluster(client, settings_for("bench-docker"), docker_agent) as titus:
            await started_latency(titus, args.image)  # warm up
            bare_docker_run(args.image)
            ours_s, bare_s = [], []
            for _ in range(args.launches):  # interleaved, so drift hits both alike
                ours_s.append(await started_latency(titus, args.image))
                bare_s.append(await asyncio.to_thread(bare_docker_run, args.image))
        ours_med, bare_med = statistics.median(ours_s), statistics.median(bare_s)
        print(
            f"launch: submit->Started median {ours_med * 1000:.0f} ms;"
            f" bare docker run median {bare_med * 1000:.0f} ms"
        )
        print(f"launch ratio: {ours_med / bare_med:.2f}x (target <= 1.3x)")
    finally:
        stack.stop_process_group(proc.pid, lambda: proc.poll() is None)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
