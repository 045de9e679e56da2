"""The autoscaling engine as pure functions: metric history in, decision out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from titus_flow.autoscaling import CapacityNow, Decision, Sample, Situation, decide
from titus_flow.autoscaling.engine import without_tolerance
from titus_flow.autoscaling.step import percent_change
from titus_flow.spec import Policy, StepPolicy, TargetTrackingPolicy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

CPU = TargetTrackingPolicy(name="cpu", metric="cpu_utilization", target=50)
CPU_NO_IN = TargetTrackingPolicy(
    name="cpu", metric="cpu_utilization", target=50, disable_scale_in=True
)
QUEUE = TargetTrackingPolicy(name="queue", metric="custom:queue", target=10)
HIGH = StepPolicy.model_validate(
    {
        "name": "high",
        "metric": "cpu_utilization",
        "threshold": 70,
        "steps": [{"lower": 0, "upper": 15, "adjustment": 1}, {"lower": 15, "adjustment": 3}],
    }
)
LOW = StepPolicy.model_validate(
    {
        "name": "low",
        "metric": "cpu_utilization",
        "threshold": 30,
        "steps": [{"upper": 0, "adjustment": -1}],
    }
)


def step(adjustment_type: str, adjustment: int, magnitude: int | None = None) -> StepPolicy:
    """A policy that applies ``adjustment`` whenever CPU is at or above 70."""
    return StepPolicy.model_validate(
        {
            "name": "step",
            "metric": "cpu_utilization",
            "threshold": 70,
            "adjustment_type": adjustment_type,
            "min_adjustment_magnitude": magnitude,
            "steps": [{"lower": 0, "adjustment": adjustment}],
        }
    )


def cpu(*values: float) -> dict[str, list[tuple[int, float]]]:
    """CPU samples, one every 10 s up to now."""
    return {"cpu_utilization": [(10 * i, v) for i, v in enumerate(reversed(values))]}


def scaled(seconds_ago: int, policy: str, old: int, new: int) -> Decision:
    return Decision(NOW - timedelta(seconds=seconds_ago), old, new, policy, None, "earlier")


def situation(
    policies: Sequence[Policy],
    capacity: tuple[int, int, int],
    metrics: dict[str, list[tuple[int, float]]] | None = None,
    history: Sequence[Decision] = (),
    **flags: Any,
) -> Situation:
    """``metrics`` maps a metric to (seconds ago, value) samples."""
    samples = {
        name: [Sample(NOW - timedelta(seconds=ago), value) for ago, value in values]
        for name, values in (metrics or {}).items()
    }
    return Situation(policies, CapacityNow(*capacity), NOW, samples, history=history, **flags)


def check(found: Decision, desired: int | None, policy: str | None, reason: str) -> None:
    assert (found.new_desired, found.policy) == (desired, policy), found.reason
    assert reason in found.reason
    assert found.at == NOW


@pytest.mark.parametrize(
    ("capacity", "metrics", "history", "desired", "policy", "reason"),
    [
        pytest.param((1, 4, 10), cpu(75, 75), (), 6, "cpu", "4 task(s) -> 6", id="out"),
        pytest.param((1, 4, 10), cpu(25), (), 2, "cpu", "4 task(s) -> 2", id="in"),
        pytest.param((1, 4, 10), cpu(40), (), None, None, "4 task(s) is right", id="in-rounds-up"),
        pytest.param((1, 4, 10), cpu(56), (), 5, "cpu", "-> 5", id="out-rounds-up"),
        pytest.param(
            (1, 4, 10),
            cpu(100, 50),
            (),
            6,
            "cpu",
            "cpu_utilization 75 (60s avg)",
            id="window-average",
        ),
        pytest.param(
            (1, 4, 10),
            {"cpu_utilization": [(90, 100), (0, 50)]},
            (),
            None,
            None,
            "4 task(s) is right",
            id="old-samples-ignored",
        ),
        pytest.param(
            (1, 4, 10),
            {"cpu_utilization": [(-30, 100), (0, 50)]},
            (),
            None,
            None,
            "is right",
            id="future-samples-ignored",
        ),
        pytest.param(
            (1, 4, 10),
            {},
            (),
            None,
            None,
            "no sample of cpu_utilization in the last 60s",
            id="no-samples",
        ),
        pytest.param(
            (1, 6, 10),
            cpu(75),
            [scaled(60, "cpu", 4, 6)],
            None,
            None,
            "scale-out cooldown",
            id="out-cooldown-holds",
        ),
        pytest.param(
            (1, 6, 10),
            cpu(100),
            [scaled(60, "cpu", 4, 6)],
            8,
            "cpu",
            "4 task(s) -> 8",
            id="out-cooldown-larger",
        ),
        pytest.param(
            (1, 6, 10),
            cpu(75),
            [scaled(300, "cpu", 4, 6)],
            9,
            "cpu",
            "6 task(s) -> 9",
            id="out-cooldown-over",
        ),
        pytest.param(
            (1, 6, 10),
            cpu(25),
            [scaled(60, "cpu", 4, 6)],
            None,
            None,
            "scale-out cooldown",
            id="no-in-in-out-cooldown",
        ),
        pytest.param(
            (1, 4, 10),
            cpu(25),
            [scaled(60, "cpu", 6, 4)],
            None,
            None,
            "scale-in cooldown runs",
            id="in-cooldown",
        ),
        pytest.param(
            (1, 4, 10), cpu(25), [scaled(301, "cpu", 6, 4)], 2, "cpu", "-> 2", id="in-cooldown-over"
        ),
        pytest.param(
            (1, 4, 10),
            cpu(75),
            [scaled(60, "cpu", 6, 4)],
            6,
            "cpu",
            "-> 6",
            id="out-during-in-cooldown",
        ),
        pytest.param(
            (1, 4, 10),
            cpu(25),
            [scaled(60, "other", 6, 4)],
            2,
            "cpu",
            "-> 2",
            id="cooldown-is-per-policy",
        ),
        pytest.param((1, 4, 5), cpu(100), (), 5, "cpu", "-> 8 (clamped to max 5)", id="clamp-max"),
        pytest.param((3, 4, 10), cpu(10), (), 3, "cpu", "-> 1 (clamped to min 3)", id="clamp-min"),
        pytest.param((1, 5, 5), cpu(100), (), None, "cpu", "held at max 5", id="at-max"),
        pytest.param((4, 4, 10), cpu(10), (), None, "cpu", "held at min 4", id="at-min"),
        pytest.param(
            (0, 0, 10), cpu(90), (), None, None, "no task to average over", id="zero-tasks"
        ),
        pytest.param(
            (3, 2, 10), cpu(50), (), 3, None, "desired 2 outside min..max 3..10", id="below-min"
        ),
        pytest.param((1, 12, 10), cpu(50), (), 10, None, "desired 12 outside", id="above-max"),
    ],
)
def test_target_tracking(
    capacity: tuple[int, int, int],
    metrics: dict[str, list[tuple[int, float]]],
    history: Sequence[Decision],
    desired: int | None,
    policy: str | None,
    reason: str,
) -> None:
    check(decide(situation([CPU], capacity, metrics, history)), desired, policy, reason)


@pytest.mark.parametrize(
    ("tolerance", "value", "desired", "reason"),
    [
        (0.1, 54, None, "4 task(s): within 10% of the target"),
        (0.1, 55, None, "within 10%"),  # the edge holds
        (0.1, 45, None, "4 task(s) is right"),  # within, and 4 * 45 / 50 rounds up to 4
        (0.1, 56, 5, "4 task(s) -> 5"),
        (0.1, 44, None, "4 task(s) is right"),  # outside, but 4 * 44 / 50 rounds up to 4
        (0.1, 37, 3, "4 task(s) -> 3"),
        (0.0, 50.0001, 5, "4 task(s) -> 5"),  # no tolerance: any excess adds a task
        (0.3, 64, None, "within 30%"),
    ],
)
def test_target_tracking_holds_within_its_tolerance(
    tolerance: float, value: float, desired: int | None, reason: str
) -> None:
    policy = CPU.model_copy(update={"tolerance": tolerance})
    found = decide(situation([policy], (1, 4, 10), cpu(value)))
    check(found, desired, "cpu" if desired else None, reason)


def test_without_tolerance_acts_on_any_difference_as_before() -> None:
    """What a replay of a run from before tolerances evaluates (the workflow's patch)."""
    policies = without_tolerance([CPU, HIGH])
    assert policies[0] == CPU.model_copy(update={"tolerance": 0.0}) and policies[1] is HIGH
    check(decide(situation(policies, (1, 4, 10), cpu(51))), 5, "cpu", "4 task(s) -> 5")


def test_disable_scale_in_only_stops_scale_in() -> None:
    found = decide(situation([CPU_NO_IN], (1, 4, 10), cpu(25)))
    check(found, None, None, "would scale in to 2, but scale-in is disabled")
    check(decide(situation([CPU_NO_IN], (1, 4, 10), cpu(75))), 6, "cpu", "-> 6")


@pytest.mark.parametrize(
    ("policy", "capacity", "metrics", "history", "desired", "reason"),
    [
        pytest.param(
            HIGH,
            (1, 4, 10),
            cpu(75),
            (),
            5,
            "step +1 (change_in_capacity): 4 task(s) -> 5",
            id="first-step",
        ),
        pytest.param(HIGH, (1, 4, 10), cpu(70), (), 5, "-> 5", id="threshold-is-inclusive"),
        pytest.param(HIGH, (1, 4, 10), cpu(85), (), 7, "step +3", id="lower-bound-inclusive"),
        pytest.param(HIGH, (1, 4, 10), cpu(1000), (), 7, "step +3", id="open-upper-bound"),
        pytest.param(
            HIGH, (1, 4, 10), cpu(69), (), None, "in none of the steps", id="below-threshold"
        ),
        pytest.param(LOW, (1, 4, 10), cpu(20), (), 3, "step -1", id="open-lower-bound"),
        pytest.param(
            LOW, (1, 4, 10), cpu(30), (), None, "in none of the steps", id="at-threshold-not-below"
        ),
        pytest.param(LOW, (4, 4, 10), cpu(20), (), None, "held at min 4", id="scale-in-at-min"),
        pytest.param(
            step("percent_change_in_capacity", 50), (1, 4, 10), cpu(80), (), 6, "-> 6", id="percent"
        ),
        pytest.param(
            step("percent_change_in_capacity", 10),
            (1, 4, 10),
            cpu(80),
            (),
            5,
            "-> 5",
            id="percent-below-one-is-one",
        ),
        pytest.param(
            step("percent_change_in_capacity", 30),
            (1, 5, 10),
            cpu(80),
            (),
            6,
            "-> 6",
            id="percent-rounds-down",
        ),
        pytest.param(
            step("percent_change_in_capacity", 10, 2),
            (1, 4, 10),
            cpu(80),
            (),
            6,
            "-> 6",
            id="percent-min-magnitude",
        ),
        pytest.param(
            step("percent_change_in_capacity", -50),
            (1, 5, 10),
            cpu(80),
            (),
            3,
            "-> 3",
            id="percent-in-rounds-up",
        ),
        pytest.param(
            step("percent_change_in_capacity", -10, 2),
            (1, 5, 10),
            cpu(80),
            (),
            3,
            "-> 3",
            id="percent-in-min-magnitude",
        ),
        pytest.param(step("exact_capacity", 8), (1, 4, 10), cpu(80), (), 8, "-> 8", id="exact-out"),
        pytest.param(step("exact_capacity", 2), (1, 4, 10), cpu(80), (), 2, "-> 2", id="exact-in"),
        pytest.param(
            step("exact_capacity", 4),
            (1, 4, 10),
            cpu(80),
            (),
            None,
            "4 task(s) stay",
            id="exact-same",
        ),
        pytest.param(
            step("change_in_capacity", -10), (0, 4, 10), cpu(80), (), 0, "-> 0", id="never-negative"
        ),
        pytest.param(
            HIGH,
            (1, 5, 10),
            cpu(75),
            [scaled(60, "high", 4, 5)],
            None,
            "5 task(s) stay",
            id="cooldown-same-step",
        ),
        pytest.param(
            HIGH,
            (1, 5, 10),
            cpu(85),
            [scaled(60, "high", 4, 5)],
            7,
            "4 task(s) -> 7",
            id="cooldown-larger-step",
        ),
        pytest.param(
            HIGH,
            (1, 5, 10),
            cpu(75),
            [scaled(300, "high", 4, 5)],
            6,
            "5 task(s) -> 6",
            id="cooldown-over",
        ),
        pytest.param(
            LOW,
            (1, 4, 10),
            cpu(20),
            [scaled(60, "low", 5, 4)],
            None,
            "the cooldown runs",
            id="scale-in-cooldown",
        ),
        pytest.param(
            LOW,
            (1, 4, 10),
            cpu(20),
            [scaled(60, "low", 3, 4)],
            None,
            "the cooldown runs",
            id="scale-in-after-out",
        ),
    ],
)
def test_step(
    policy: StepPolicy,
    capacity: tuple[int, int, int],
    metrics: dict[str, list[tuple[int, float]]],
    history: Sequence[Decision],
    desired: int | None,
    reason: str,
) -> None:
    winner = policy.name if desired is not None or "held at" in reason else None
    check(decide(situation([policy], capacity, metrics, history)), desired, winner, reason)


@pytest.mark.parametrize(
    ("tasks", "percent", "magnitude", "change"),
    [(4, 50, None, 2), (4, 10, None, 1), (5, 30, None, 1), (4, 10, 2, 2), (10, 25, 2, 2),
     (5, -50, None, -2), (4, -10, None, -1), (5, -10, 2, -2), (0, 50, None, 0), (4, 0, 3, 0)],
)  # fmt: skip
def test_percent_change(tasks: int, percent: int, magnitude: int | None, change: int) -> None:
    assert percent_change(tasks, percent, magnitude) == change


@pytest.mark.parametrize(
    ("policies", "metrics", "desired", "policy"),
    [
        pytest.param([CPU, step("change_in_capacity", 5)], cpu(75), 9, "step", id="largest-out"),
        pytest.param(
            [CPU, QUEUE], {**cpu(75), "custom:queue": [(0, 5)]}, 6, "cpu", id="any-out-wins"
        ),
        pytest.param([CPU, HIGH], cpu(25), 2, "cpu", id="abstaining-step-lets-in"),
        pytest.param([CPU, LOW], cpu(25), 3, "low", id="largest-scale-in"),
        pytest.param(
            [CPU, QUEUE], {**cpu(25), "custom:queue": [(0, 10)]}, None, None, id="one-holds-no-in"
        ),
        pytest.param(
            [CPU, QUEUE], {**cpu(25), "custom:queue": [(0, 7.5)]}, 3, "queue", id="all-in"
        ),
        pytest.param([CPU, QUEUE], cpu(25), None, None, id="no-data-holds-in"),
        pytest.param([CPU, QUEUE], cpu(75), 6, "cpu", id="no-data-lets-out"),
        pytest.param(
            [CPU_NO_IN, QUEUE],
            {**cpu(25), "custom:queue": [(0, 5)]},
            2,
            "queue",
            id="disabled-in-abstains",
        ),
        pytest.param([], cpu(75), None, None, id="no-policy"),
    ],
)
def test_combined_policies(
    policies: list[Policy],
    metrics: dict[str, list[tuple[int, float]]],
    desired: int | None,
    policy: str | None,
) -> None:
    found = decide(situation(policies, (1, 4, 10), metrics))
    assert (found.new_desired, found.policy) == (desired, policy), found.reason


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"paused": True}, "paused: autoscaling is paused"),
        ({"update_in_progress": True}, "paused: a rolling update is in progress"),
        ({"canary_in_progress": True}, "paused: a canary is in progress"),
    ],
)
def test_paused(flags: dict[str, bool], reason: str) -> None:
    check(decide(situation([CPU], (3, 2, 10), cpu(100), **flags)), None, None, reason)


