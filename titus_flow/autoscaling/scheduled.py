"""What a scheduled action does to a job's capacity, as a pure function."""

from __future__ import annotations

from titus_flow.autoscaling.models import CapacityNow
from titus_flow.spec.autoscaling import ScheduledAction

SCHEDULED_PREFIX = "scheduled:"
"""Decisions of a scheduled action name it ``scheduled:<action>`` (policy names have no ':')."""


def schedule_id(job_id: str, action: str) -> str:
    """The id of the Temporal Schedule that runs scheduled action ``action`` of ``job_id``."""
    return f"{job_id}-scaling-{action}"


def scheduled_capacity(current: CapacityNow, action: ScheduledAction) -> CapacityNow:
    """The capacity after ``action``: its bounds and desired, the rest kept, all in order.

    As AWS does, a desired outside the new bounds moves inside them; a bound
    the action leaves alone moves with one it sets when they would cross (min
    8 on a job of max 5 makes the max 8 too).
    """
    low = current.min if action.min is None else action.min
    high = current.max if action.max is None else action.max
    if action.min is not None and action.max is None:
        high = max(high, low)
    if action.max is not None and action.min is None:
        low = min(low, high)
    desired = current.desired if action.desired is None else action.desired
    return CapacityNow(low, max(low, min(desired, high)), high)


def describe_action(action: ScheduledAction) -> str:
    """``min 8, desired 10``: what ``action`` sets."""
    parts = [(name, getattr(action, name)) for name in ("min", "desired", "max")]
    return ", ".join(f"{name} {value}" for name, value in parts if value is not None)
