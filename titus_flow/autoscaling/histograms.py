"""Quantiles of Prometheus histograms, as PromQL's ``histogram_quantile()``.

Pure. A histogram is its cumulative bucket counts by upper bound (``le``,
the last one ``+Inf``); the workflow turns each task's counts into rates
since the previous scrape (:func:`~titus_flow.autoscaling.counters.counter_rates`,
per bucket), sums them over the tasks, and reads the quantile of that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import accumulate


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """The ``quantile`` (0..1) of the observations counted in ``buckets``; None without any.

    Linear interpolation inside the bucket the rank falls in, from the bound
    below it (0 below the first bucket when its bound is positive, as Prometheus
    assumes). A rank in the ``+Inf`` bucket gives the highest finite bound. A
    histogram without a ``+Inf`` bucket gives None (it is not one). Counts that
    go down from one bound to the next (rates of buckets read a moment apart)
    are taken as the count below, as Prometheus does.
    """
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return None
    counts = list(accumulate((buckets[bound] for bound in bounds), max, initial=0.0))[1:]
    total = counts[-1]
    if not total > 0:
        return None
    rank = quantile * total
    # Some count reaches the rank: the last one is the total.
    index = next(i for i, count in enumerate(counts) if count >= rank)
    bound, count = bounds[index], counts[index]
    if bound == math.inf:
        return bounds[index - 1] if index > 0 else None
    if index == 0 and bound <= 0:
        return bound
    below_bound, below_count = (bounds[index - 1], counts[index - 1]) if index else (0.0, 0.0)
    if count == below_count:
        return bound
    return below_bound + (bound - below_bound) * (rank - below_count) / (count - below_count)
