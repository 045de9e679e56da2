"""The schedule of a scheduled action, and the activity that keeps them (a fake Temporal client)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    ScheduleUpdate,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.activities.scaling_schedules import (
    CATCHUP_WINDOW,
    ScalingScheduleActivities,
    scaling_schedule,
)
from titus_flow.contracts.autoscaling import ScalingSchedules, ScheduledScalingInput
from titus_flow.refs import workflow_name
from titus_flow.spec import ScheduledAction
from titus_flow.workflows.scheduled_scaling import ScheduledScalingWorkflow

MORNING = ScheduledAction(name="morning", cron="0 8 * * mon-fri", min=6)


class FakeHandle:
    """A schedule handle of :class:`FakeTemporal`."""

    def __init__(self, temporal: FakeTemporal, sid: str) -> None:
        self.temporal = temporal
        self.sid = sid

    async def update(self, updater: Callable[[Any], ScheduleUpdate]) -> None:
        if self.sid not in self.temporal.schedules:
            raise RPCError("not found", RPCStatusCode.NOT_FOUND, b"")
        self.temporal.schedules[self.sid] = updater(None).schedule
        self.temporal.calls.append(f"update {self.sid}")

    async def delete(self) -> None:
        if self.temporal.schedules.pop(self.sid, None) is None:
            raise RPCError("not found", RPCStatusCode.NOT_FOUND, b"")
        self.temporal.calls.append(f"delete {self.sid}")


class FakeTemporal:
    """The schedule calls of a Temporal client, on a dict; ``refuse`` fails every create."""

    def __init__(self, refuse: RPCStatusCode | None = None) -> None:
        self.schedules: dict[str, Schedule] = {}
        self.calls: list[str] = []
        self.refuse = refuse

    async def create_schedule(self, sid: str, schedule: Schedule) -> None:
        if self.refuse is not None:
            raise RPCError("refused", self.refuse, b"")
        if sid in self.schedules:
            raise ScheduleAlreadyRunningError()
        self.schedules[sid] = schedule
        self.calls.append(f"create {sid}")

    def get_schedule_handle(self, sid: str) -> FakeHandle:
        return FakeHandle(self, sid)


def activities(temporal: FakeTemporal) -> ScalingScheduleActivities:
    return ScalingScheduleActivities(cast(Client, temporal))


def test_the_schedule_starts_the_scaling_workflow_on_the_cron_in_utc() -> None:
    schedule = scaling_schedule("web-1", "control", MORNING)
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == workflow_name(ScheduledScalingWorkflow.run)
    assert action.id == "web-1-scaling-morning" and action.task_queue == "control"
    assert action.args == [ScheduledScalingInput(job_id="web-1", action=MORNING)]
    assert schedule.spec.cron_expressions == ["0 8 * * mon-fri"]
    assert not schedule.spec.time_zone_name  # UTC
    assert schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    assert schedule.policy.catchup_window == CATCHUP_WINDOW


async def test_sync_creates_then_updates_in_place_and_deletes_idempotently() -> None:
    temporal = FakeTemporal()
    sync = activities(temporal).sync_scaling_schedules
    night = ScheduledAction(name="night", cron="0 22 * * *", max=4)
    await sync(ScalingSchedules(job_id="web-1", task_queue="q", actions=[MORNING, night]))
    later = MORNING.model_copy(update={"min": 8})
    await sync(ScalingSchedules(job_id="web-1", task_queue="q", actions=[later], remove=["night"]))
    # A retry of the same call: nothing made twice, the missing schedule counts as deleted.
    await sync(ScalingSchedules(job_id="web-1", task_queue="q", actions=[later], remove=["night"]))
    assert temporal.calls == [
        "create web-1-scaling-morning",
        "create web-1-scaling-night",
        "update web-1-scaling-morning",
        "delete web-1-scaling-night",
        "update web-1-scaling-morning",
    ]
    (kept,) = temporal.schedules.values()
    assert isinstance(kept.action, ScheduleActionStartWorkflow)
    assert kept.action.args == [ScheduledScalingInput(job_id="web-1", action=later)]


async def test_a_refused_schedule_fails_for_good_a_transient_error_is_retried() -> None:
    request = ScalingSchedules(job_id="web-1", task_queue="q", actions=[MORNING])
    with pytest.raises(ApplicationError) as refused:
        await activities(FakeTemporal(RPCStatusCode.INVALID_ARGUMENT)).sync_scaling_schedules(
            request
        )
    assert refused.value.non_retryable and refused.value.type == "ScheduleRefused"
    with pytest.raises(RPCError):  # the activity's retry policy tries again
        await activities(FakeTemporal(RPCStatusCode.UNAVAILABLE)).sync_scaling_schedules(request)