def test_reasons_name_every_policy_when_nothing_changes() -> None:
    found = decide(situation([CPU, HIGH], (1, 4, 10), cpu(50)))
    assert found.new_desired is None
    assert found.reason == (
        "cpu: cpu_utilization 50 (60s avg), target 50: 4 task(s) is right;"
        " high: cpu_utilization 50 (60s avg), threshold 70: in none of the steps"
    )


def test_decide_is_deterministic() -> None:
    made = situation([CPU, HIGH, LOW], (1, 4, 10), cpu(90, 60))
    assert decide(made) == decide(made)


_POLICIES = [CPU, CPU_NO_IN, QUEUE, HIGH, LOW, step("percent_change_in_capacity", -60, 3),
             step("exact_capacity", 10_000), step("change_in_capacity", 500)]  # fmt: skip


@given(
    policies=st.lists(st.sampled_from(_POLICIES), max_size=3, unique_by=lambda p: p.name),
    bounds=st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)).map(sorted),
    desired=st.integers(0, 10_000),
    values=st.lists(st.floats(0, 1e6), max_size=4),
    queue=st.lists(st.floats(0, 1e6), max_size=2),
    history=st.lists(
        st.tuples(
            st.integers(0, 600),
            st.sampled_from(["cpu", "high", "low", "step"]),
            st.integers(0, 100),
            st.integers(0, 100),
        ),
        max_size=3,
    ),
)
def test_the_result_is_always_within_min_and_max(
    policies: list[Policy],
    bounds: list[int],
    desired: int,
    values: list[float],
    queue: list[float],
    history: list[tuple[int, str, int, int]],
) -> None:
    low, high = bounds
    metrics = {**cpu(*values), "custom:queue": [(i, v) for i, v in enumerate(queue)]}
    past = [scaled(*entry) for entry in history]
    found = decide(situation(policies, (low, desired, high), metrics, past))
    if found.new_desired is not None:
        assert low <= found.new_desired <= high
        assert found.new_desired != desired
    else:
        assert low <= desired <= high  # desired out of bounds is always corrected


