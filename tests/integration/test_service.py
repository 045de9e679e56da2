"""Service jobs end to end: real dev server, worker and agent processes, real
Docker containers serving HTTP on loopback ports (issue: service jobs)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from titus_cluster import Cluster

from titus_flow import (
    Capacity,
    Container,
    DisruptionBudget,
    HttpCheck,
    Resources,
    RollingUpdate,
    ServiceJob,
)
from titus_flow.client import TitusClient
from titus_flow.errors import UserError
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.runtime.base import attempt_name
from titus_flow.views import JobView

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

SERVE = (
    'mkdir -p /www && echo "$TITUS_TASK_ID {tag}" > /www/index.html'
    ' && exec httpd -f -p "$PORT" -h /www'
)


def web(name: str, desired: int = 3, command: str | None = None, **fields: Any) -> ServiceJob:
    """An http service of busybox httpd with a 1 s http health check."""
    return ServiceJob(
        name=name,
        container=Container(
            image="busybox:latest",
            command=["sh", "-c", command or SERVE.format(tag="v1")],
            ports=["http"],
        ),
        resources=Resources(cpu=0.1, memory=32, disk=0),
        capacity=Capacity(min=0, desired=desired, max=10),
        health_check=HttpCheck(
            port="http", path="/index.html", interval="1s", timeout="1s", unhealthy_threshold=2
        ),
        **fields,
    )


def with_command(spec: ServiceJob, command: list[str]) -> ServiceJob:
    """The next revision of ``spec``: the same job running ``command``."""
    container = spec.container.model_copy(update={"command": command})
    return spec.model_copy(update={"container": container})


def live(view: JobView) -> list[Any]:
    return [t for t in view.tasks if t.state is not TaskState.FINISHED]


def healthy(view: JobView, revision: int | None = None) -> int:
    return sum(1 for t in view.tasks if t.healthy and (revision is None or t.revision == revision))


async def until(
    client: TitusClient, job_id: str, ok: Callable[[JobView], bool], timeout: float = 60
) -> JobView:
    deadline = time.monotonic() + timeout
    while True:
        view = await client.describe(job_id)
        if ok(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met in {timeout}s: {view.model_dump_json(indent=1)}"
            )
        await asyncio.sleep(0.2)


class Sampler:
    """Samples the healthy count every 200 ms while a scenario runs."""

    def __init__(self, client: TitusClient, job_id: str, revision: int | None = None) -> None:
        self.client, self.job_id, self.revision = client, job_id, revision
        self.samples: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        self.samples.append(healthy(await self.client.describe(self.job_id)))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            await self._sample()

    async def __aenter__(self) -> Sampler:
        # One sample before and one after the scenario: a replacement can be
        # quicker than a single describe round trip.
        await self._sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await self._sample()


async def started_service(cluster: Cluster, spec: ServiceJob) -> tuple[TitusClient, str]:
    client = await cluster.client()
    job_id = await client.submit(spec)
    await client.wait_healthy(job_id, timeout=60)
    return client, job_id


async def test_killed_container_is_replaced_and_job_never_drops_below_desired_minus_one(
    cluster: Cluster,
) -> None:
    client, job_id = await started_service(cluster, web("webkill"))
    victim = live(await client.describe(job_id))[0]
    async with Sampler(client, job_id) as sampler:
        killed_at = time.monotonic()
        subprocess.run(
            ["docker", "kill", attempt_name(victim.id, 1)], check=True, capture_output=True
        )
        view = await until(
            client, job_id, lambda v: healthy(v) == 3 and victim.id not in [t.id for t in live(v)]
        )
        replaced_in = time.monotonic() - killed_at
    timeline = [
        (
            t.id,
            t.reason,
            t.attempts[0].launched_at,
            t.attempts[0].started_at,
            t.attempts[0].finished_at,
        )
        for t in view.tasks
    ]
    assert replaced_in < 2 * 1.0 + 5, (replaced_in, timeline)  # 2 check intervals + start
    assert min(sampler.samples) >= 2, sampler.samples
    finished = next(t for t in view.tasks if t.id == victim.id)
    assert finished.reason is FinishReason.FAILED
    await client.kill(job_id)


async def test_task_failing_its_health_check_is_replaced(cluster: Cluster) -> None:
    client, job_id = await started_service(cluster, web("websick", desired=2))
    victim = live(await client.describe(job_id))[0]
    subprocess.run(
        ["docker", "exec", attempt_name(victim.id, 1), "rm", "/www/index.html"],
        check=True,
        capture_output=True,
    )
    view = await until(
        client, job_id, lambda v: healthy(v) == 2 and victim.id not in [t.id for t in live(v)]
    )
    finished = next(t for t in view.tasks if t.id == victim.id)
    assert "unhealthy" in finished.message and "404" in finished.message
    await client.kill(job_id)


async def test_crash_loop_backs_off_and_shows_degraded(cluster: Cluster) -> None:
    client = await cluster.client()
    job_id = await client.submit(web("crashy", desired=1, command="echo starting; exit 3"))
    view = await until(client, job_id, lambda v: len([t for t in v.tasks if t.reason]) >= 4, 60)
    assert view.state is JobState.DEGRADED
    assert "exited with code 3" in view.message and "backoff" in view.message
    starts = sorted(
        t.attempts[0].launched_at for t in view.tasks if t.attempts and t.attempts[0].launched_at
    )
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps[1] >= 1.5 and gaps[2] >= 3.5, gaps  # 0s, 2s, 4s, ...: growing delays
    await client.kill(job_id)
    killed = await cluster.wait_for(job_id)
    assert killed.state is JobState.KILLED


async def test_scale_up_then_down_and_invalid_requests_change_nothing(cluster: Cluster) -> None:
    client, job_id = await started_service(cluster, web("webscale"))
    await client.scale(job_id, desired=5)
    await until(client, job_id, lambda v: healthy(v) == 5 and len(live(v)) == 5)
    await client.scale(job_id, desired=2)
    view = await until(client, job_id, lambda v: len(live(v)) == 2, timeout=60)
    scaled = [t for t in view.tasks if t.reason is FinishReason.SCALED_DOWN]
    assert len(scaled) == 3
    with pytest.raises(UserError, match="min <= desired <= max"):
        await client.scale(job_id, min=4)
    with pytest.raises(UserError, match="min <= desired <= max"):
        await client.scale(job_id, desired=20)
    view = await client.describe(job_id)
    assert view.service is not None and (view.service.min, view.service.desired) == (0, 2)
    result = await asyncio.to_thread(cluster.cli, "job", "scale", job_id, "--desired", "11")
    assert result.returncode == 2 and "min <= desired <= max" in result.stderr
    await client.kill(job_id)


@pytest.mark.slow
async def test_rolling_update_keeps_capacity_then_runs_the_new_revision(cluster: Cluster) -> None:
    spec = web("webroll", update=RollingUpdate(max_surge=1, max_unavailable=0))
    client, job_id = await started_service(cluster, spec)
    new = with_command(spec, ["sh", "-c", SERVE.format(tag="v2")])
    async with Sampler(client, job_id) as sampler:
        revision = await client.update_service(job_id, new)
        assert revision == 2
        view = await until(
            client,
            job_id,
            lambda v: v.service is not None and "rolled out" in v.service.update,
            120,
        )
    assert min(sampler.samples) >= 3, sampler.samples
    assert {t.revision for t in live(view)} == {2} and healthy(view, 2) == 3
    await client.kill(job_id)


async def test_update_that_never_gets_healthy_rolls_back(cluster: Cluster) -> None:
    spec = web(
        "webback",
        update=RollingUpdate(max_surge=1, max_unavailable=0, healthy_deadline="6s"),
    )
    client, job_id = await started_service(cluster, spec)
    broken = with_command(spec, ["sleep", "300"])  # never serves: never healthy
    await client.update_service(job_id, broken)
    view = await until(
        client, job_id, lambda v: v.service is not None and "rolled back" in v.service.update, 90
    )
    view = await until(client, job_id, lambda v: healthy(v, 1) == 3 and len(live(v)) == 3, 60)
    assert {t.revision for t in live(view)} == {1}
    await client.kill(job_id)


@pytest.mark.slow
async def test_control_worker_kill9_during_rolling_update(cluster: Cluster) -> None:
    spec = web("webcrash", update=RollingUpdate(max_surge=1, max_unavailable=0))
    client, job_id = await started_service(cluster, spec)
    new = with_command(spec, ["sh", "-c", SERVE.format(tag="v2")])
    await client.update_service(job_id, new)
    await until(client, job_id, lambda v: any(t.revision == 2 for t in v.tasks))
    cluster.kill9("worker")
    await asyncio.sleep(1)
    cluster.start_worker("worker2")
    view = await until(
        client, job_id, lambda v: v.service is not None and "rolled out" in v.service.update, 120
    )
    assert {t.revision for t in live(view)} == {2} and healthy(view, 2) == 3
    await client.kill(job_id)
    await cluster.wait_for(job_id)


async def test_job_kill_stops_every_task(cluster: Cluster) -> None:
    client, job_id = await started_service(cluster, web("webend", desired=2))
    await client.kill(job_id)
    view = await cluster.wait_for(job_id, timeout=60)
    assert view.state is JobState.KILLED
    assert live(view) == []
    assert {t.reason for t in view.tasks} == {FinishReason.KILLED}
    # Its workflow failed as JobKilled, with the view (the client read it from there).
    handle = client.temporal.get_workflow_handle(job_id)
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == "JobKilled"


@pytest.mark.slow
async def test_task_kill_shrink_and_disruption_budget(cluster: Cluster) -> None:
    spec = web("webbudget", desired=3, disruption_budget=DisruptionBudget(max_unavailable=1))
    client, job_id = await started_service(cluster, spec)
    first = live(await client.describe(job_id))[0]
    assert await client.kill_task(first.id, shrink=True) == "killed"
    view = await until(client, job_id, lambda v: len(live(v)) == 2 and healthy(v) == 2)
    assert view.service is not None and view.service.desired == 2
    # With one task down for a replacement, a second voluntary kill must wait.
    third = live(view)[1]
    assert await client.kill_task(live(view)[0].id) == "killed"
    assert await client.kill_task(third.id) == "waiting for the disruption budget"
    view = await until(
        client, job_id, lambda v: third.id not in [t.id for t in live(v)] and healthy(v) == 2, 60
    )
    assert next(t for t in view.tasks if t.id == third.id).reason is FinishReason.KILLED
    await client.kill(job_id)
