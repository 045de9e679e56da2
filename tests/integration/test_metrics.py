"""Prometheus /metrics of a real worker and agent during a real batch job (issue #15).

The worker and a process-driver agent run as processes with --metrics-address
on free loopback ports; the test scrapes both while a small job runs and after
it ends (the finished counts equal `job describe`'s), and checks that no label
value is a job, task or agent id. Logs of
both processes are JSON lines carrying the task's context.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter
from collections.abc import Callable

import pytest
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Container, Resources
from titus_flow import metrics as m
from titus_flow.lifecycle import JobState
from titus_flow.metrics import Sample, parse_scrape, total

pytestmark = pytest.mark.asyncio(loop_scope="session")

TASKS = 3
SDK_LABELS = {"service_name", "namespace", "task_queue", "workflow_type", "le"}
"""What the SDK adds to titus-flow's series (workflow metrics: the control queue and type;
histograms: their buckets)."""


async def scrape(address: str) -> list[Sample]:
    """The samples ``address`` serves on /metrics (empty while it does not answer)."""

    def get() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    try:
        return parse_scrape(await asyncio.to_thread(get))
    except OSError:
        return []


def id_labels(samples: list[Sample], ids: set[str]) -> list[Sample]:
    """Samples with a label value naming one of ``ids`` (a job, task or agent).

    The SDK's own ``task_queue`` label names the agent's queue: one per agent of
    the process, bounded like its agents; titus-flow's metrics have no such label.
    """
    return [
        s
        for s in samples
        for key, value in s.labels.items()
        if any(i in value for i in ids)
        and not (key == "task_queue" and s.name.startswith("temporal_"))
    ]


async def test_worker_and_agent_metrics_follow_a_batch_job(
    cluster_factory: Callable[[], Cluster], free_port: Callable[[], int]
) -> None:
    cluster = cluster_factory()
    worker_at, agent_at = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    cluster.start("worker", "worker", "--metrics-address", worker_at)
    cluster.start_agent(
        "proc",
        "--driver",
        "process",
        "--cpu",
        "4",
        "--memory",
        "4Gi",
        "--metrics-address",
        agent_at,
    )
    client = await cluster.wait_for_agents(1)

    async def serving() -> bool:
        worker, agent = await scrape(worker_at), await scrape(agent_at)
        return (
            total(worker, m.PROCESS_INFO, role="worker") == 1
            and total(agent, m.PROCESS_INFO, role="agent") == 1
            and any(s.name.startswith("temporal_") for s in worker)
        )

    await eventually(serving, 20, "both processes to serve /metrics")
    job_id = await client.submit(
        BatchJob(
            name="metered",
            instances=TASKS,
            container=Container(image="busybox:latest", command=["sh", "-c", "sleep 3"]),
            resources=Resources(cpu=0.01, memory=8, disk=0, network_mbps=0),
        )
    )
    running = m.AGENT_TASKS_RUNNING

    async def tasks_running() -> bool:
        return total(await scrape(agent_at), running, driver="process") >= 1

    await eventually(tasks_running, 30, "the agent to report running tasks")
    transitions = f"{m.TASK_TRANSITIONS}_total"
    during = await scrape(worker_at)
    assert total(during, transitions, job_type="batch", state="Launched") >= 1
    view = await cluster.wait_for(job_id, timeout=40)
    assert view.state is JobState.SUCCEEDED, view

    async def settled() -> bool:
        agent = await scrape(agent_at)
        launched = total(agent, f"{m.AGENT_LAUNCHES}_total", driver="process", result="ok")
        return launched == TASKS and total(agent, running, driver="process") == 0

    await eventually(settled, 15, f"{TASKS} launches counted and none running")
    worker, agent = await scrape(worker_at), await scrape(agent_at)
    # The finished counts are those `job describe` shows, reason by reason.
    described = await asyncio.to_thread(cluster.cli, "job", "describe", job_id, "-o", "json")
    assert described.returncode == 0, described.stderr
    finished = Counter(
        t["reason"] for t in json.loads(described.stdout)["tasks"] if t["state"] == "Finished"
    )
    assert finished == {"normal": TASKS}
    for reason, count in finished.items():
        assert total(worker, transitions, state="Finished", reason=reason) == count
    assert total(worker, transitions, state="Finished") == TASKS
    # A task still ran at the scrape during the job: its finish came after.
    assert total(during, transitions, state="Finished") < TASKS
    assert total(worker, f"{m.JOBS_FINISHED}_total", job_type="batch", state="Succeeded") == 1
    ids = {job_id, cluster.agent_id("proc"), *(t.id for t in view.tasks)}
    assert id_labels(worker + agent, ids) == []
    assert {key for s in worker + agent if s.name.startswith(m.PREFIX) for key in s.labels} <= (
        m.LABEL_KEYS | SDK_LABELS
    )

    lines = (cluster.home / "logs" / "agent-proc.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    tasks = {r["task_id"] for r in records if r.get("job_id") == job_id and "activity_id" in r}
    assert tasks == {t.id for t in view.tasks}, records[-10:]
