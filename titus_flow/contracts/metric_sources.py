"""Metrics a service job's workflow reads itself before it evaluates its policies.

``requests_per_task`` of ALB target groups from CloudWatch (a control worker
activity) and ``custom:`` metrics scraped from the tasks' Prometheus endpoints
(an activity on each agent that runs tasks of the job).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from titus_flow.contracts.base import Message
from titus_flow.spec.autoscaling import PrometheusSource


class RequestCountInput(Message):
    """Read ``RequestCountPerTarget`` of ``target_groups`` over ``window`` before ``at``."""

    target_groups: list[str] = Field(min_length=1)
    at: datetime
    window: timedelta


class RequestRate(Message):
    """Requests per second per target, summed over the groups, and the range read."""

    value: float
    start: datetime
    end: datetime


class ScrapeTarget(Message):
    """A task and the host port of its metrics port, on the agent that runs it."""

    task_id: str
    port: int


class ScrapeInput(Message):
    """Scrape ``source`` from each of ``tasks`` (all on one agent)."""

    source: PrometheusSource
    tasks: list[ScrapeTarget] = Field(min_length=1)
    timeout_seconds: float = Field(default=5.0, gt=0)


class ScrapeResult(Message):
    """Each task's value (a histogram's: its bucket counts); the reason for each that gave none.

    ``buckets`` maps a task to its cumulative counts by upper bound, the bound
    as the exposition writes it (``"0.5"``, ``"+Inf"``: JSON has no infinity).
    """

    values: dict[str, float] = Field(default_factory=dict)
    buckets: dict[str, dict[str, float]] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
