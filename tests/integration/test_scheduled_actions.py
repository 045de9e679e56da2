"""Scheduled actions on Temporal Schedules, on the real dev server (issue #14).

The control worker is the real one (:func:`~titus_flow.worker.control_worker`)
in this process; no agent runs, so the tasks an action asks for stay pending:
the test reads min/desired/max, the decisions and the schedules, which is what
a scheduled action changes. The first test's crons are far away: it fires a
schedule with its handle's ``trigger()``; the second waits for a minute boundary.
"""

from __future__ import annotations

import secrets

import pytest
from temporalio.client import Client, ScheduleHandle
from temporalio.service import RPCError, RPCStatusCode
from titus_cluster import eventually

from titus_flow import Capacity, Container, Resources, ServiceJob
from titus_flow.autoscaling.scheduled import schedule_id
from titus_flow.client import TitusClient, ensure_scheduler
from titus_flow.client.connection import connect
from titus_flow.config import Settings
from titus_flow.lifecycle import JobState
from titus_flow.spec import Autoscaling, ScheduledAction
from titus_flow.worker import control_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEVER = "0 3 1 1 *"  # 03:00 on January 1st: only trigger() runs it in a test


def service(*actions: ScheduledAction) -> ServiceJob:
    """A service of 0..2 tasks with ``actions``."""
    return ServiceJob(
        name="scheduled",
        container=Container(image="busybox:latest", command="sleep 1d"),
        resources=Resources(cpu=0.1, memory=16),
        capacity=Capacity(min=0, desired=0, max=2),
        autoscaling=Autoscaling(scheduled=list(actions)),
    )


async def exists(handle: ScheduleHandle) -> bool:
    """Whether the schedule of ``handle`` is there."""
    try:
        await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def capacity_is(titus: TitusClient, job_id: str, expected: Capacity) -> bool:
    """Whether the job's capacity is ``expected`` now."""
    view = await titus.autoscaling(job_id)
    return (view.min, view.desired, view.max) == (expected.min, expected.desired, expected.max)


async def test_schedules_follow_the_job_set_capacity_and_go_with_it(dev_server: str) -> None:
    settings = Settings(address=dev_server, control_task_queue=f"sa{secrets.token_hex(3)}")
    temporal: Client = await connect(settings)
    titus = TitusClient(temporal, settings)
    morning = ScheduledAction(name="morning", cron=NEVER, min=1, desired=2, max=4)
    night = ScheduledAction(name="night", cron=NEVER, min=0, desired=0)
    async with control_worker(temporal, settings):
        await ensure_scheduler(temporal, settings)
        job_id = await titus.submit(service(morning, night))
        handles = {
            name: temporal.get_schedule_handle(schedule_id(job_id, name))
            for name in ("morning", "night")
        }

        async def both_made() -> bool:
            return all([await exists(handle) for handle in handles.values()])

        await eventually(both_made, 30, "a schedule per scheduled action")

        # The schedule starts the scaling workflow, which signals the job.
        await handles["morning"].trigger()
        await eventually(
            lambda: capacity_is(titus, job_id, Capacity(min=1, desired=2, max=4)),
            30,
            "the morning action applied",
        )
        decisions = (await titus.autoscaling(job_id)).decisions
        assert decisions[-1].policy == "scheduled:morning"
        assert (decisions[-1].old_desired, decisions[-1].new_desired) == (0, 2)

        # An update drops one action and changes the other: the schedules follow.
        await titus.update_service(job_id, service(morning.model_copy(update={"desired": 3})))

        async def night_deleted() -> bool:
            return not await exists(handles["night"])

        await eventually(night_deleted, 30, "the dropped action's schedule deleted")
        await handles["morning"].trigger()
        await eventually(
            lambda: capacity_is(titus, job_id, Capacity(min=1, desired=3, max=4)),
            30,
            "the changed morning action applied",
        )

        # Killing the job deletes its schedules.
        await titus.kill(job_id)
        assert (await titus.wait(job_id)).state is JobState.KILLED
        assert not await exists(handles["morning"])


@pytest.mark.slow  # waits for the next minute boundary: started first, it overlaps the rest
async def test_an_action_fires_on_its_own_at_its_cron_time(dev_server: str) -> None:
    settings = Settings(address=dev_server, control_task_queue=f"sa{secrets.token_hex(3)}")
    temporal: Client = await connect(settings)
    titus = TitusClient(temporal, settings)
    every_minute = ScheduledAction(name="every-minute", cron="* * * * *", desired=1)
    async with control_worker(temporal, settings):
        await ensure_scheduler(temporal, settings)
        job_id = await titus.submit(service(every_minute))
        try:
            # No trigger(): the server's schedule fires at the next minute.
            await eventually(
                lambda: capacity_is(titus, job_id, Capacity(min=0, desired=1, max=2)),
                90,
                "the every-minute action applied at its time",
            )
            decisions = (await titus.autoscaling(job_id)).decisions
            assert decisions[-1].policy == "scheduled:every-minute"
            assert (decisions[-1].old_desired, decisions[-1].new_desired) == (0, 1)
        finally:
            await titus.kill(job_id)
            await titus.wait(job_id)
