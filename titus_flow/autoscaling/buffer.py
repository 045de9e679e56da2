"""The metric samples a service job keeps for its policies: bounded, whatever pushes them.

Every report (an agent's, a load balancer's, a user's) is merged into time
buckets of ``window / BUCKETS_PER_WINDOW``: a bucket keeps the weighted sum
and the total weight of its samples, so the window average of the buckets is
the weighted average of every sample. Buckets older than the window are
dropped, so the buffer holds at most ``BUCKETS_PER_WINDOW + 1`` buckets per
metric however many tasks, agents or reports there are.

Pure (the time is an argument) and a pydantic message, so the service job
workflow keeps it in its state, carries it over on continue-as-new and
replays it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from titus_flow.autoscaling.metrics import window_average
from titus_flow.autoscaling.models import Sample

if TYPE_CHECKING:  # titus_flow.contracts carries a buffer: importing it here would be a cycle
    from titus_flow.contracts.metric_reports import MetricReport, MetricSample

BUCKETS_PER_WINDOW = 12
_MIN_BUCKET = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    """Like :class:`titus_flow.contracts.base.Message`: unknown fields are a bug."""

    model_config = ConfigDict(extra="forbid")


class MetricBucket(_Strict):
    """The samples of one metric received in one time bucket, summed."""

    start: datetime  # the bucket's start, a multiple of the bucket width since the epoch
    last_at: datetime  # the latest sample in it: the bucket leaves the window after it
    weighted_sum: float  # sum of value * weight
    weight: float = Field(gt=0)  # sum of weight

    @property
    def sample(self) -> Sample:
        """The bucket as one sample: its weighted average, standing for its whole weight."""
        return Sample(self.last_at, self.weighted_sum / self.weight, self.weight)


class MetricBuffer(_Strict):
    """Recent samples of the metrics a job's policies read, in time buckets per metric."""

    window: timedelta = Field(gt=timedelta(0))
    buckets: dict[str, list[MetricBucket]] = Field(default_factory=dict)

    @property
    def bucket_width(self) -> timedelta:
        """How much time one bucket covers."""
        return max(self.window / BUCKETS_PER_WINDOW, _MIN_BUCKET)

    def add_report(self, report: MetricReport, now: datetime, wanted: Collection[str]) -> int:
        """Merge the samples of ``report`` that a policy reads (``wanted``); how many were kept.

        A sample is placed at its own time, but never later than ``now`` (a
        pusher's clock running ahead) nor earlier than the window (too old to
        count, dropped); values that are not finite numbers are dropped.
        """
        kept = sum(self.add(sample, now) for sample in report.samples if sample.metric in wanted)
        self.prune(now)
        return kept

    def add(self, sample: MetricSample, now: datetime) -> bool:
        """Merge one sample received at ``now``; False when it is dropped."""
        at = min(_aware(sample.at), now)
        if at <= now - self.window or not math.isfinite(sample.value * sample.weight):
            return False
        start = self._bucket_start(at)
        buckets = self.buckets.setdefault(sample.metric, [])
        bucket = next((b for b in buckets if b.start == start), None)
        if bucket is None:
            weighted = sample.value * sample.weight
            buckets.append(
                MetricBucket(start=start, last_at=at, weighted_sum=weighted, weight=sample.weight)
            )
            buckets.sort(key=lambda b: b.start)
            return True
        bucket.weighted_sum += sample.value * sample.weight
        bucket.weight += sample.weight
        bucket.last_at = max(bucket.last_at, at)
        return True

    def prune(self, now: datetime) -> None:
        """Drop the buckets whose latest sample left the window, and metrics without any."""
        oldest = now - self.window
        for metric in list(self.buckets):
            recent = [bucket for bucket in self.buckets[metric] if bucket.last_at > oldest]
            if recent:
                self.buckets[metric] = recent
            else:
                del self.buckets[metric]

    def keep_only(self, wanted: Collection[str]) -> None:
        """Forget the metrics no policy reads any more (after an update changed the policies)."""
        self.buckets = {m: b for m, b in self.buckets.items() if m in wanted}

    def samples(self) -> dict[str, list[Sample]]:
        """Each metric's buckets as samples, oldest first: what the engine's Situation reads."""
        return {metric: [b.sample for b in buckets] for metric, buckets in self.buckets.items()}

    def averages(self, now: datetime) -> dict[str, float]:
        """Each metric's weighted average over the window ending at ``now`` (metrics with data)."""
        return {
            metric: value
            for metric, samples in self.samples().items()
            if (value := window_average(samples, now, self.window)) is not None
        }

    def _bucket_start(self, at: datetime) -> datetime:
        width = self.bucket_width
        return _EPOCH + ((at - _EPOCH) // width) * width


def _aware(at: datetime) -> datetime:
    """``at`` with a time zone: a naive time from a pusher is taken as UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
