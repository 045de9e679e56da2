"""Metric samples pushed to a service job for its autoscaling policies.

Agents (``cpu_utilization``), load balancers (``requests_per_task``) and users
(``custom:<name>``, ``titus-flow metrics put``) send them to the job's workflow
as one ``metrics`` signal per report. A report is small and bounded: a pusher
aggregates its tasks before it sends (one sample per metric), so the history a
report adds does not grow with the tasks or agents behind it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from titus_flow.contracts.base import Message

MAX_SAMPLES_PER_REPORT = 20


class MetricSample(Message):
    """One value of one metric at one time.

    ``value`` is an average per task for the built-in metrics
    (``cpu_utilization`` in percent of the task's CPU request,
    ``requests_per_task`` in requests per second); ``weight`` is how many tasks
    (or reports) that average stands for, so averages of several pushers combine
    correctly.
    """

    metric: str = Field(max_length=160)
    value: float
    at: datetime
    weight: float = Field(default=1.0, gt=0)


class MetricReport(Message):
    """The samples of one pusher (``agent:<id>``, ``lb:<name>``, ``cli``) at one time."""

    source: str = Field(max_length=200)
    samples: list[MetricSample] = Field(min_length=1, max_length=MAX_SAMPLES_PER_REPORT)
