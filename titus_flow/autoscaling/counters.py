"""Per-second rates of Prometheus counters between two scrapes, as PromQL's ``rate()``.

Pure: the service job's workflow keeps each task's last reading and passes the
new ones in. A task's first reading gives no rate (there is nothing to compare
with); a counter that went down was reset (the process restarted), so its new
value is the whole increase since the reset, as Prometheus counts it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Reading:
    """A counter's value and when it was read."""

    value: float
    at: datetime


def counter_rates(
    previous: Mapping[K, Reading], values: Mapping[K, float], at: datetime
) -> tuple[dict[K, float], dict[K, Reading]]:
    """Each key's rate per second since its previous reading, and the readings to keep.

    ``values`` are the counters read at ``at``, by counter (a task, or a task's
    histogram bucket). The readings kept are
    the new ones, plus the previous ones of tasks not read this time (a failed
    scrape must not restart a task's rate); the caller drops those of tasks
    that are gone.
    """
    rates: dict[K, float] = {}
    kept = dict(previous)
    for key, value in values.items():
        before = previous.get(key)
        kept[key] = Reading(value, at)
        if before is None:
            continue
        seconds = (at - before.at).total_seconds()
        if seconds <= 0:
            continue
        increase = value - before.value if value >= before.value else value
        rates[key] = increase / seconds
    return rates, kept
