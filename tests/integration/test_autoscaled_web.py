"""Acceptance of issue #14: a web service follows its traffic through the local load balancer.

Real Temporal, a docker agent, busybox httpd tasks of examples/autoscaled_web.yaml
(with short intervals and cooldowns) behind `titus-flow lb`, loaded by
examples/load.py on 127.0.0.1: the job scales out from 1 task to 3 on
requests_per_task, and back to 1 once the load ends, while a light load kept up
through the scale-in sees no failed request (each task is deregistered and drained
before it is stopped).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from titus_cluster import Cluster, eventually

from titus_flow.client import TitusClient
from titus_flow.contracts.load_balancers import TargetState
from titus_flow.lifecycle import TaskState
from titus_flow.loader import load_jobs
from titus_flow.spec import Autoscaling, Capacity, ServiceJob, TargetTrackingPolicy

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TARGET = 4.0
"""Requests per second per task the policy keeps."""
HEAVY_RATE = 16.0  # ceil(1 * 16 / 4) = 4 tasks wanted, clamped to max 3
LIGHT_RATE = 1.5  # on 3 tasks, 0.5 each: ceil(3 * 0.5 / 4) = 1
COOLDOWN = 3.0


def scaled_spec() -> ServiceJob:
    """The example job, with the bounds and timings of this test."""
    (job,) = load_jobs(EXAMPLES / "autoscaled_web.yaml")
    assert isinstance(job, ServiceJob) and job.load_balancers == ["local:web"]
    policy = TargetTrackingPolicy(
        name="rps",
        metric="requests_per_task",
        target=TARGET,
        scale_out_cooldown=f"{COOLDOWN:g}s",
        scale_in_cooldown=f"{COOLDOWN:g}s",
    )
    return job.model_copy(
        update={
            "capacity": Capacity(min=1, desired=1, max=3),
            "autoscaling": Autoscaling(interval="1s", window="3s", policies=[policy]),
        }
    )


@contextmanager
def load(url: str, rate: float) -> Iterator[dict[str, object]]:
    """examples/load.py at ``rate`` while the block runs; its JSON summary after it."""
    command = [sys.executable, str(EXAMPLES / "load.py"), url, "--rate", str(rate)]
    proc = subprocess.Popen(
        [*command, "--duration", "600", "--progress-every", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    summary: dict[str, object] = {}
    try:
        yield summary
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    summary.update(json.loads(out) if out.strip() else {"error": err})


async def live_tasks(client: TitusClient, job_id: str) -> int:
    view = await client.describe(job_id)
    return sum(1 for t in view.tasks if t.state is not TaskState.FINISHED)


async def registered(client: TitusClient, job_id: str) -> list[str]:
    view = await client.load_balancers(job_id)
    (group,) = [g for g in view.groups if g.target_group == "local:web"]
    return [t.task_id for t in group.targets if t.state is TargetState.REGISTERED]


async def test_web_service_scales_out_under_load_and_back_in_without_failures(
    cluster: Cluster, free_port: Callable[[], int]
) -> None:
    client = await cluster.client()
    job_id = await client.submit(scaled_spec())
    try:
        await client.wait_healthy(job_id, timeout=90)
        wrong = cluster.cli("lb", job_id, "--name", "api", "--listen", "127.0.0.1:0")
        assert wrong.returncode == 2 and "its load_balancers: local:web" in wrong.stderr, wrong
        port = free_port()
        lb = ("lb", job_id, "--name", "web", "--listen", f"127.0.0.1:{port}")
        cluster.start("lb", *lb, "--log-level", "INFO")  # INFO: each target change
        url = f"http://127.0.0.1:{port}/index.html"

        async def one_registered() -> bool:
            return len(await registered(client, job_id)) == 1

        await eventually(one_registered, 60, "the first task registered in local:web")

        with load(url, HEAVY_RATE) as heavy:
            began = time.monotonic()

            async def scaled_out() -> bool:
                return len(await registered(client, job_id)) == 3

            await eventually(scaled_out, 120, "3 tasks registered under load")
            scale_out_took = time.monotonic() - began
        assert heavy.get("failed") == 0, heavy

        with load(url, LIGHT_RATE) as light:
            ended = time.monotonic()

            async def scaled_in() -> bool:
                return (
                    len(await registered(client, job_id)) == 1
                    and await live_tasks(client, job_id) == 1
                )

            await eventually(scaled_in, 120, "back to 1 task after the load")
            scale_in_took = time.monotonic() - ended
        assert light.get("failed") == 0 and int(str(light.get("ok"))) > 0, light
        # Nor did the proxy retry one: it logs (INFO) every target that refused a
        # connection or failed a request, and no task was stopped while still a target.
        lb_log = (cluster.home / "logs" / "lb.log").read_text()
        assert '"titus_flow.lb.proxy"' not in lb_log, lb_log
        assert "removed none" in lb_log and "removed autoscaled-web" in lb_log, lb_log

        print(f"scale-out {scale_out_took:.1f}s {heavy}; scale-in {scale_in_took:.1f}s {light}")
        view = await client.autoscaling(job_id)
        changes = [(d.old_desired, d.new_desired) for d in view.decisions if d.new_desired]
        # Out to the max of 3 (in one step or, when an evaluation saw the load only
        # part of its window, in two), then back in to 1; never past the bounds.
        ups = [new for old, new in changes if new > old]
        assert ups and max(ups) == 3, view
        assert all(1 <= new <= 3 for _, new in changes), view
        assert changes[-1][1] == 1, view
    finally:
        await client.kill(job_id)
