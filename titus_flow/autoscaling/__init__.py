"""Autoscaling of service jobs, as pure functions: metrics and history in, a decision out.

Nothing here reads a clock, a file or the network, so workflow code can call
:func:`decide` and replay it. The policies themselves are spec models
(:mod:`titus_flow.spec.autoscaling`).
"""

from titus_flow.autoscaling.engine import combine, decide, vote
from titus_flow.autoscaling.models import (
    METRIC_WINDOW,
    CapacityNow,
    Decision,
    Sample,
    Situation,
    Vote,
)

__all__ = [
    "METRIC_WINDOW",
    "CapacityNow",
    "Decision",
    "Sample",
    "Situation",
    "Vote",
    "combine",
    "decide",
    "vote",
]
