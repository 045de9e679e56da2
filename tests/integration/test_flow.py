"""Workflow-as-code end to end: real dev server, worker and docker agent processes.

The worker loads examples/pipeline.py with `--workflows`, as users run it; the
pipeline's jobs run as real containers (issue: workflow-as-code).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from titus_cluster import Cluster, max_overlap

from titus_flow.lifecycle import JobState
from titus_flow.views import JobView

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

EXAMPLES = Path(__file__).parents[2] / "examples"
PIPELINE = str(EXAMPLES / "pipeline.py")


@pytest.fixture
def flow_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A cluster whose worker also runs examples/pipeline.py's workflows."""
    c = cluster_factory()
    c.start("worker", "worker", "--workflows", PIPELINE)
    c.start_agent("local", "--cpu", "2", "--memory", "2Gi")
    return c


def run_window(view: JobView) -> tuple[datetime, datetime]:
    """When the job's (single) task's container started and finished."""
    attempt = view.tasks[0].attempts[-1]
    assert attempt.started_at and attempt.finished_at, view
    return attempt.started_at, attempt.finished_at


async def jobs_under(cluster: Cluster, prefix: str) -> list[dict[str, str]]:
    """Jobs (as `titus-flow jobs list -o json` rows) whose id starts with ``prefix``.

    Through the Python client the CLI uses: tests poll this twice a second, and a
    CLI process a poll cost ~0.7 s of CPU (`jobs list` itself is tested by test_cli).
    """
    rows = await (await cluster.client()).list_jobs(limit=1000)
    return [
        {key: value or "" for key, value in row.items()}
        for row in rows
        if str(row["id"]).startswith(prefix)
    ]


async def test_pipeline_runs_end_to_end_within_the_fan_out_bound(flow_cluster: Cluster) -> None:
    pipeline_id = f"pipeline-{secrets.token_hex(3)}"
    params = {"chunks": 4, "max_concurrent": 2, "encode_seconds": 2}
    result = await asyncio.to_thread(
        flow_cluster.cli,
        "start",
        f"{PIPELINE}:Pipeline",
        "--input",
        json.dumps(params),
        "--id",
        pipeline_id,
        "--wait",
        "-o",
        "json",
        timeout=240,
    )
    assert result.returncode == 0, (result.stdout, result.stderr, flow_cluster.logs())
    out = json.loads(result.stdout)["result"]
    chunks = [f"chunk-{i}" for i in range(1, 5)]
    assert out["chunks"] == chunks  # split's output drove the fan-out
    assert [part["chunk"] for part in out["encoded"]] == chunks
    assert out["merged"] == {"parts": [c.upper() for c in chunks], "count": 4}  # merge saw all
    client = await flow_cluster.client()
    views = [await client.describe(job_id) for job_id in out["job_ids"]]
    assert all(v.state is JobState.SUCCEEDED for v in views), views
    encodes = views[1:-1]
    assert [v.name for v in encodes] == [f"encode-{c}" for c in chunks]
    assert max_overlap([run_window(v) for v in encodes]) <= 2
    # Steps ran in order: every encode started after split ended, merge after them all.
    assert all(run_window(v)[0] >= run_window(views[0])[1] for v in encodes)
    assert run_window(views[-1])[0] >= max(run_window(v)[1] for v in encodes)
    # The child jobs carry the search attributes: `jobs list` shows each step once.
    listed = await jobs_under(flow_cluster, f"{pipeline_id}-")
    assert sorted(row["name"] for row in listed) == sorted(v.name for v in views)
    assert {row["state"] for row in listed} == {"Succeeded"}


@pytest.mark.slow
async def test_worker_kill9_mid_fan_out_completes_and_runs_each_step_once(
    flow_cluster: Cluster,
) -> None:
    pipeline_id = f"pipeline-crash-{secrets.token_hex(3)}"
    params = {"chunks": 6, "max_concurrent": 2, "encode_seconds": 3}
    started = await asyncio.to_thread(
        flow_cluster.cli,
        "start",
        f"{PIPELINE}:Pipeline",
        "--input",
        json.dumps(params),
        "--id",
        pipeline_id,
    )
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # until the fan-out is under way
        rows = await jobs_under(flow_cluster, f"{pipeline_id}-encode-")
        if rows:
            break
        await asyncio.sleep(0.3)
    else:
        raise AssertionError(f"no encode job ran:\n{flow_cluster.logs()}")
    flow_cluster.kill9("worker")
    await asyncio.sleep(1.0)
    flow_cluster.start("worker2", "worker", "--workflows", PIPELINE)
    client = await flow_cluster.client()
    handle = client.temporal.get_workflow_handle(pipeline_id)
    try:
        out: dict[str, Any] = await asyncio.wait_for(handle.result(), 240)
    except TimeoutError:
        raise AssertionError(f"pipeline did not finish:\n{flow_cluster.logs()}") from None
    assert out["merged"]["count"] == 6
    listed = await jobs_under(flow_cluster, f"{pipeline_id}-")
    per_step = Counter(row["name"] for row in listed)
    expected = ["split", *(f"encode-chunk-{i}" for i in range(1, 7)), "merge"]
    assert per_step == Counter(expected), listed  # no step started twice
    assert {row["state"] for row in listed} == {"Succeeded"}
    views = [await client.describe(f"{pipeline_id}-{name}-1") for name in expected]
    assert all(len(v.tasks[0].attempts) == 1 for v in views), views  # nor ran twice
    assert max_overlap([run_window(v) for v in views[1:-1]]) <= 2


