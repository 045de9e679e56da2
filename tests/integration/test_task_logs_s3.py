"""Task logs off the host (issue 15, item 3): a real agent uploads each ended attempt's
log to S3 (moto_server on 127.0.0.1), and `titus-flow task logs` reads it there once the
agent no longer keeps it, or is gone; an S3 that does not answer fails no task.

Process driver: the upload and the reading are the same for both drivers.
"""

# ruff: noqa: F811  (the moto fixtures are imported from test_fleet_moto, then requested)

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from collections.abc import Callable

import boto3
import pytest
from test_fleet_moto import AWS_ENV, REGION, Moto, aws_env, moto  # noqa: F401  (fixtures)
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Container, Resources
from titus_flow.lifecycle import FinishReason
from titus_flow.log_store import LogLocation, parse_url
from titus_flow.metrics import LOG_UPLOADS, parse_scrape, total

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

LINES = [f"line {n} of the output" for n in range(50)]
SCRIPT = "; ".join(f"echo '{line}'" for line in LINES) + "; echo 'to stderr' >&2"


def s3_cluster(make: Callable[[], Cluster], endpoint: str, bucket: str, metrics_at: str) -> Cluster:
    """A worker and a process-driver agent that uploads logs to ``bucket`` at ``endpoint``."""
    cluster = make()
    cluster.env.update(AWS_ENV, AWS_ENDPOINT_URL_S3=endpoint, TITUS_FLOW_LOG_BUCKET=bucket)
    cluster.start_worker()
    cluster.start_agent(
        "local",
        *("--driver", "process", "--cpu", "2", "--memory", "2Gi", "--log-prefix", "runs"),
        *("--metrics-address", metrics_at),
    )
    return cluster


async def uploads_counted(metrics_at: str, result: str) -> float:
    """The agent's ``titus_flow_log_uploads{result}`` as its /metrics shows it now."""

    def get() -> str:
        with urllib.request.urlopen(f"http://{metrics_at}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    scraped = parse_scrape(await asyncio.to_thread(get))
    return total(scraped, f"{LOG_UPLOADS}_total", result=result)


async def run_job(cluster: Cluster) -> tuple[str, str]:
    """Run one task printing LINES (and a stderr line) to its end; the job and task ids."""
    client = await cluster.wait_for_agents(1)
    job_id = await client.submit(
        BatchJob(
            name="printer",
            container=Container(image="busybox:latest", command=["sh", "-c", SCRIPT]),
            resources=Resources(cpu=0.1, memory=32, disk=0),
        )
    )
    view = await cluster.wait_for(job_id, timeout=60)
    assert view.tasks[0].reason is FinishReason.NORMAL, view
    return job_id, view.tasks[0].id


async def test_task_logs_reads_s3_once_the_agent_has_no_copy(
    cluster_factory: Callable[[], Cluster],
    moto: Moto,
    free_port: Callable[[], int],
) -> None:
    bucket = "task-logs"
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto.url)
    s3.create_bucket(Bucket=bucket)
    metrics_at = f"127.0.0.1:{free_port()}"
    cluster = s3_cluster(cluster_factory, moto.url, bucket, metrics_at)
    job_id, task_id = await run_job(cluster)
    expected = "\n".join([*LINES, "to stderr"]) + "\n"

    # The attempt names its log; the object lands at the documented key.
    key = LogLocation(bucket, "runs").key(task_id, 1)
    described = await asyncio.to_thread(cluster.cli, "job", "describe", job_id, "-o", "json")
    assert described.returncode == 0, described.stderr
    log = json.loads(described.stdout)["tasks"][0]["attempts"][0]["log"]
    assert parse_url(log["url"]) == (bucket, key)

    async def uploaded() -> bool:
        return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))

    await eventually(uploaded, 30, f"s3://{bucket}/{key}")
    assert await uploads_counted(metrics_at, "uploaded") == 1

    # The agent runs but pruned its copy: read from S3.
    logs_dir = cluster.home / "agents" / cluster.agent_id("local") / "logs"
    shutil.rmtree(logs_dir / task_id)
    pruned = await asyncio.to_thread(cluster.cli, "task", "logs", task_id)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout == expected

    # Neither has it: one line, exit 1, no traceback.
    blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.delete_object(Bucket=bucket, Key=key)
    missing = await asyncio.to_thread(cluster.cli, "task", "logs", task_id)
    assert missing.returncode == 1, missing.stderr
    assert f"s3://{bucket}/{key} does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    s3.put_object(Bucket=bucket, Key=key, Body=blob)

    # The agent is gone, its log directory with it.
    cluster.kill9("agent-local")
    shutil.rmtree(logs_dir)
    gone = await asyncio.to_thread(cluster.cli, "task", "logs", task_id, "-o", "json")
    assert gone.returncode == 0, gone.stderr
    chunk = json.loads(gone.stdout)
    assert (chunk["data"], chunk["complete"], chunk["attempt"]) == (expected, True, 1)


async def test_an_s3_that_does_not_answer_fails_no_task(
    cluster_factory: Callable[[], Cluster],
    free_port: Callable[[], int],
    aws_env: None,
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    metrics_at = f"127.0.0.1:{free_port()}"
    cluster = s3_cluster(cluster_factory, unreachable, "task-logs", metrics_at)
    job_id, task_id = await run_job(cluster)
    described = await asyncio.to_thread(cluster.cli, "job", "describe", job_id, "-o", "json")
    log = json.loads(described.stdout)["tasks"][0]["attempts"][0]["log"]
    assert log["uploaded"] is False
    # The agent still has the log, so `task logs` reads it there as before.
    kept = await asyncio.to_thread(cluster.cli, "task", "logs", task_id)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines()[0] == LINES[0]
    agent_log = (cluster.home / "logs" / "agent-local.log").read_text()
    assert "uploading s3://task-logs/" in agent_log and "failed" in agent_log
    assert await uploads_counted(metrics_at, "error") >= 1
