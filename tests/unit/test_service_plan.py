"""The service job's decisions as a pure plan (issue #17): table tests and properties.

:func:`~titus_flow.service_plan.reconcile.reconcile` and the request rules of
:mod:`titus_flow.service_plan.requests`, without Temporal: scale up and down,
rolling updates within ``max_surge`` / ``max_unavailable``, canaries, promotion,
rollback on failures and on the health deadline, moves off draining agents,
held kills under the disruption budget (0 included), the crash loop, the
hand-over to a fresh history. Hypothesis checks the invariants on arbitrary
snapshots: no kill the plan orders takes the job below its disruption budget,
starts stay within ``desired + max_surge``, revisions only go up.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from titus_flow import (
    Capacity,
    Container,
    DisruptionBudget,
    RollingUpdate,
    ServiceJob,
    TcpCheck,
)
from titus_flow.lifecycle import FinishReason, JobState, RolloutPhase, TaskState
from titus_flow.service_plan import requests as rules
from titus_flow.service_plan.model import (
    TICK,
    CrashLoop,
    EndedTask,
    KillTask,
    LiveTask,
    Plan,
    Rollout,
    Snapshot,
    StartTask,
    allowed_unavailable,
    patch,
)
from titus_flow.service_plan.reconcile import reconcile, roll_back

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
SCALED_DOWN = FinishReason.SCALED_DOWN
KILLED = FinishReason.KILLED


def job(
    desired: int = 3,
    *,
    surge: int = 1,
    unavailable: int = 0,
    budget: int | str = 1,
    deadline: timedelta = timedelta(minutes=5),
    image: str = "web:1",
) -> ServiceJob:
    """A service spec with the knobs the plan reads."""
    return ServiceJob(
        name="web",
        container=Container(image=image, command="serve", ports=["http"]),
        health_check=TcpCheck(port="http"),
        capacity=Capacity(min=0, desired=desired, max=max(desired, 10)),
        update=RollingUpdate(
            max_surge=surge, max_unavailable=unavailable, healthy_deadline=deadline
        ),
        disruption_budget=DisruptionBudget(max_unavailable=budget),
    )


def task(index: int, revision: int = 1, healthy: bool = True, **fields: Any) -> LiveTask:
    """Live task ``t<index>``, placed a minute ago."""
    fields.setdefault("launched_at", NOW - timedelta(minutes=1))
    return LiveTask(id=f"t{index}", number=index, revision=revision, healthy=healthy, **fields)


def update_to(old: ServiceJob, new: ServiceJob, *, canary: int | None = None) -> Rollout:
    """Revision 2 (``new``) rolling out over revision 1 (``old``), started two minutes ago."""
    return Rollout(
        job=new,
        revision=2,
        latest_revision=2,
        previous=old,
        previous_revision=1,
        canary=canary,
        phase=RolloutPhase.ROLLING if canary is None else RolloutPhase.CANARY,
        started_at=NOW - timedelta(minutes=2),
    )


def snap(spec: ServiceJob | Rollout, *tasks: LiveTask, **fields: Any) -> Snapshot:
    """A snapshot at NOW of ``tasks`` (a spec alone: revision 1, no update)."""
    rollout = spec if isinstance(spec, Rollout) else Rollout(job=spec)
    return Snapshot(now=NOW, rollout=rollout, tasks=tasks, **fields)


def kills(plan: Plan) -> list[tuple[str, FinishReason, str | None]]:
    return [(k.task_id, k.reason, k.message) for k in plan.kills]


# --- steady state and scaling ----------------------------------------------------


def test_steady_state_does_nothing() -> None:
    plan = reconcile(snap(job(3), task(0), task(1), task(2)))
    assert plan.actions == ()
    assert plan.state == (JobState.RUNNING, "")
    assert plan.wake is None and plan.waiting == () and not plan.rolled_back


def test_scale_up_starts_the_missing_tasks_on_the_current_revision() -> None:
    plan = reconcile(snap(job(3), task(0)))
    assert plan.actions == (StartTask(1), StartTask(1))
    assert plan.state == (JobState.RUNNING, "1/3 healthy")


def test_a_job_not_started_yet_keeps_its_state() -> None:
    assert reconcile(snap(job(2), state=JobState.ACCEPTED)).state is None


def test_scale_down_removes_unhealthy_first_then_newest() -> None:
    tasks = (task(0), task(1, healthy=False), task(2), task(3), task(4, healthy=False))
    plan = reconcile(snap(job(5), *tasks, scaled=Capacity(desired=2, max=5)))
    assert kills(plan) == [
        ("t4", SCALED_DOWN, "scaled down"),
        ("t1", SCALED_DOWN, "scaled down"),
        ("t3", SCALED_DOWN, "scaled down"),
    ]
    assert plan.starts == []


def test_a_task_already_stopping_is_not_killed_again() -> None:
    tasks = (task(0), task(1), task(2, stopping=True, healthy=False))
    plan = reconcile(snap(job(3), *tasks, scaled=Capacity(desired=2)))
    assert plan.actions == ()


# --- rolling updates -------------------------------------------------------------


def test_rolling_update_surges_first_and_holds_old_tasks_until_new_ones_are_healthy() -> None:
    rollout = update_to(job(3), job(3, image="web:2"))
    plan = reconcile(snap(rollout, task(0), task(1), task(2)))
    assert plan.actions == (StartTask(2),)
    assert plan.waiting == ("update: t0 stays until new tasks are healthy",)


def test_rolling_update_retires_an_old_task_per_healthy_new_one() -> None:
    rollout = update_to(job(3), job(3, image="web:2"))
    plan = reconcile(snap(rollout, task(0), task(1), task(2), task(3, revision=2)))
    assert kills(plan) == [("t0", KILLED, "replaced by rolling update")]
    assert plan.waiting == ("update: t1 stays until new tasks are healthy",)
    assert plan.starts == []  # surge in use until t0 is gone


def test_rolling_update_with_max_unavailable_retires_without_surge() -> None:
    rollout = update_to(job(3), job(3, image="web:2", surge=0, unavailable=1))
    plan = reconcile(snap(rollout, task(0), task(1), task(2)))
    assert kills(plan) == [("t0", KILLED, "replaced by rolling update")]
    assert plan.starts == []  # no room until t0 has gone
    assert plan.waiting == ("update: t1 stays until new tasks are healthy",)


def test_unhealthy_old_tasks_go_first_whatever_the_floor() -> None:
    rollout = update_to(job(2), job(2, image="web:2"))
    plan = reconcile(snap(rollout, task(0), task(1, healthy=False)))
    assert kills(plan)[0] == ("t1", KILLED, "replaced by rolling update")


def test_rolling_update_is_rolled_out_once_every_new_task_is_healthy() -> None:
    rollout = update_to(job(2), job(2, image="web:2"))
    plan = reconcile(snap(rollout, task(3, revision=2), task(4, revision=2)))
    assert plan.rollout.phase is RolloutPhase.ROLLED_OUT
    assert plan.rollout.message == "revision 2 rolled out"
    assert plan.rollout.started_at is None
    assert plan.rollout.previous is not None  # the job can still be rolled back by request


def test_new_tasks_not_healthy_yet_set_the_health_deadline_alarm() -> None:
    rollout = update_to(job(1), job(1, image="web:2"))
    placed = NOW - timedelta(minutes=1)
    plan = reconcile(snap(rollout, task(0), task(1, revision=2, healthy=False, launched_at=placed)))
    assert plan.wake == (placed + timedelta(minutes=5) + TICK, "update health deadline")
    assert not plan.rolled_back


def test_update_rolls_back_when_new_tasks_miss_their_health_deadline() -> None:
    rollout = update_to(job(1), job(1, image="web:2"))
    late = NOW - timedelta(minutes=6)
    plan = reconcile(snap(rollout, task(0), task(1, revision=2, healthy=False, launched_at=late)))
    assert plan.rolled_back
    assert plan.rollout.revision == 1 and plan.rollout.previous is None
    assert plan.rollout.phase is RolloutPhase.ROLLED_BACK
    assert plan.rollout.message == "revision 2 rolled back to 1: not healthy within 0:05:00"
    # The new task is old now: it goes (unhealthy, so the budget allows it).
    assert kills(plan) == [("t1", KILLED, "replaced by rolling update")]


def test_update_rolls_back_on_a_crash_loop_of_new_tasks() -> None:
    rollout = update_to(job(2), job(2, image="web:2"))
    ended = (EndedTask(2, FinishReason.FAILED),) * 3 + (EndedTask(2, KILLED), EndedTask(1, None))
    crash = CrashLoop(3, NOW + timedelta(seconds=8), "task t5 Failed: exit 1")
    plan = reconcile(snap(rollout, task(0), task(1), ended=ended, crash=crash))
    assert plan.rollout.message == "revision 2 rolled back to 1: 3 new task(s) failed"
    assert plan.crash == CrashLoop(0, NOW, "task t5 Failed: exit 1")  # starts at once again
    assert plan.rollout.latest_revision == 2  # revisions only go up


def test_after_a_rollback_the_bad_revision_is_retired_without_another_check() -> None:
    rolled, _ = roll_back(update_to(job(1), job(1, image="web:2")), CrashLoop(), "bad", NOW)
    late = NOW - timedelta(hours=1)
    plan = reconcile(snap(rolled, task(0), task(1, revision=2, healthy=False, launched_at=late)))
    assert not plan.rolled_back and plan.rollout == rolled
    assert kills(plan) == [("t1", KILLED, "replaced by rolling update")]


def test_rollback_without_a_previous_revision_number_takes_the_one_before() -> None:
    rollout = replace(update_to(job(1), job(1, image="web:2")), previous_revision=None)
    rolled, _ = roll_back(rollout, CrashLoop(), "by request", NOW)
    assert rolled.revision == 1


# --- canaries --------------------------------------------------------------------


def test_canary_moves_its_tasks_and_holds_the_rest() -> None:
    rollout = update_to(job(3), job(3, image="web:2"), canary=1)
    plan = reconcile(snap(rollout, task(0), task(1), task(2)))
    assert plan.actions == (StartTask(2),)
    assert plan.rollout.message == (
        "canary: revision 2 healthy on 0 of 1 task(s); promote or roll back"
    )


def test_canary_retires_one_old_task_once_its_new_one_is_healthy() -> None:
    rollout = update_to(job(3), job(3, image="web:2"), canary=1)
    plan = reconcile(snap(rollout, task(0), task(1), task(2), task(3, revision=2)))
    assert kills(plan) == [("t0", KILLED, "replaced by rolling update")]
    assert "healthy on 1 of 1" in plan.rollout.message
    assert plan.rollout.phase is RolloutPhase.CANARY  # held until promoted


def test_canary_replaces_a_lost_old_task_on_the_old_revision() -> None:
    rollout = update_to(job(3), job(3, image="web:2"), canary=1)
    plan = reconcile(snap(rollout, task(0), task(3, revision=2)))
    assert plan.actions == (StartTask(1),)


def test_promote_rolls_the_canary_out_to_every_task() -> None:
    rollout = rules.promote(update_to(job(3), job(3, image="web:2"), canary=1), NOW)
    assert rollout.canary is None and rollout.phase is RolloutPhase.ROLLING
    assert rollout.message == "promoting revision 2 to every task" and rollout.started_at == NOW
    plan = reconcile(snap(rollout, task(0), task(1), task(3, revision=2)))
    assert plan.starts == [StartTask(2)]


# --- draining agents, held kills, the disruption budget ---------------------------


def test_a_task_on_a_draining_agent_stays_until_its_replacement_is_healthy() -> None:
    plan = reconcile(snap(job(2), task(0), task(1, moving=True, agent="a1")))
    assert plan.actions == (StartTask(1),)
    assert plan.waiting == ("move: t1 stays until its replacement is healthy",)


def test_a_task_on_a_draining_agent_moves_once_replaced() -> None:
    tasks = (task(0), task(1, moving=True, agent="a1"), task(2))
    plan = reconcile(snap(job(2), *tasks))
    assert kills(plan) == [("t1", KILLED, "moved off draining agent a1")]


def test_a_rolling_update_waits_for_the_disruption_budget() -> None:
    # The update would take two old tasks at once; the budget allows one.
    rollout = update_to(job(3), job(3, image="web:2", surge=0, unavailable=2, budget=1))
    plan = reconcile(snap(rollout, task(0), task(1), task(2)))
    assert kills(plan) == [("t0", KILLED, "replaced by rolling update")]
    assert plan.waiting == (
        "replaced by rolling update: t1 waits for the disruption budget",
        "replaced by rolling update: t2 waits for the disruption budget",
    )


def test_held_kill_goes_once_the_budget_allows() -> None:
    plan = reconcile(snap(job(3), task(0), task(1), task(2), held_kills=("t0", "gone")))
    assert kills(plan) == [("t0", KILLED, None)]
    assert plan.held_kills == ()


def test_a_held_kill_of_a_task_the_pass_already_retired_is_done() -> None:
    rollout = update_to(job(3), job(3, image="web:2"))
    tasks = (task(0), task(1), task(2), task(3, revision=2))
    plan = reconcile(snap(rollout, *tasks, held_kills=("t0",)))
    assert kills(plan) == [("t0", KILLED, "replaced by rolling update")]
    assert plan.held_kills == ()


def test_held_kill_waits_for_the_budget() -> None:
    tasks = (task(0), task(1), task(2, healthy=False))
    plan = reconcile(snap(job(3), *tasks, held_kills=("t0",)))
    assert plan.kills == [] and plan.held_kills == ("t0",)
    assert plan.waiting == ("kill of t0 waits for the disruption budget",)


def test_zero_budget_starts_a_replacement_before_a_held_kill() -> None:
    plan = reconcile(snap(job(2, budget=0), task(0), task(1), held_kills=("t0",)))
    assert plan.actions == (StartTask(1),)
    assert plan.waiting == (
        "kill of t0 waits for its replacement to be healthy (disruption budget 0)",
    )
    replaced = reconcile(snap(job(2, budget=0), task(0), task(1), task(2), held_kills=("t0",)))
    assert kills(replaced) == [("t0", KILLED, None)]


def test_zero_budget_update_surges_at_least_one() -> None:
    rollout = update_to(job(2), job(2, image="web:2", surge=0, unavailable=1, budget=0))
    assert reconcile(snap(rollout, task(0), task(1))).actions == (StartTask(2),)


def test_previous_release_raised_a_zero_budget_to_one() -> None:
    spec = job(2, budget=0)
    plan = reconcile(snap(spec, task(0), task(1), held_kills=("t0",), zero_budget=patch(False)))
    assert kills(plan) == [("t0", KILLED, None)]
    assert allowed_unavailable(spec, 2, patch(False)) == 1
    assert allowed_unavailable(spec, 0, patch(False)) == 0


def test_the_zero_budget_patch_is_asked_only_where_the_budget_is_read() -> None:
    asked: list[bool] = []

    def flag() -> bool:
        asked.append(True)
        return True

    spec = job(2, budget=0)
    reconcile(snap(spec, task(0), task(1), zero_budget=flag))  # nothing to disrupt
    assert asked == []
    reconcile(snap(spec, task(0), task(1), held_kills=("t1",), zero_budget=flag))
    assert asked


# --- crash loop and hand-over ------------------------------------------------------


def test_crash_loop_backoff_holds_starts_and_sets_the_alarm() -> None:
    at = NOW + timedelta(seconds=8)
    crash = CrashLoop(3, at, "task t4 Failed: exit 1")
    plan = reconcile(snap(job(1), crash=crash))
    assert plan.starts == []
    assert plan.wake == (at, "crash-loop backoff ends")
    state, message = plan.state or (None, "")
    assert state is JobState.DEGRADED
    assert (
        message == "0/1 healthy; task t4 Failed: exit 1;"
        " crash-loop backoff: next start in 8s (at 12:00:08 UTC)"
    )


def test_the_alarm_is_for_the_earliest_decision_of_the_clock() -> None:
    rollout = update_to(job(2), job(2, image="web:2"))
    placed = NOW - timedelta(seconds=299)  # its health deadline passes in a second
    tasks = (task(0), task(1, revision=2, healthy=False, launched_at=placed))
    crash = CrashLoop(3, NOW + timedelta(seconds=8), "task t9 Failed: exit 1")
    plan = reconcile(snap(rollout, *tasks, crash=crash))
    assert plan.wake == (placed + timedelta(minutes=5) + TICK, "update health deadline")
    assert plan.starts == []  # the backoff holds the start, its end is later


def test_crash_loop_without_a_reason_to_wait_shows_degraded() -> None:
    plan = reconcile(snap(job(1), crash=CrashLoop(1, NOW, "task t0 Failed: exit 1")))
    assert plan.starts == [StartTask(1)]
    assert plan.state == (JobState.DEGRADED, "0/1 healthy; task t0 Failed: exit 1")


def test_starts_wait_for_the_hand_over_to_a_fresh_history() -> None:
    plan = reconcile(snap(job(2), task(0), continue_due=True))
    assert plan.starts == []
    assert plan.waiting == ("handing over to a fresh history: starts resume shortly",)


def test_crash_backoff_grows_from_the_second_failure_and_is_capped() -> None:
    delays = [rules.crash_backoff(n).total_seconds() for n in range(0, 12)]
    assert delays[:5] == [0, 0, 2, 4, 8]
    assert delays[-1] == rules.CRASH_BACKOFF_MAX.total_seconds()


@pytest.mark.parametrize(
    ("reason", "check", "started", "served", "crash"),
    [
        (KILLED, True, None, False, False),
        (SCALED_DOWN, False, None, False, False),
        (FinishReason.FAILED, True, None, False, True),
        (FinishReason.FAILED, True, None, True, False),
        (FinishReason.FAILED, False, None, False, True),
        (FinishReason.FAILED, False, NOW - timedelta(seconds=3), False, True),
        (FinishReason.LOST, False, NOW - timedelta(minutes=1), False, False),
    ],
)
def test_only_tasks_that_never_served_count_toward_a_crash_loop(
    reason: FinishReason, check: bool, started: datetime | None, served: bool, crash: bool
) -> None:
    assert (
        rules.crashed(reason, has_health_check=check, started_at=started, served=served, now=NOW)
        is crash
    )


def test_crash_loop_backs_off_and_heals() -> None:
    crash = rules.after_crash(rules.after_crash(CrashLoop(), "first", NOW), "second", NOW)
    assert crash == CrashLoop(2, NOW + timedelta(seconds=2), "second")
    assert rules.healed(crash) == CrashLoop(0, NOW + timedelta(seconds=2), "")


def test_previous_release_rechecked_every_five_seconds_or_at_the_backoff_end() -> None:
    assert rules.recheck_in(NOW, None) == rules.RECHECK_EVERY
    assert rules.recheck_in(NOW, NOW - timedelta(seconds=1)) == rules.RECHECK_EVERY
    assert rules.recheck_in(NOW, NOW + timedelta(seconds=2)) == timedelta(seconds=2)


def test_a_run_resumes_the_update_under_way() -> None:
    assert rules.update_resumes(RolloutPhase.ROLLING) and rules.update_resumes(RolloutPhase.CANARY)
    assert not rules.update_resumes(RolloutPhase.ROLLED_OUT)


def test_when_a_run_continues_as_new() -> None:
    assert rules.continue_floor(100) == 300 and rules.continue_floor(1000) == 1500
    assert not rules.continue_due(150, 200, True, 100)  # below the adopted tasks' floor
    assert rules.continue_due(250, 200, True, 10_000)
    assert rules.continue_due(250, 0, False, 200)
    assert not rules.continue_due(150, 0, False, 200)
    ready: dict[str, Any] = dict(
        due=True, launching=False, held_kills=False, always=True, length=250, limit=200
    )
    assert rules.ready_to_continue(**ready)
    assert not rules.ready_to_continue(**{**ready, "due": False})
    assert not rules.ready_to_continue(**{**ready, "launching": True})
    assert rules.ready_to_continue(**{**ready, "launching": True, "length": 401})
    assert rules.ready_to_continue(**{**ready, "held_kills": True})
    assert not rules.ready_to_continue(**{**ready, "held_kills": True, "always": False})


@pytest.mark.parametrize(
    ("state", "placed", "launching"),
    [
        (TaskState.ACCEPTED, False, False),
        (TaskState.ACCEPTED, True, True),
        (TaskState.START_INITIATED, True, True),
        (TaskState.STARTED, True, False),
        (TaskState.KILL_INITIATED, True, True),
    ],
)
def test_launching_tasks_are_those_placed_and_not_started(
    state: TaskState, placed: bool, launching: bool
) -> None:
    assert rules.launching(state, placed) is launching


# --- requests ----------------------------------------------------------------------


def test_scale_sets_the_given_fields_and_refuses_disorder() -> None:
    current = Capacity(min=1, desired=3, max=5)
    assert rules.scaled(current, 4, None, None) == Capacity(min=1, desired=4, max=5)
    assert rules.scaled(current, None, 0, 9) == Capacity(min=0, desired=3, max=9)
    with pytest.raises(rules.Rejected, match="got min=1, desired=6, max=5") as err:
        rules.scaled(current, 6, None, None)
    assert isinstance(err.value.__cause__, ValueError)


def test_an_update_starts_the_next_revision_and_keeps_the_current_to_roll_back_to() -> None:
    v1, v2 = job(3), job(3, image="web:2")
    rollout = rules.begin_rollout(Rollout(job=v1), v2, None, NOW, patch(True))
    assert rollout == Rollout(
        job=v2,
        revision=2,
        latest_revision=2,
        previous=v1,
        previous_revision=1,
        phase=RolloutPhase.ROLLING,
        message="rolling out revision 2",
        started_at=NOW,
    )
    canary = rules.begin_rollout(Rollout(job=v1), v2, 2, NOW, patch(True))
    assert canary is not None and canary.phase is RolloutPhase.CANARY
    assert canary.message == "canary: moving 2 task(s) to revision 2"


def test_the_same_rollout_again_is_a_no_op_from_this_release_on() -> None:
    rollout = update_to(job(3), job(3, image="web:2"))
    assert rules.begin_rollout(rollout, rollout.job, None, NOW, patch(True)) is None
    again = rules.begin_rollout(rollout, rollout.job, None, NOW, patch(False))
    assert again is not None and again.revision == 3


def test_an_update_after_a_rollback_takes_a_new_revision_number() -> None:
    rolled, _ = roll_back(update_to(job(3), job(3, image="web:2")), CrashLoop(), "bad", NOW)
    assert (rolled.revision, rolled.latest_revision) == (1, 2)
    again = rules.begin_rollout(rolled, job(3, image="web:3"), None, NOW, patch(True))
    assert again is not None and (again.revision, again.previous_revision) == (3, 1)


def test_request_validation() -> None:
    current = job(3)
    rules.check_same_job(current, job(3, image="web:2"))
    renamed = job(3).model_copy(update={"name": "api"})
    with pytest.raises(rules.Rejected, match="an update keeps the name"):
        rules.check_same_job(current, renamed)
    with pytest.raises(rules.Rejected, match="more than the job's desired 3"):
        rules.check_canary(current, current, 4, 3)
    rules.check_canary(current, current, 3, 3)
    with pytest.raises(rules.Rejected, match="no canary to promote"):
        rules.check_promote(Rollout(job=current))
    rules.check_promote(update_to(current, current, canary=1))
    with pytest.raises(rules.Rejected, match="nothing to roll back to"):
        rules.check_rollback(Rollout(job=current))
    rules.check_rollback(update_to(current, current))
    capacity = Capacity(min=2, desired=2, max=3)
    with pytest.raises(rules.Rejected, match="no running task 't9'"):
        rules.check_kill_task(False, "t9", False, capacity)
    with pytest.raises(rules.Rejected, match="below min"):
        rules.check_kill_task(True, "t0", True, capacity)
    rules.check_kill_task(True, "t0", False, capacity)


def kill(
    spec: ServiceJob,
    healthy: int,
    *,
    again: bool = False,
    shrink_once: bool = True,
    **request: bool,
) -> rules.KillDecision:
    """A kill_task decision for a healthy task of ``spec`` with ``healthy`` healthy tasks."""
    return rules.kill_task(
        job=spec,
        capacity=spec.capacity,
        healthy=healthy,
        victim_healthy=True,
        again=again,
        shrink=request.get("shrink", False),
        force=request.get("force", False),
        shrink_once=patch(shrink_once),
        zero_budget=patch(True),
    )


def test_kill_task_kills_within_the_budget_and_holds_beyond_it() -> None:
    assert kill(job(3), 3) == rules.KillDecision(None, True, "killed")
    assert kill(job(3), 2) == rules.KillDecision(None, False, "waiting for the disruption budget")
    assert kill(job(3), 2, force=True).kill_now
    assert kill(job(3, budget=0), 3).answer == (
        "waiting for the disruption budget (0): a replacement starts first"
    )


def test_kill_task_shrink_lowers_desired_once_per_task() -> None:
    shrunk = kill(job(3), 3, shrink=True)
    assert shrunk.shrunk == Capacity(min=0, desired=2, max=10) and shrunk.kill_now
    assert kill(job(3), 3, shrink=True, again=True).shrunk is None
    assert kill(job(3), 3, shrink=True, again=True, shrink_once=False).shrunk is not None


def test_plan_lists_its_starts_and_kills() -> None:
    rollout = update_to(job(2), job(2, image="web:2", surge=2, unavailable=1))
    plan = reconcile(snap(rollout, task(0), task(1)))
    assert plan.starts == [StartTask(2), StartTask(2)]
    assert plan.kills == [KillTask("t0", KILLED, "replaced by rolling update")]
    assert plan.actions == (*plan.starts, *plan.kills)


# --- properties --------------------------------------------------------------------


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """Any snapshot: an update (maybe a canary) or none, tasks of both revisions, held kills."""
    desired = draw(st.integers(0, 6))
    budget = draw(st.integers(0, 3) | st.sampled_from(["0%", "25%", "50%"]))
    surge = draw(st.integers(0, 3))
    spec = job(
        desired,
        surge=surge,
        unavailable=draw(st.integers(0 if surge else 1, 3)),  # one of them at least 1
        budget=budget,
    )
    updating = draw(st.booleans())
    if updating:
        new = spec.model_copy(update={"container": Container(image="web:2", command="serve")})
        canary = draw(st.none() | st.integers(1, max(desired, 1)))
        rollout = update_to(spec, new, canary=canary)
    else:
        rollout = Rollout(job=spec, phase=RolloutPhase.ROLLED_OUT)
    tasks = tuple(
        LiveTask(
            id=f"t{index}",
            number=index,
            revision=draw(st.sampled_from([1, 2] if updating else [1])),
            healthy=draw(st.booleans()),
            launched_at=NOW - timedelta(minutes=draw(st.integers(0, 8))),
            agent="a1",
            moving=draw(st.booleans()),
            stopping=draw(st.booleans()),
        )
        for index in range(draw(st.integers(0, 9)))
    )
    ids = [t.id for t in tasks]
    held = draw(st.lists(st.sampled_from([*ids, "gone"]), unique=True, max_size=3))
    failures = draw(st.integers(0, 4))
    return Snapshot(
        now=NOW,
        rollout=rollout,
        tasks=tasks,
        scaled=Capacity(min=0, desired=desired, max=10),  # a rollback keeps desired
        crash=CrashLoop(failures, NOW + timedelta(seconds=draw(st.integers(-5, 5)))),
        held_kills=tuple(held),
        ended=tuple(EndedTask(2, FinishReason.FAILED) for _ in range(draw(st.integers(0, 3)))),
        continue_due=draw(st.booleans()),
        zero_budget=patch(draw(st.booleans())),
    )


@settings(max_examples=400, deadline=None)
@given(snapshots())
def test_no_kill_takes_the_job_below_its_disruption_budget(snapshot: Snapshot) -> None:
    plan = reconcile(snapshot)
    desired = snapshot.capacity.desired
    allowed = allowed_unavailable(plan.rollout.job, desired, snapshot.zero_budget)
    retire_floor = desired - snapshot.rollout.job.update.max_unavailable
    healthy = {t.id for t in snapshot.tasks if t.healthy}
    for killed in plan.kills:
        if killed.task_id not in healthy:
            continue  # an unhealthy task serves nobody: taking it down costs nothing
        healthy.discard(killed.task_id)
        assert len(healthy) >= desired - allowed, (killed, plan)
        if killed.message == "replaced by rolling update":
            assert len(healthy) >= retire_floor, (killed, plan)
    assert len({k.task_id for k in plan.kills}) == len(plan.kills)  # each killed once
    stopping = {t.id for t in snapshot.tasks if t.stopping}
    assert not stopping & {k.task_id for k in plan.kills}


@settings(max_examples=400, deadline=None)
@given(snapshots())
def test_starts_stay_within_desired_plus_max_surge(snapshot: Snapshot) -> None:
    plan = reconcile(snapshot)
    desired = snapshot.capacity.desired
    rollout = plan.rollout
    held = set(snapshot.held_kills)
    replaced_first = (
        held
        if held and allowed_unavailable(snapshot.rollout.job, desired, snapshot.zero_budget) == 0
        else set()
    )
    staying = [t for t in snapshot.tasks if not t.moving and t.id not in replaced_first]
    old = [t for t in staying if t.revision != rollout.revision]
    surge = max(snapshot.rollout.job.update.max_surge, 1) if old else 0
    assert len(staying) + len(plan.starts) <= max(desired + surge, len(staying))
    current = [t for t in staying if t.revision == rollout.revision]
    new = [s for s in plan.starts if s.revision == rollout.revision]
    assert len(current) + len(new) <= max(desired, len(current))
    assert {s.revision for s in plan.starts} <= {rollout.revision, rollout.previous_revision}
    if snapshot.continue_due:
        assert plan.starts == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["update", "canary", "promote", "rollback"]), max_size=12))
def test_revisions_only_go_up(steps: list[str]) -> None:
    rollout, crash, seen = Rollout(job=job(3)), CrashLoop(), {1}
    for n, step in enumerate(steps):
        if step in ("update", "canary"):
            spec = job(3, image=f"web:{n + 2}")
            started = rules.begin_rollout(
                rollout, spec, 1 if step == "canary" else None, NOW, patch(True)
            )
            assert started is not None
            assert started.revision > max(seen) and started.latest_revision == started.revision
            rollout = started
            seen.add(rollout.revision)
        elif step == "promote" and rollout.canary is not None:
            rollout = rules.promote(rollout, NOW)
        elif step == "rollback" and rollout.previous is not None:
            latest = rollout.latest_revision
            rollout, crash = roll_back(rollout, crash, "by request", NOW)
            assert rollout.revision < latest == rollout.latest_revision
        assert rollout.latest_revision == max(seen)


@settings(max_examples=100, deadline=None)
@given(snapshots())
def test_the_plan_is_a_function_of_the_snapshot(snapshot: Snapshot) -> None:
    assert reconcile(snapshot) == reconcile(snapshot)
