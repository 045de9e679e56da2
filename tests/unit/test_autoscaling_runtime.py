"""The pure parts of the autoscaling runtime: decision records, scheduled capacity, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from titus_flow.autoscaling import CapacityNow
from titus_flow.autoscaling.scheduled import describe_action, scheduled_capacity
from titus_flow.client.autoscaling import put_metric_name
from titus_flow.contracts.autoscaling import DECISIONS_KEPT, AutoscalingCarry, AutoscalingDecision
from titus_flow.errors import UserError
from titus_flow.spec import Autoscaling, ScheduledAction

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def decision(seconds: int, old: int, new: int | None, policy: str = "cpu") -> AutoscalingDecision:
    return AutoscalingDecision(
        at=NOW + timedelta(seconds=seconds),
        old_desired=old,
        new_desired=new,
        policy=policy if new is not None else None,
        reason=f"at {seconds}",
    )


def test_evaluations_without_change_collapse_into_the_latest() -> None:
    carry = AutoscalingCarry()
    for second in range(0, 100, 10):
        carry.record(decision(second, 2, None))
    carry.record(decision(100, 2, 4))
    carry.record(decision(110, 4, None))
    carry.record(decision(120, 4, None))
    assert [d.reason for d in carry.decisions] == ["at 90", "at 100", "at 120"]


def test_records_stay_bounded_and_drop_idle_ones_before_changes() -> None:
    carry = AutoscalingCarry()
    carry.record(decision(0, 1, 2))  # the oldest change: cooldowns may still need it
    for second in range(1, 3 * DECISIONS_KEPT):
        carry.record(decision(second, 2, None))
        carry.record(decision(second, 2, 3 if second % 2 else 2))  # alternate changes
    assert len(carry.decisions) == DECISIONS_KEPT
    assert carry.decisions[-1].at == NOW + timedelta(seconds=3 * DECISIONS_KEPT - 1)
    again = AutoscalingCarry.model_validate_json(carry.model_dump_json())
    assert again == carry


def test_decision_text() -> None:
    assert decision(0, 1, 3).text() == "desired 1 -> 3 by cpu: at 0"
    assert decision(0, 2, None).text() == "desired 2 kept: at 0"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ({"min": 8}, (8, 8, 10)),  # desired follows the new min up
        ({"min": 12}, (12, 12, 12)),  # the max moves with a min above it
        ({"max": 2}, (1, 2, 2)),  # desired follows the new max down
        ({"max": 0}, (0, 0, 0)),
        ({"desired": 6}, (1, 6, 10)),
        ({"desired": 20}, (1, 10, 10)),  # kept within the bounds
        ({"min": 0, "desired": 0, "max": 0}, (0, 0, 0)),
    ],
)
def test_scheduled_capacity(action: dict[str, int], expected: tuple[int, int, int]) -> None:
    scheduled = ScheduledAction(name="a", cron="0 8 * * *", **action)
    after = scheduled_capacity(CapacityNow(1, 4, 10), scheduled)
    assert (after.min, after.desired, after.max) == expected


def test_describe_action() -> None:
    action = ScheduledAction(name="night", cron="0 22 * * *", min=0, max=2)
    assert describe_action(action) == "min 0, max 2"


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("queue_depth", "custom:queue_depth"),
        ("custom:queue_depth", "custom:queue_depth"),
        ("cpu_utilization", "cpu_utilization"),
    ],
)
def test_put_metric_names(name: str, metric: str) -> None:
    assert put_metric_name(name) == metric


@pytest.mark.parametrize("name", ["", "has space", "custom:", "-dash", "x" * 200])
def test_bad_put_metric_names(name: str) -> None:
    with pytest.raises(UserError, match="bad metric name"):
        put_metric_name(name)


def test_interval_and_window() -> None:
    default = Autoscaling()
    assert (default.interval, default.window) == (timedelta(seconds=15), timedelta(seconds=60))
    assert Autoscaling.model_validate({"interval": "1s", "window": "1s"}).window.seconds == 1
    with pytest.raises(ValidationError, match="interval must be at least 1s"):
        Autoscaling.model_validate({"interval": "500ms"})
    with pytest.raises(ValidationError, match="must be at least interval"):
        Autoscaling.model_validate({"interval": "30s", "window": "10s"})
