"""The local load balancer's ``requests_per_task`` metric, sent once per report period.

Each period the proxy sends one :class:`MetricReport` from ``lb:<name>`` with one
sample: the requests per second it received over the period divided by the
targets registered at its end, weighted by that number of targets (so that the
job's workflow can average it with other pushers). With no target registered
there is nothing to divide by and nothing is sent: the policy then sees no new
sample rather than a made-up one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from titus_flow.contracts.metric_reports import MetricReport, MetricSample

log = logging.getLogger(__name__)

REPORT_PERIOD = 1.0
"""Seconds between two reports."""
METRIC = "requests_per_task"


class MetricSink(Protocol):
    """Where reports go (the job's workflow, through the client)."""

    async def report(self, report: MetricReport) -> None:
        """Deliver one report."""
        ...


class RequestMeter:
    """Counts requests and turns the count since the last report into a rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._count = 0
        self._since = clock()

    def hit(self) -> None:
        """Count one request."""
        self._count += 1

    def take_rate(self) -> float:
        """Requests per second since the last call (or creation); restarts the count."""
        now = self._clock()
        elapsed = max(now - self._since, 1e-6)
        rate = self._count / elapsed
        self._count, self._since = 0, now
        return rate


def requests_per_task_report(source: str, rate: float, targets: int) -> MetricReport | None:
    """The report of ``rate`` requests per second over ``targets``; None without targets."""
    if targets <= 0:
        return None
    sample = MetricSample(
        metric=METRIC, value=rate / targets, at=datetime.now(UTC), weight=float(targets)
    )
    return MetricReport(source=source, samples=[sample])


async def report_loop(
    source: str,
    meter: RequestMeter,
    targets: Callable[[], int],
    sink: MetricSink,
    stop: asyncio.Event,
    period: float = REPORT_PERIOD,
) -> None:
    """Every ``period`` seconds until ``stop``, send the rate per registered target.

    A report that fails is logged and dropped (the next one carries on): a
    metric a second late or missing changes nothing a 60 s average decides.
    """
    loop = asyncio.get_running_loop()
    next_at = loop.time() + period
    last_error: str | None = None
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), max(next_at - loop.time(), 0.0))
            break
        except TimeoutError:
            pass
        next_at += period
        report = requests_per_task_report(source, meter.take_rate(), targets())
        if report is None:
            continue
        try:
            await sink.report(report)
            last_error = None
        except Exception as err:  # the sink failing must not stop the proxy
            message = f"{type(err).__name__}: {err}"
            if message != last_error:
                log.warning("cannot send the %s report (%s)", METRIC, message)
            last_error = message
        if next_at < loop.time():  # a slow report: start the next period now, no burst
            next_at = loop.time() + period
