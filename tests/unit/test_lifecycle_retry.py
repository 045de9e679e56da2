"""The retry rule of titus_flow/lifecycle.py and the policies of titus_flow/spec/retry.py:
which finished attempts are tried again, and after how long. Pure; no server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from titus_flow.lifecycle import (
    MAX_SYSTEM_RETRIES,
    PLATFORM_RETRY_MAX,
    FinishReason,
    JobState,
    RolloutPhase,
    platform_retry_delay,
    reason_for_exit,
    retry_delay,
)
from titus_flow.spec import Retry
from titus_flow.spec.retry import ExponentialBackoff, FixedBackoff, ImmediateBackoff

S = timedelta(seconds=1)
THREE = Retry(attempts=3, backoff=FixedBackoff(delay="10s"))


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 1 * S), (1, 1 * S), (2, 2 * S), (3, 4 * S), (5, 16 * S), (6, 30 * S), (10_000, 30 * S)],
)
def test_platform_retry_delay_doubles_up_to_its_cap(failures: int, delay: timedelta) -> None:
    assert platform_retry_delay(failures) == delay


@given(st.integers(min_value=-5, max_value=10**6))
def test_platform_retry_delay_is_bounded_and_never_shrinks(failures: int) -> None:
    delay = platform_retry_delay(failures)
    assert S <= delay <= PLATFORM_RETRY_MAX
    assert platform_retry_delay(failures + 1) >= delay


@pytest.mark.parametrize(
    ("exit_code", "oom", "reason"),
    [(0, False, FinishReason.NORMAL), (3, False, FinishReason.FAILED), (0, True, "oom_killed")],
)
def test_reason_for_exit(exit_code: int, oom: bool, reason: FinishReason) -> None:
    assert reason_for_exit(exit_code, oom) == reason


# (policy, reason, exit code, user failures, system failures, platform backoff) -> delay
RULES: list[tuple[str, Retry, FinishReason, int | None, int, int, bool, timedelta | None]] = [
    ("success is final", THREE, FinishReason.NORMAL, 0, 0, 0, False, None),
    ("a kill is final", THREE, FinishReason.KILLED, None, 0, 0, False, None),
    ("scaled down is final", THREE, FinishReason.SCALED_DOWN, None, 0, 0, False, None),
    ("an invalid request is final", THREE, FinishReason.INVALID_REQUEST, None, 1, 0, False, None),
    ("a failure within budget", THREE, FinishReason.FAILED, 1, 1, 0, False, 10 * S),
    ("the last attempt failed", THREE, FinishReason.FAILED, 1, 3, 0, False, None),
    ("oom counts as the user's", THREE, FinishReason.OOM_KILLED, None, 2, 0, False, 10 * S),
    ("a crash counts as the user's", THREE, FinishReason.CRASHED, None, 3, 0, False, None),
    (
        "runtime limit, not retried",
        THREE,
        FinishReason.RUNTIME_LIMIT_EXCEEDED,
        None,
        1,
        0,
        False,
        None,
    ),
    (
        "runtime limit, retried",
        Retry(attempts=2, retry_on_runtime_limit=True),
        FinishReason.RUNTIME_LIMIT_EXCEEDED,
        None,
        1,
        0,
        False,
        timedelta(0),
    ),
    (
        "an exit code never retried",
        Retry(attempts=5, never_retry_on_exit_codes=[2]),
        FinishReason.FAILED,
        2,
        1,
        0,
        False,
        None,
    ),
    (
        "an exit code outside the retried ones",
        Retry(attempts=5, retry_on_exit_codes=[1]),
        FinishReason.FAILED,
        2,
        1,
        0,
        False,
        None,
    ),
    (
        "an exit code among the retried ones",
        Retry(attempts=5, retry_on_exit_codes=[1]),
        FinishReason.FAILED,
        1,
        1,
        0,
        False,
        timedelta(0),
    ),
    ("lost: the platform's, at once", Retry(), FinishReason.LOST, None, 9, 3, False, timedelta(0)),
    ("lost, with platform backoff", Retry(), FinishReason.LOST, None, 0, 3, True, 4 * S),
    ("system error, backoff", THREE, FinishReason.SYSTEM_ERROR, None, 0, 1, True, 1 * S),
    (
        "the platform gives up",
        THREE,
        FinishReason.LOST,
        None,
        0,
        MAX_SYSTEM_RETRIES,
        True,
        None,
    ),
]


@pytest.mark.parametrize(
    ("policy", "reason", "exit_code", "user", "system", "backoff", "delay"),
    [row[1:] for row in RULES],
    ids=[row[0] for row in RULES],
)
def test_retry_delay(
    policy: Retry,
    reason: FinishReason,
    exit_code: int | None,
    user: int,
    system: int,
    backoff: bool,
    delay: timedelta | None,
) -> None:
    got = retry_delay(policy, reason, exit_code, user, system, platform_backoff=backoff)
    assert got == delay


@given(
    reason=st.sampled_from(FinishReason),
    exit_code=st.none() | st.integers(min_value=0, max_value=255),
    user=st.integers(min_value=0, max_value=200),
    system=st.integers(min_value=0, max_value=200),
    backoff=st.booleans(),
)
def test_platform_failures_never_use_the_users_budget(
    reason: FinishReason, exit_code: int | None, user: int, system: int, backoff: bool
) -> None:
    """Titus rule: a lost or system-failed attempt is retried whatever the user's count."""
    one = Retry(attempts=1)
    delay = retry_delay(one, reason, exit_code, user, system, platform_backoff=backoff)
    if reason in (FinishReason.LOST, FinishReason.SYSTEM_ERROR):
        assert (delay is None) == (system >= MAX_SYSTEM_RETRIES)
    elif user >= 1:  # the one attempt is used up
        assert delay is None


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (ImmediateBackoff(), [0, 0, 0]),
        (FixedBackoff(delay="7s"), [7, 7, 7]),
        (ExponentialBackoff(initial="1s", max="5s"), [1, 2, 4, 5, 5]),
        (ExponentialBackoff(initial="2s", max="1h", multiplier=3.0), [2, 6, 18]),
    ],
)
def test_backoffs(
    backoff: ImmediateBackoff | FixedBackoff | ExponentialBackoff, delays: list[int]
) -> None:
    got = [backoff.delay_after(n).total_seconds() for n in range(1, len(delays) + 1)]
    assert got == delays


