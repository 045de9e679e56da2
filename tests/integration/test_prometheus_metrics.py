"""A custom metric scraped from a task's Prometheus endpoint by its agent.

Real dev server, control worker and process-driver agent: one task serves a
static ``/metrics`` file with busybox httpd on 127.0.0.1; the job's policy reads
``queue_depth{queue="high"}`` from it (``metric_source.prometheus``). The
agent's ``scrape_metric`` activity fetches and parses it before each
evaluation, and the job's ``autoscaling`` query shows the value. A second
policy reads a counter as a rate, a third a quantile of a histogram; a fourth
reads a path that is not served, and the query and ``titus-flow job
autoscaling`` show why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Container, Resources, ServiceJob, TcpCheck
from titus_flow.spec import (
    Autoscaling,
    MetricSource,
    PrometheusSource,
    TargetTrackingPolicy,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A counter of 10 a second (from the clock, so however slow the machine), written
# to the file httpd serves, beside the static gauges.
# A histogram of 10 observations a second too: 5 up to 0.1, 4 more up to 0.5, 1 above,
# after 1000 observations up to 0.1 before the task started (so its quantile since the
# start is under 0.1: only rates between scrapes give 0.3).
BUCKETS = (
    'latency_seconds_bucket{le=\\"0.1\\"} %d\\n'
    'latency_seconds_bucket{le=\\"0.5\\"} %d\\n'
    'latency_seconds_bucket{le=\\"+Inf\\"} %d\\n'
)
COUNT = (
    "s=$(date +%s); "
    'while :; do t=$(date +%s); echo "requests_total $(( t * 10 ))" > "$ROOT/counter.new"'
    f' && printf "{BUCKETS}" $((1000 + (t - s) * 5)) $((1000 + (t - s) * 9))'
    ' $((1000 + (t - s) * 10)) >> "$ROOT/counter.new"'
    ' && cat "$ROOT/gauges" "$ROOT/counter.new" > "$ROOT/metrics.new"'
    ' && mv "$ROOT/metrics.new" "$ROOT/metrics"; sleep 0.2; done'
)
SERVE = f'({COUNT}) & exec busybox httpd -f -p "127.0.0.1:$PORT_METRICS" -h "$ROOT"'
EXPOSITION = """\
# HELP queue_depth Jobs waiting, by queue.
# TYPE queue_depth gauge
queue_depth{queue="high"} 25
queue_depth{queue="low"} 1000
"""


def reading(
    name: str, metric: str, target: float, source: PrometheusSource
) -> TargetTrackingPolicy:
    """A target-tracking policy on ``metric``, read from the task by ``source``."""
    return TargetTrackingPolicy(
        name=name, metric=metric, target=target, metric_source=MetricSource(prometheus=source)
    )


@pytest.fixture
def proc_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A control worker and a process-driver agent."""
    cluster = cluster_factory()
    cluster.start_worker()
    cluster.start_agent("prom", "--driver", "process", "--cpu", "1", "--memory", "1Gi")
    return cluster


async def test_the_job_reads_its_tasks_metric(proc_cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "gauges").write_text(EXPOSITION)
    source = PrometheusSource(port="metrics", metric="queue_depth", labels={"queue": "high"})
    counter = PrometheusSource(port="metrics", metric="requests_total", rate=True)
    histogram = PrometheusSource(port="metrics", metric="latency_seconds", quantile=0.7)
    missing = PrometheusSource(port="metrics", path="/nothing-here", metric="queue_depth")
    job = ServiceJob(
        name="promq",
        container=Container(
            image="busybox:latest",
            command=["sh", "-c", SERVE],
            ports=["metrics"],
            env={"ROOT": str(tmp_path)},
        ),
        resources=Resources(cpu=0.1, memory=16, disk=0, network_mbps=0),
        capacity=Capacity(min=1, desired=1, max=1),
        health_check=TcpCheck(port="metrics", interval="1s"),
        autoscaling=Autoscaling(
            policies=[
                reading("queue", "custom:queue_depth", 10, source),
                reading("requests", "custom:requests", 100, counter),
                reading("latency", "custom:p70", 1, histogram),
                reading("missing", "custom:missing", 1, missing),
            ],
            interval="1s",
            window="10s",
        ),
    )
    client = await proc_cluster.client()
    job_id = await client.submit(job)
    try:

        async def scraped() -> bool:
            view = await client.autoscaling(job_id)
            read = {"custom:queue_depth", "custom:requests", "custom:p70"} <= view.metrics.keys()
            return read and "custom:missing" in view.read_errors

        await eventually(scraped, 60, "queue_depth scraped from the task")
        view = await client.autoscaling(job_id)
        paused = proc_cluster.cli("job", "autoscaling", job_id, "--pause")
        assert paused.returncode == 0 and ": autoscaling paused, every 1s" in paused.stdout
        assert (await client.autoscaling(job_id)).paused
        resumed = proc_cluster.cli("job", "autoscaling", job_id, "--resume", "-o", "json")
        assert resumed.returncode == 0 and '"paused": false' in resumed.stdout, resumed
    finally:
        await client.kill(job_id)
        await proc_cluster.wait_for(job_id, timeout=60)
    assert view.metrics["custom:queue_depth"] == pytest.approx(25.0)
    # A rate, not the counter's value (10 x the epoch seconds); the clock ticks by whole
    # seconds, so each scrape sees 0, 10 or 20 more a second: their average over the window.
    assert 3 <= view.metrics["custom:requests"] <= 20, view.metrics
    # The 0.7 quantile of the observations: rank 7 of 10 a second, 2 into the 4 of
    # (0.1, 0.5]: 0.1 + 0.4 * 2 / 4 (whatever the seconds between scrapes).
    assert view.metrics["custom:p70"] == pytest.approx(0.3), view.metrics
    assert "custom:missing" not in view.metrics
    assert "404" in view.read_errors["custom:missing"], view.read_errors
    assert set(view.read_errors) == {"custom:missing"}
    shown = proc_cluster.cli("job", "autoscaling", job_id)
    assert "no data (read failing)" in shown.stdout
    assert "custom:missing: not read at " in shown.stdout and "404" in shown.stdout
    # The policy wants ceil(1 * 25 / 10) = 3 tasks, held at the max of 1.
    assert any(
        "held at max 1" in decision.reason and "-> 3" in decision.reason
        for decision in view.decisions
    ), view.decisions
