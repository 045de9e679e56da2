"""``requests_per_task`` of a job behind ALB target groups, read from CloudWatch.

An ALB publishes ``AWS/ApplicationELB`` ``RequestCountPerTarget`` (dimension
``TargetGroup``: the ARN's ``targetgroup/<name>/<id>``) once a minute: the
requests the group received in that minute divided by its healthy targets. Its
``Sum`` statistic is that average (AWS: "the only valid statistic is Sum").

The reading (:func:`reading_range`, :func:`requests_per_second`): the whole
minutes of the autoscaling window that end one minute before now (the ALB
publishes a minute's datapoint within about a minute of its end), summed and
divided by their seconds. A minute without a datapoint had no request: the
ALB reports this metric only when requests flow. A task registered in several
groups serves the requests of each, so the job's value is the sum over its
groups.

boto3, synchronous: the control worker's activity runs it in a thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from titus_flow.load_balancers import aws
from titus_flow.load_balancers.aws import _call
from titus_flow.spec.load_balancers import region_of

NAMESPACE = "AWS/ApplicationELB"
METRIC = "RequestCountPerTarget"
PERIOD = timedelta(minutes=1)  # ALB metrics are per minute
PUBLISH_DELAY = timedelta(minutes=1)  # the latest minute's datapoint may not be there yet


def target_group_dimension(arn: str) -> str:
    """The ``TargetGroup`` dimension of target group ``arn``: ``targetgroup/<name>/<id>``."""
    region_of(arn)  # a ValueError for anything but a target group ARN
    return arn.split(":", 5)[5]


def reading_range(at: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """The whole minutes read at ``at`` for a ``window``: at least one, ending a minute back."""
    minutes = max(1, math.ceil(window / PERIOD))
    end = at.replace(second=0, microsecond=0) - PUBLISH_DELAY
    return end - minutes * PERIOD, end


def requests_per_second(sums: Iterable[float], start: datetime, end: datetime) -> float:
    """Requests per second per target over ``start..end`` from its minutes' ``Sum`` datapoints.

    Minutes without a datapoint count as 0 (no request in them).
    """
    seconds = (end - start).total_seconds()
    if seconds <= 0:
        raise ValueError(f"empty range {start}..{end}")
    return math.fsum(sums) / seconds


def make_client(arn: str) -> Any:
    """A CloudWatch client for the region of ``arn``, at the endpoint elbv2 calls use."""
    return aws.make_client(arn, "cloudwatch")


def request_count_sums(client: Any, arn: str, start: datetime, end: datetime) -> list[float]:
    """The per-minute ``Sum`` datapoints of ``RequestCountPerTarget`` of group ``arn``."""
    answer = _call(
        client.get_metric_statistics,
        Namespace=NAMESPACE,
        MetricName=METRIC,
        Dimensions=[{"Name": "TargetGroup", "Value": target_group_dimension(arn)}],
        StartTime=start,
        EndTime=end,
        Period=int(PERIOD.total_seconds()),
        Statistics=["Sum"],
    )
    return [float(point["Sum"]) for point in answer.get("Datapoints", [])]