def test_an_exponential_backoff_never_overflows() -> None:
    huge = ExponentialBackoff(initial="1s", max="365d", multiplier=100.0)
    assert huge.delay_after(10**9) == timedelta(days=365)
    assert huge.delay_after(0) == S


def test_retry_shorthand_and_rules() -> None:
    assert Retry.model_validate({"backoff": "fixed"}).backoff == FixedBackoff()
    assert Retry.model_validate({"backoff": {"kind": "immediate"}}).backoff == ImmediateBackoff()
    with pytest.raises(ValidationError, match="in both"):
        Retry(retry_on_exit_codes=[1, 2], never_retry_on_exit_codes=[2])
    with pytest.raises(ValidationError, match="at least initial"):
        ExponentialBackoff(initial="1m", max="1s")
    rules = Retry(retry_on_exit_codes=[1, 3], never_retry_on_exit_codes=[2])
    assert [rules.retries_exit_code(c) for c in (1, 2, 3, 4)] == [True, False, True, False]
    assert Retry().retries_exit_code(42)


def test_final_job_states_and_settled_rollouts() -> None:
    assert {s for s in JobState if s.is_final} == {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.KILLED,
    }
    assert {p for p in RolloutPhase if p.is_settled} == {
        RolloutPhase.ROLLED_OUT,
        RolloutPhase.ROLLED_BACK,
    }