async def test_start_of_unknown_workflow_exits_2(flow_cluster: Cluster) -> None:
    missing = await asyncio.to_thread(flow_cluster.cli, "start", f"{PIPELINE}:Nope")
    assert missing.returncode == 2, missing
    assert "no workflow 'Nope'" in missing.stderr and "Pipeline" in missing.stderr
    not_workflow = await asyncio.to_thread(flow_cluster.cli, "start", f"{PIPELINE}:split_job")
    assert not_workflow.returncode == 2, not_workflow
    assert "is not a workflow" in not_workflow.stderr


async def test_depends_on_file_runs_in_dependency_order(cluster: Cluster) -> None:
    result = await asyncio.to_thread(
        cluster.cli, "run", str(EXAMPLES / "dag.yaml"), "-o", "json", timeout=180
    )
    assert result.returncode == 0, (result.stdout, result.stderr, cluster.logs())
    out = json.loads(result.stdout)
    views = {name: JobView.model_validate(v) for name, v in out["views"].items()}
    assert set(views) == {"extract", "transform", "report", "archive"}
    assert all(v.state is JobState.SUCCEEDED for v in views.values())
    assert views["extract"].tasks[0].output == [1, 2, 3]
    for job, dep in [("transform", "extract"), ("report", "transform"), ("archive", "transform")]:
        assert run_window(views[job])[0] >= run_window(views[dep])[1], (job, dep)
    assert views["report"].id == f"{out['dag']}-report"


async def test_failed_dependency_skips_dependents_and_fails_the_dag(
    cluster: Cluster, tmp_path: Path
) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(
        """
x-task: &task
  resources: {cpu: 0.1, memory: 32Mi, disk: 0}
  container: {image: busybox:latest, command: "true"}
jobs:
  - {<<: *task, name: first, container: {image: busybox:latest, command: "sh -c 'exit 3'"}}
  - {<<: *task, name: second, depends_on: [first]}
  - {<<: *task, name: third, depends_on: [second]}
  - {<<: *task, name: alone}
"""
    )
    result = await asyncio.to_thread(cluster.cli, "run", str(spec), timeout=180)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "job(s) failed: first Failed" in result.stderr, result.stderr
    assert "second (dependency first did not succeed)" in result.stderr
    assert "third (dependency second did not succeed)" in result.stderr
    assert "alone" in result.stderr and "Succeeded" in result.stderr
    # The failed job's workflow failed (red in the Web UI), the other completed.
    client = await cluster.client()
    for name, status in (
        ("first", WorkflowExecutionStatus.FAILED),
        ("alone", WorkflowExecutionStatus.COMPLETED),
    ):
        found = re.search(rf"{name} \((\S+)\): ", result.stderr)
        assert found, result.stderr
        handle = client.temporal.get_workflow_handle(found[1])
        assert (await handle.describe()).status is status, name


async def test_schedule_trigger_runs_a_job_listed_in_jobs_list(cluster: Cluster) -> None:
    name = f"nightly-{cluster.control_queue}"
    nightly = str(EXAMPLES / "nightly.py")
    created = await asyncio.to_thread(
        cluster.cli, "schedule", "create", name, "--every", "12h", "--overlap", "skip", nightly
    )
    assert created.returncode == 0, created.stderr
    try:
        again = await asyncio.to_thread(
            cluster.cli, "schedule", "create", name, "--every", "12h", nightly
        )
        assert again.returncode == 2 and "already exists" in again.stderr, again
        listed = await asyncio.to_thread(cluster.cli, "schedule", "list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        [row] = [r for r in json.loads(listed.stdout) if r["name"] == name]
        assert row["workflow"] == "JobDag" and not row["paused"]
        for verb in ("pause", "unpause", "trigger"):
            done = await asyncio.to_thread(cluster.cli, "schedule", verb, name)
            assert done.returncode == 0, (verb, done.stderr)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rows = await jobs_under(cluster, f"{name}-")
            if rows and rows[0]["state"] == "Succeeded":
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"no scheduled run succeeded: {rows}\n{cluster.logs()}")
        assert [(r["name"], r["type"]) for r in rows] == [("nightly-report", "batch")]
        view = await (await cluster.client()).describe(rows[0]["id"])
        assert view.tasks[0].output == {"rows": 42}
    finally:
        deleted = await asyncio.to_thread(cluster.cli, "schedule", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    gone = await asyncio.to_thread(cluster.cli, "schedule", "trigger", name)
    assert gone.returncode == 2 and "no schedule" in gone.stderr, gone


async def test_scheduled_user_workflow_runs_its_jobs(flow_cluster: Cluster) -> None:
    name = f"pipe-{flow_cluster.control_queue}"
    params = json.dumps({"chunks": 1, "encode_seconds": 0})
    created = await asyncio.to_thread(
        flow_cluster.cli,
        "schedule",
        "create",
        name,
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Europe/Paris",
        f"{PIPELINE}:Pipeline",
        "--input",
        params,
    )
    assert created.returncode == 0, created.stderr
    try:
        listed = await asyncio.to_thread(flow_cluster.cli, "schedule", "list", "-o", "json")
        [row] = [r for r in json.loads(listed.stdout) if r["name"] == name]
        assert row["workflow"] == "Pipeline" and row["spec"] == "cron 0 3 * * * (Europe/Paris)"
        triggered = await asyncio.to_thread(flow_cluster.cli, "schedule", "trigger", name)
        assert triggered.returncode == 0, triggered.stderr
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rows = await jobs_under(flow_cluster, f"{name}-")
            if any(r["name"] == "merge" and r["state"] == "Succeeded" for r in rows):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"the scheduled pipeline did not finish: {rows}")
        # The run's id ends with its time (with ':'); its jobs' ids are container-safe.
        assert sorted(r["name"] for r in rows) == ["encode-chunk-1", "merge", "split"]
        assert all(":" not in r["id"] for r in rows), rows
    finally:
        await asyncio.to_thread(flow_cluster.cli, "schedule", "delete", name)
