"""``requests_per_task`` from CloudWatch (moto server on 127.0.0.1), through boto3.

The test puts ``AWS/ApplicationELB`` ``RequestCountPerTarget`` datapoints with
``put_metric_data``, as an ALB does once a minute, and reads them back:

- with the control worker's activity directly: the window's whole minutes,
  summed per target group and divided by their seconds, only the group's own
  datapoints and only those of the minutes read;
- through a service job behind a target group (a real dev server, control
  worker and process-driver agent): the job's workflow reads the metric before
  each evaluation and its ``autoscaling`` query shows the value.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_fleet_moto import REGION, Moto, aws_env, moto  # noqa: F401  (fixtures)
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Container, Resources, ServiceJob, TcpCheck
from titus_flow.activities.metric_sources import MetricSourceActivities
from titus_flow.contracts.metric_sources import RequestCountInput
from titus_flow.fleet.ec2 import ENDPOINT_ENV
from titus_flow.load_balancers.cloudwatch import reading_range, target_group_dimension
from titus_flow.spec import Autoscaling, TargetTrackingPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")

SERVE = 'exec busybox httpd -f -p "127.0.0.1:$PORT" -h "$ROOT"'


def target_group(moto: Moto) -> str:  # noqa: F811
    """A new ``ip`` target group in the moto VPC; its ARN."""
    elb = boto3.client("elbv2", region_name=REGION, endpoint_url=moto.url)
    vpc = moto.ec2().describe_subnets(SubnetIds=[moto.subnets[0][0]])["Subnets"][0]["VpcId"]
    name = f"tg-{uuid.uuid4().hex[:8]}"
    created = elb.create_target_group(
        Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip"
    )
    arn: str = created["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(  # a kill drains for 1 s, not AWS's 300
        TargetGroupArn=arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "1"}],
    )
    return arn


def put_counts(moto: Moto, arn: str, points: list[tuple[datetime, float]]) -> None:  # noqa: F811
    """``RequestCountPerTarget`` datapoints of group ``arn``, as the ALB publishes them."""
    cloudwatch: Any = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto.url)
    cloudwatch.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[
            {
                "MetricName": "RequestCountPerTarget",
                "Dimensions": [{"Name": "TargetGroup", "Value": target_group_dimension(arn)}],
                "Timestamp": at,
                "Value": value,
                "Unit": "Count",
            }
            for at, value in points
        ],
    )


async def test_the_activity_reads_the_window_per_target_group(
    moto: Moto,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, moto.url)
    web, api, other = target_group(moto), target_group(moto), target_group(moto)
    at = datetime.now(UTC)
    window = timedelta(seconds=120)
    start, end = reading_range(at, window)
    second = timedelta(seconds=1)
    put_counts(
        moto,
        web,
        [
            (start + 10 * second, 400.0),  # first minute: 600 in all
            (start + 20 * second, 200.0),
            (start + 70 * second, 1200.0),  # second minute
            (start - 30 * second, 50_000.0),  # before the window
            (end + 5 * second, 90_000.0),  # the minute not yet complete everywhere
        ],
    )
    put_counts(moto, api, [(start + 80 * second, 60.0)])
    put_counts(moto, other, [(start + 10 * second, 70_000.0)])  # not a group of the job
    activities = MetricSourceActivities()

    rate = await activities.read_request_counts(
        RequestCountInput(target_groups=[web], at=at, window=window)
    )
    assert (rate.start, rate.end) == (start, end)
    assert rate.value == pytest.approx((600 + 1200) / 120)

    # A task in both groups serves the requests of each.
    both = await activities.read_request_counts(
        RequestCountInput(target_groups=[web, api], at=at, window=window)
    )
    assert both.value == pytest.approx((600 + 1200 + 60) / 120)

    # A group without datapoints had no request.
    quiet = target_group(moto)
    none = await activities.read_request_counts(
        RequestCountInput(target_groups=[quiet], at=at, window=window)
    )
    assert none.value == 0


@pytest.fixture
def aws_cluster(cluster_factory: Callable[[], Cluster], moto: Moto) -> Cluster:  # noqa: F811
    """A control worker talking to moto, and a process-driver agent with a private IP."""
    cluster = cluster_factory()
    cluster.env[ENDPOINT_ENV] = moto.url
    cluster.start_worker()
    cluster.start_agent(
        "cw", "--driver", "process", "--cpu", "1", "--memory", "1Gi",
        "--attribute", "private_ip=10.42.0.20",
    )  # fmt: skip
    return cluster


async def test_a_job_behind_a_target_group_reads_its_requests(
    aws_cluster: Cluster,
    moto: Moto,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, moto.url)  # the submit checks the group
    arn = target_group(moto)
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    # 600 requests per target in each of the last minutes: 10 per second whatever minutes
    # an evaluation reads.
    put_counts(moto, arn, [(now - timedelta(minutes=k), 600.0) for k in range(1, 8)])
    job = ServiceJob(
        name="cwweb",
        container=Container(
            image="busybox:latest",
            command=["sh", "-c", SERVE],
            ports=["http"],
            env={"ROOT": str(tmp_path)},
        ),
        resources=Resources(cpu=0.1, memory=16, disk=0, network_mbps=0),
        capacity=Capacity(min=1, desired=1, max=1),
        health_check=TcpCheck(port="http", interval="1s"),
        load_balancers=[arn],
        autoscaling=Autoscaling(
            policies=[TargetTrackingPolicy(name="rps", metric="requests_per_task", target=100)],
            interval="1s",
            window="60s",
        ),
    )
    client = await aws_cluster.client()
    job_id = await client.submit(job)
    try:

        async def read() -> bool:
            view = await client.autoscaling(job_id)
            return "requests_per_task" in view.metrics

        await eventually(read, 60, "requests_per_task read from CloudWatch")
        view = await client.autoscaling(job_id)
    finally:
        await client.kill(job_id)
        await aws_cluster.wait_for(job_id, timeout=60)
    assert view.metrics["requests_per_task"] == pytest.approx(10.0)