def test_the_worked_example_of_the_docs() -> None:
    """docs/services.md, "Worked example": the five decisions it walks through."""
    rps = TargetTrackingPolicy(
        name="rps",
        metric="requests_per_task",
        target=1000,
        scale_out_cooldown="1m",
        scale_in_cooldown="10m",
    )

    def at(
        clock: str, desired: int, value: float, history: Sequence[Decision], low: int = 2
    ) -> Decision:
        now = datetime.fromisoformat(f"2026-11-30T{clock}+00:00")
        samples = {"requests_per_task": [Sample(now, value)]}
        return decide(Situation([rps], CapacityNow(low, desired, 20), now, samples, history))

    first = at("09:00:00", 3, 1500, [])
    assert first.new_desired == 5
    assert at("09:00:30", 5, 1500, [first]).new_desired is None
    third = at("09:01:30", 5, 1300, [first])
    assert third.new_desired == 7
    fourth = at("12:00:00", 7, 400, [first, third])
    assert fourth.new_desired == 3
    assert at("12:05:00", 3, 100, [first, third, fourth]).new_desired is None  # scale-in cooldown
    morning = at("07:00:00", 3, 100, [], low=6)  # after the morning action set min 6
    assert (morning.new_desired, morning.reason) == (6, "desired 3 outside min..max 6..20")
