"""The metric value a policy sees: the average of the samples in a time window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from titus_flow.autoscaling.models import Sample, Situation, Vote


def window_average(samples: Sequence[Sample], now: datetime, window: timedelta) -> float | None:
    """Mean of the samples taken in ``(now - window, now]``, weighted; None when there are none.

    Each sample counts ``weight`` times (the tasks its value averages).
    Samples from the future (clock skew of a pusher) are ignored rather than
    trusted.
    """
    recent = [sample for sample in samples if now - window < sample.at <= now]
    total_weight = sum(sample.weight for sample in recent)
    if total_weight <= 0:
        return None
    return sum(sample.value * sample.weight for sample in recent) / total_weight


def describe_value(metric: str, value: float, window: timedelta) -> str:
    """How a reason text names the metric value, e.g. ``cpu_utilization 72.5 (60s avg)``."""
    return f"{metric} {value:g} ({window.total_seconds():g}s avg)"


def metric_value(situation: Situation, metric: str) -> float | None:
    """The value of ``metric`` the policies of ``situation`` see (None: no recent sample)."""
    return window_average(situation.metrics.get(metric, ()), situation.now, situation.window)


def no_samples(policy: str, metric: str, window: timedelta) -> Vote:
    """The vote of a policy without data: hold, so that nothing scales in blindly."""
    reason = f"no sample of {metric} in the last {window.total_seconds():g}s"
    return Vote(policy, "hold", None, None, reason)
