"""Activities that read a service job's metrics: CloudWatch and the tasks' Prometheus endpoints.

``read_request_counts`` runs on the control task queue (boto3 in a thread, the
endpoint and credentials as for elbv2). ``scrape_metric`` runs on the agent
that runs the tasks: it GETs each task's metrics port on the agent's publish
address (``127.0.0.1`` unless told), as the health checks reach tasks, and
parses the named metric (:mod:`titus_flow.autoscaling.prometheus`).
"""

from __future__ import annotations

import asyncio
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from temporalio.exceptions import ApplicationError

from titus_flow.activities.interfaces import MetricSourceActivityInterface, implements
from titus_flow.autoscaling.prometheus import ExpositionError, histogram_buckets, metric_value
from titus_flow.contracts.metric_sources import (
    RequestCountInput,
    RequestRate,
    ScrapeInput,
    ScrapeResult,
)
from titus_flow.load_balancers import aws, cloudwatch
from titus_flow.runtime.health import HOST
from titus_flow.spec.autoscaling import PrometheusSource
from titus_flow.spec.load_balancers import region_of

MAX_EXPOSITION_BYTES = 4 * 1024 * 1024
MAX_ERROR_CHARS = 200
# Never through HTTP(S)_PROXY: the tasks are on this host.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MetricSourceActivities(MetricSourceActivityInterface):
    """CloudWatch reads (``make_client`` swappable for tests) and Prometheus scrapes."""

    def __init__(
        self, *, probe_host: str = HOST, make_client: Callable[[str], Any] = cloudwatch.make_client
    ) -> None:
        self._probe_host = probe_host
        self._make_client = make_client
        self._clients: dict[str, Any] = {}  # by region: making one costs CPU (boto3)

    def _client(self, arn: str) -> Any:
        region = region_of(arn)
        if region not in self._clients:
            self._clients[region] = self._make_client(arn)
        return self._clients[region]

    @implements(MetricSourceActivityInterface.read_request_counts)
    async def read_request_counts(self, request: RequestCountInput) -> RequestRate:
        """Requests per second per target over the window's whole minutes, summed over groups."""
        start, end = cloudwatch.reading_range(request.at, request.window)

        def read() -> float:
            total = 0.0
            for arn in request.target_groups:
                sums = cloudwatch.request_count_sums(self._client(arn), arn, start, end)
                total += cloudwatch.requests_per_second(sums, start, end)
            return total

        try:
            value = await asyncio.to_thread(read)
        except aws.ElbError as err:
            raise ApplicationError(
                f"CloudWatch {cloudwatch.METRIC}: {err}",
                type=err.code,
                non_retryable=not err.retryable,
            ) from err
        return RequestRate(value=value, start=start, end=end)

    @implements(MetricSourceActivityInterface.scrape_metric)
    async def scrape_metric(self, request: ScrapeInput) -> ScrapeResult:
        """The metric of each task; a task that cannot be read is an error of the result."""
        pages = await asyncio.gather(
            *(asyncio.to_thread(self._fetch, target.port, request) for target in request.tasks)
        )
        answer = ScrapeResult()
        for target, (url, text, error) in zip(request.tasks, pages, strict=True):
            if error is None:
                try:
                    error = _read(answer, target.task_id, text, request.source)
                except ExpositionError as err:
                    error = f"{url}: {err}"
            if error is not None:
                answer.errors[target.task_id] = error[:MAX_ERROR_CHARS]
        return answer

    def _fetch(self, port: int, request: ScrapeInput) -> tuple[str, str, str | None]:
        """The URL of the task's exposition, its text, and why it could not be read (if so)."""
        url = f"http://{self._probe_host}:{port}{request.source.path}"
        try:
            with _OPENER.open(url, timeout=request.timeout_seconds) as answer:
                body = answer.read(MAX_EXPOSITION_BYTES + 1)
        except urllib.error.HTTPError as err:
            return url, "", f"GET {url} -> {err.code}"
        except (OSError, ValueError) as err:
            return url, "", f"GET {url}: {getattr(err, 'reason', None) or err}"
        if len(body) > MAX_EXPOSITION_BYTES:
            return url, "", f"GET {url}: more than {MAX_EXPOSITION_BYTES} bytes"
        return url, body.decode("utf-8", "replace"), None

    def all(self) -> list[Callable[..., object]]:
        """Both activities (the control worker registers the first, agents the second)."""
        return [self.read_request_counts, self.scrape_metric]


def _read(answer: ScrapeResult, task_id: str, text: str, source: PrometheusSource) -> str | None:
    """Put the task's value (or histogram) read from ``text`` in ``answer``; else why not."""
    if source.quantile is not None:
        buckets = histogram_buckets(text, source.metric, source.labels)
        if not buckets:
            return f"no series {source.metric}_bucket matches"
        if not all(math.isfinite(count) for count in buckets.values()):
            return f"{source.metric}_bucket has a count that is not a finite number"
        answer.buckets[task_id] = {_bound(bound): count for bound, count in buckets.items()}
        return None
    value = metric_value(text, source.metric, source.labels)
    if value is None:
        return f"no series {source.metric} matches"
    if not math.isfinite(value):
        return f"{source.metric} is {value}, not a finite number"
    answer.values[task_id] = value
    return None


def _bound(bound: float) -> str:
    """A bucket's upper bound as JSON can carry it: ``+Inf`` or the number."""
    return "+Inf" if bound == math.inf else repr(bound)
