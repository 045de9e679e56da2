"""Cooldowns: when a policy's own earlier scaling still holds it back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from titus_flow.autoscaling.models import Decision, Direction


def last_scaling(
    history: Sequence[Decision], policy: str, direction: Direction | None = None
) -> Decision | None:
    """The latest decision of ``policy`` that changed desired (in ``direction``, if given)."""
    changes = [
        decision
        for decision in history
        if decision.policy == policy
        and decision.direction is not None
        and direction in (None, decision.direction)
    ]
    return max(changes, key=lambda decision: decision.at, default=None)


def cooling(last: Decision | None, now: datetime, cooldown: timedelta) -> bool:
    """Whether ``now`` is within ``cooldown`` of the scaling ``last``."""
    return last is not None and now - last.at < cooldown
