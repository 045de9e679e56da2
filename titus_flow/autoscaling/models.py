"""The values the autoscaling engine reads and returns: small, frozen and plain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from titus_flow.spec.autoscaling import Policy

METRIC_WINDOW = timedelta(seconds=60)
"""Samples of the last minute are averaged into the value a policy sees."""

Direction = Literal["out", "in"]
VoteKind = Literal["out", "in", "hold", "abstain"]


@dataclass(frozen=True)
class Sample:
    """One value of a metric at a time (an average per task for the built-in metrics).

    ``weight`` is how many tasks (or reports) the value stands for: window
    averages weigh each sample by it, so the averages of several pushers, or
    of a time bucket of a :class:`~titus_flow.autoscaling.buffer.MetricBuffer`,
    combine as if every value had been seen.
    """

    at: datetime
    value: float
    weight: float = 1.0


@dataclass(frozen=True)
class CapacityNow:
    """The job's capacity when the policies are evaluated."""

    min: int
    desired: int
    max: int

    def clamp(self, desired: int) -> int:
        """``desired`` moved into ``min..max``."""
        return max(self.min, min(desired, self.max))


@dataclass(frozen=True)
class Decision:
    """What the engine decided at ``at``, and why; recorded whether or not it scales.

    ``new_desired`` is None when desired stays as it is; otherwise it is within
    ``min..max`` and differs from ``old_desired``. ``policy`` names the policy
    whose vote won (None for no change or a clamp).
    """

    at: datetime
    old_desired: int
    new_desired: int | None
    policy: str | None
    metric_value: float | None
    reason: str

    @property
    def direction(self) -> Direction | None:
        """``out`` or ``in`` for a change, None when desired stays."""
        if self.new_desired is None or self.new_desired == self.old_desired:
            return None
        return "out" if self.new_desired > self.old_desired else "in"


@dataclass(frozen=True)
class Situation:
    """Everything a decision depends on; the engine reads nothing else (no clock, no I/O).

    ``metrics`` maps a metric name (``cpu_utilization``, ``custom:queue``) to
    its samples in any order; ``history`` holds earlier decisions (only those
    that changed desired matter: they start cooldowns).
    """

    policies: Sequence[Policy]
    capacity: CapacityNow
    now: datetime
    metrics: Mapping[str, Sequence[Sample]] = field(default_factory=dict)
    history: Sequence[Decision] = ()
    paused: bool = False
    update_in_progress: bool = False
    canary_in_progress: bool = False
    window: timedelta = METRIC_WINDOW


@dataclass(frozen=True)
class Vote:
    """One policy's opinion: scale ``out``/``in`` to ``desired``, ``hold``, or ``abstain``.

    ``hold`` blocks a scale-in (every voting policy must agree to one);
    ``abstain`` has no say (a step policy whose metric is in none of its steps,
    a target-tracking policy with ``disable_scale_in`` that would scale in).
    """

    policy: str
    kind: VoteKind
    desired: int | None
    metric_value: float | None
    reason: str
