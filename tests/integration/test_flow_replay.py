"""`titus-flow replay`: a history recorded on the dev server, replayed against changed code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_fork import run_cli
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from titus_cluster import Cluster, eventually

from titus_flow import stack
from titus_flow.client import JobNotFoundError
from titus_flow.flow import safe_id
from titus_flow.userflows import find_workflow
from titus_flow.worker import SANDBOX

pytestmark = pytest.mark.asyncio(loop_scope="session")

TINY = """
from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="Tiny")
class Tiny:
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.sleep(timedelta(milliseconds=100))
        {change}
        return f"hello {{name}}"
"""


def replay(history: Path, target: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``titus-flow replay HISTORY TARGET [OPTIONS]`` outside any cluster."""
    return run_cli(
        ["replay", str(history), target, *options],
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TITUS_FLOW_")},
    )


async def test_replay_passes_unchanged_code_and_catches_non_determinism(
    dev_server: str, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    v1 = tmp_path / f"tiny_v1_{suffix}.py"
    v1.write_text(TINY.format(change="pass"))
    v2 = tmp_path / f"tiny_v2_{suffix}.py"  # one more timer: a non-deterministic change
    v2.write_text(TINY.format(change="await workflow.sleep(timedelta(milliseconds=100))"))
    cosmetic = tmp_path / f"tiny_v3_{suffix}.py"  # no new command: still deterministic
    cosmetic.write_text(TINY.format(change="workflow.logger.info('done')"))

    client = await Client.connect(dev_server, data_converter=pydantic_data_converter)
    queue = f"replay-{suffix}"
    async with Worker(
        client, task_queue=queue, workflows=[find_workflow(f"{v1}:Tiny")], workflow_runner=SANDBOX
    ):
        handle = await client.start_workflow("Tiny", "replay", id=queue, task_queue=queue)
        assert await handle.result() == "hello replay"
    history = tmp_path / "tiny-history.json"
    history.write_text((await handle.fetch_history()).to_json())

    ok = await asyncio.to_thread(replay, history, f"{v1}:Tiny")
    assert ok.returncode == 0, ok
    assert (await asyncio.to_thread(replay, history, f"{cosmetic}:Tiny")).returncode == 0
    changed = await asyncio.to_thread(replay, history, f"{v2}:Tiny")
    assert changed.returncode == 1, changed
    assert changed.stderr.startswith("non-determinism: at event "), changed.stderr
    assert "Nondeterminism error" in changed.stderr
    assert len(changed.stderr.splitlines()) == 1, changed.stderr  # no core log lines

    wrong_class = await asyncio.to_thread(replay, history, f"{v1}:Nope")
    assert wrong_class.returncode == 2 and "no workflow 'Nope'" in wrong_class.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert (await asyncio.to_thread(replay, bad, f"{v1}:Tiny")).returncode == 2
    other = tmp_path / f"other_{suffix}.py"
    other.write_text(TINY.format(change="pass").replace('name="Tiny"', 'name="Other"'))
    mismatch = await asyncio.to_thread(replay, history, f"{other}:Other")
    assert mismatch.returncode == 2 and "history is of workflow 'Tiny'" in mismatch.stderr


# --- histories of workflows that use titus_flow.flow, recorded on a real cluster --------

EXAMPLES = Path(__file__).parents[2] / "examples"
PIPELINE = str(EXAMPLES / "pipeline.py")
CANARY = str(EXAMPLES / "canary.py")
NIGHTLY = str(EXAMPLES / "nightly.py")
JOB_DAG = "titus_flow.workflows.dag:JobDag"  # what a scheduled job file runs as

# A user's release workflow with every titus_flow.flow step; its jobs need no Docker.
RELEASE = """
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow import BatchJob, Capacity, Container, Resources, ServiceJob
    from titus_flow.contracts import CanaryCheckInput
    from titus_flow.flow import (
        canary, deploy_service, gather_jobs, outputs, run_job, update_service,
    )

SMALL = Resources(cpu=0.1, memory="32Mi", disk=0)


def step(name: str, script: str) -> BatchJob:
    command = ["sh", "-c", script]
    return BatchJob(name=name, container=Container(image="busybox:latest", command=command),
                    resources=SMALL)


def api(version: str) -> ServiceJob:
    container = Container(image="busybox:latest", command=["sleep", "600"],
                          env={{"VERSION": version}})
    return ServiceJob(name="api", container=container, resources=SMALL,
                      capacity=Capacity(min=1, desired=1, max=2))


@activity.defn
async def canary_ok(request: CanaryCheckInput) -> bool:
    return any(t.revision == request.revision for t in request.view.tasks)


@workflow.defn(name="Release")
class Release:
    @workflow.run
    async def run(self) -> str:
        {change}
        build = await run_job(step("build", 'echo 2 > "$TITUS_OUTPUT_PATH"'))
        await gather_jobs([step(f"test-{{i}}", "true") for i in range(3)], max_concurrent=2)
        service = await deploy_service(api("v1"))
        await update_service(service.id, api(f"v{{outputs(build)[0]}}"))
        result = await canary(service.id, api("v3"), hold=timedelta(0), check=canary_ok)
        return f"{{service.id}} promoted={{result.promoted}}"
"""


async def start(cluster: Cluster, target: str, workflow_id: str, **params: object) -> Any:
    """``titus-flow start TARGET --id ID [--input JSON]``; the workflow's result."""
    options = ("--input", json.dumps(params)) if params else ()
    started = await asyncio.to_thread(cluster.cli, "start", target, "--id", workflow_id, *options)
    assert started.returncode == 0, started.stderr
    return await result_of(cluster, workflow_id)


async def result_of(cluster: Cluster, workflow_id: str) -> Any:
    """Wait for a workflow of the cluster to complete; its result."""
    handle = (await cluster.client()).temporal.get_workflow_handle(workflow_id)
    try:
        return await asyncio.wait_for(handle.result(), 240)
    except (TimeoutError, WorkflowFailureError) as err:
        raise AssertionError(f"{workflow_id}: {err!r} {err.__cause__}\n{cluster.logs()}") from None


async def run_schedule_once(cluster: Cluster, name: str, target: str) -> str:
    """Schedule ``target``, trigger one run and wait for it to end; the run's workflow id."""
    created = await asyncio.to_thread(
        cluster.cli, "schedule", "create", name, "--every", "12h", target
    )
    assert created.returncode == 0, created.stderr
    schedule = (await cluster.client()).temporal.get_schedule_handle(name)
    try:
        await schedule.trigger()
        runs: list[str] = []

        async def started() -> bool:
            actions = (await schedule.describe()).info.recent_actions
            runs[:] = [getattr(a.action, "workflow_id", "") for a in actions]
            return bool(runs)

        await eventually(started, 30, f"schedule {name} to start a run")
        await result_of(cluster, runs[0])
        return runs[0]
    finally:
        await schedule.delete()


async def kill_service(cluster: Cluster, job_id: str, wait: bool) -> None:
    """Kill a service job if it was started; with ``wait``, until its workflow has ended.

    Process-driver tasks outlive their agent, so their job must end first; the
    cluster's teardown removes containers itself.
    """
    client = await cluster.client()
    try:
        await client.kill(job_id)
    except JobNotFoundError:
        return
    if wait:
        with contextlib.suppress(WorkflowFailureError):  # however a killed job ends
            await asyncio.wait_for(client.temporal.get_workflow_handle(job_id).result(), 60)


async def record(cluster: Cluster, workflow_id: str, folder: Path) -> Path:
    """``temporal workflow show -w ID -o json > FILE``, as the docs record a history."""
    shown = await asyncio.to_thread(
        subprocess.run,
        [str(stack.temporal_binary()), "workflow", "show", "-w", workflow_id, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**cluster.env, "TEMPORAL_ADDRESS": cluster.address},
    )
    assert shown.returncode == 0, shown.stderr
    path = folder / f"{safe_id(workflow_id)}.json"
    path.write_text(shown.stdout)
    return path


async def replay_all(
    cases: list[tuple[Path, str, tuple[str, ...], int]],
) -> list[subprocess.CompletedProcess[str]]:
    """Run every ``(history, target, options, expected exit)`` replay at once and check
    each exit code, and that stderr holds at most our one-line message (no core logs)."""
    runs = await asyncio.gather(
        *(asyncio.to_thread(replay, path, target, *options) for path, target, options, _ in cases)
    )
    wrong = [
        (run.args[3:], run.returncode, run.stdout, run.stderr)
        for run, (*_, code) in zip(runs, cases, strict=True)
        if run.returncode != code
    ]
    assert not wrong, wrong
    for run, (*_, code) in zip(runs, cases, strict=True):
        assert run.stdout.startswith("ok: ") if code == 0 else not run.stdout, run
        assert len(run.stderr.splitlines()) == (code != 0), run.stderr
    return runs


@pytest.mark.slow
async def test_replay_passes_recorded_flow_workflows_and_names_the_changed_event(
    cluster_factory: Callable[[], Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory()
    queue = cluster.control_queue
    release = tmp_path / f"release_{queue}.py"
    release.write_text(RELEASE.format(change="pass"))
    cluster.start("worker", "worker", "--workflows", PIPELINE, "--workflows", str(release))
    cluster.start_agent("local", "--driver", "process", "--cpu", "2", "--memory", "2Gi")
    pipeline_id, release_id = f"pipeline-{queue}", f"release-{queue}"
    try:
        async with asyncio.TaskGroup() as runs:  # a failure cancels the other runs
            runs.create_task(
                start(cluster, f"{PIPELINE}:Pipeline", pipeline_id, chunks=3, encode_seconds=0)
            )
            released = runs.create_task(start(cluster, f"{release}:Release", release_id))
            scheduled = runs.create_task(run_schedule_once(cluster, f"nightly-{queue}", NIGHTLY))
    finally:
        await kill_service(cluster, f"{release_id}-api-1", wait=True)
    assert released.result() == f"{release_id}-api-1 promoted=True"
    nightly_id = scheduled.result()
    assert ":" in nightly_id  # a scheduled run's id ends with its time
    pipeline, nightly, recorded = await asyncio.gather(
        *(record(cluster, wid, tmp_path) for wid in (pipeline_id, nightly_id, release_id))
    )
    changed = tmp_path / f"release_changed_{queue}.py"  # one more job, before the build
    changed.write_text(RELEASE.format(change='await run_job(step("lint", "true"))'))
    old_server = tmp_path / "release-without-id.json"  # as older servers record it
    data = json.loads(recorded.read_text())
    del data["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    old_server.write_text(json.dumps(data))

    runs = await replay_all(
        [
            (pipeline, f"{PIPELINE}:Pipeline", (), 0),
            (nightly, JOB_DAG, (), 0),
            (recorded, f"{release}:Release", (), 0),
            (old_server, f"{release}:Release", ("--workflow-id", release_id), 0),
            (recorded, f"{changed}:Release", (), 1),
            (old_server, f"{release}:Release", (), 2),
            (recorded, f"{release}:Release", ("--workflow-id", "other"), 2),
        ]
    )
    # The changed code starts "lint" where the history started "build": that event is named.
    build_event = next(
        e["eventId"]
        for e in json.loads(recorded.read_text())["events"]
        if e.get("startChildWorkflowExecutionInitiatedEventAttributes", {}).get("workflowId")
        == f"{release_id}-build-1"
    )
    where = f"non-determinism: at event {build_event} (StartChildWorkflowExecutionInitiated): "
    assert runs[4].stderr.startswith(where), runs[4].stderr
    assert f"{release_id}-build-1" in runs[4].stderr and f"{release_id}-lint-1" in runs[4].stderr
    assert "pass --workflow-id ID" in runs[5].stderr, runs[5].stderr
    assert f"workflow id {release_id!r}, not --workflow-id 'other'" in runs[6].stderr


@pytest.mark.slow
@pytest.mark.docker
async def test_replay_passes_recorded_canary_example_workflows(
    cluster_factory: Callable[[], Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory()
    cluster.start("worker", "worker", "--workflows", CANARY)
    cluster.start_agent("local", "--cpu", "2", "--memory", "2Gi")
    job_id = f"web-{cluster.control_queue}"
    deploy_id, canary_id = f"deploy-{job_id}", f"canary-{job_id}"
    web = {"job_id": job_id, "desired": 1}  # the canary moves the one task
    try:
        await start(cluster, f"{CANARY}:DeployWeb", deploy_id, version="v1", **web)
        out = await start(
            cluster, f"{CANARY}:CanaryWeb", canary_id, version="v2", hold_seconds=0, **web
        )
        assert out.startswith("v2 promoted"), out
    finally:
        await kill_service(cluster, job_id, wait=False)
    deployed, canaried = await asyncio.gather(
        *(record(cluster, wid, tmp_path) for wid in (deploy_id, canary_id))
    )
    await replay_all(
        [(deployed, f"{CANARY}:DeployWeb", (), 0), (canaried, f"{CANARY}:CanaryWeb", (), 0)]
    )
