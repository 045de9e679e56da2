"""No container outlives its task (issue 13, finding 1), on a fake driver.

* ``launch`` heartbeats while the driver pulls, and a cancelled launch (a
  kill, a timeout) ends only once what it started is removed;
* ``supervise`` that hears its activity is gone (``not_found``) stops and
  removes the container when the job no longer runs the attempt, and leaves it
  when the job still does (a service's run that continued as new adopts it);
* the agent's reconcile asks each job once, however many containers it has.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment

from titus_flow.activities.agent import AgentActivities
from titus_flow.agent import remove_orphans
from titus_flow.contracts import LaunchInput, SuperviseInput
from titus_flow.lifecycle import FinishReason, TaskState
from titus_flow.runtime.base import (
    DriverError,
    EngineUnavailableError,
    Exit,
    LaunchRequest,
    ManagedContainer,
    attempt_name,
    run_to_end,
)
from titus_flow.spec import Container, Resources
from titus_flow.views import JobView, TaskView

AGENT = "agent-1"


@dataclass
class SlowPullDriver:
    """Containers in a dict; a launch "pulls" until ``pulled`` is set, then creates."""

    name: str = "fake"
    pulled: asyncio.Event = field(default_factory=asyncio.Event)
    pulling: asyncio.Event = field(default_factory=asyncio.Event)
    containers: dict[str, ManagedContainer] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    async def launch(self, request: LaunchRequest) -> None:
        await run_to_end(self._launch(request))

    async def _launch(self, request: LaunchRequest) -> None:
        self.pulling.set()
        await self.pulled.wait()
        self.containers[request.name] = ManagedContainer(
            request.name, request.job_id, request.task_id, request.attempt, True, request.agent_id
        )

    async def wait(self, name: str, timeout: float) -> Exit | None:
        container = self.containers.get(name)
        if container is None:
            raise DriverError(f"no container {name}")
        if container.running:
            await asyncio.sleep(min(timeout, 0.01))
            return None
        return Exit(exit_code=137, finished_at=datetime.now(UTC))

    async def stop(self, name: str, grace: float) -> None:
        if name in self.containers:
            self.containers[name] = ManagedContainer(
                **{**self.containers[name].__dict__, "running": False}
            )

    async def save_output(self, name: str, log_path: Path) -> None:
        return None

    async def remove(self, name: str, log_path: Path | None) -> None:
        if self.containers.pop(name, None) is not None:
            self.removed.append(name)

    async def list_managed(self) -> list[ManagedContainer]:
        return list(self.containers.values())


class FakeTemporal:
    """Answers describe and the ``describe`` query of job workflows; counts the queries."""

    def __init__(
        self,
        jobs: dict[str, tuple[WorkflowExecutionStatus, list[TaskView]]],
        total_tasks: int | None = None,
    ) -> None:
        self.jobs = jobs
        self.total_tasks = total_tasks  # set: the views are bounded, holding some rows only
        self.queries: list[str] = []

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> Any:
        return self.get_workflow_handle_for(None, workflow_id)

    def get_workflow_handle_for(self, _run: object, workflow_id: str, **_: Any) -> Any:
        status, tasks = self.jobs[workflow_id]
        temporal = self

        class Handle:
            async def describe(self) -> Any:
                return type("Description", (), {"status": status})()

            async def query(self, *_: Any, **__: Any) -> JobView:
                temporal.queries.append(workflow_id)
                return JobView(
                    id=workflow_id,
                    name="j",
                    type="batch",
                    tasks=tasks,
                    total_tasks=temporal.total_tasks,
                )

        return Handle()


def _launch_input(task_id: str = "job-1-0", attempt: int = 1) -> LaunchInput:
    return LaunchInput(
        job_id="job-1",
        task_id=task_id,
        task_index=0,
        attempt=attempt,
        container=Container(image="slow/image:1", command=["true"]),
        resources=Resources(cpu=0.1, memory=16),
    )


async def _eventually(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_a_launch_killed_during_its_pull_removes_what_it_started(tmp_path: Path) -> None:
    driver = SlowPullDriver()
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path, heartbeat_every=0.01)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    launching = asyncio.create_task(env.run(agent.launch, _launch_input()))
    await driver.pulling.wait()
    await _eventually(lambda: len(beats) >= 2)  # it heartbeats while it pulls

    env.cancel()  # the task is killed
    await asyncio.sleep(0.05)
    assert not launching.done(), "the cancellation must wait for the pull to settle"
    driver.pulled.set()  # the pull ends; the driver creates the container
    with pytest.raises(asyncio.CancelledError):
        await launching

    assert driver.containers == {}
    assert driver.removed == [attempt_name("job-1-0", 1)]


async def test_a_launch_of_an_agent_shutting_down_leaves_the_container_to_its_retry(
    tmp_path: Path,
) -> None:
    driver = SlowPullDriver()
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path, heartbeat_every=0.01)
    env = ActivityEnvironment()
    launching = asyncio.create_task(env.run(agent.launch, _launch_input()))
    await driver.pulling.wait()
    env.cancel(ActivityCancellationDetails(worker_shutdown=True))
    driver.pulled.set()
    with pytest.raises(asyncio.CancelledError):
        await launching
    assert driver.removed == []


@pytest.mark.parametrize(
    ("status", "task_state", "attempt", "removed"),
    [
        (WorkflowExecutionStatus.TERMINATED, TaskState.STARTED, 1, True),
        (WorkflowExecutionStatus.RUNNING, TaskState.FINISHED, 1, True),
        (WorkflowExecutionStatus.RUNNING, TaskState.STARTED, 2, True),
        # The run continued as new and holds the task: its supervise adopts it.
        (WorkflowExecutionStatus.RUNNING, TaskState.STARTED, 1, False),
    ],
    ids=["job-terminated", "task-finished", "later-attempt", "still-current"],
)
async def test_a_supervise_whose_activity_is_gone_removes_a_container_nobody_runs(
    tmp_path: Path,
    status: WorkflowExecutionStatus,
    task_state: TaskState,
    attempt: int,
    removed: bool,
) -> None:
    driver = SlowPullDriver()
    driver.pulled.set()
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path, heartbeat_every=0.01)
    task = TaskView(id="job-1-0", index=0, state=task_state, attempt=attempt)
    env = ActivityEnvironment(client=cast(Client, FakeTemporal({"job-1": (status, [task])})))
    await env.run(agent.launch, _launch_input())
    watch = SuperviseInput(task_id="job-1-0", attempt=1, started_at=datetime.now(UTC))
    supervising = asyncio.create_task(env.run(agent.supervise, watch))
    await asyncio.sleep(0.05)
    env.cancel(ActivityCancellationDetails(not_found=True))
    with pytest.raises(asyncio.CancelledError):
        await supervising
    assert (driver.removed == [attempt_name("job-1-0", 1)]) is removed


async def test_reconcile_asks_each_job_once_and_removes_only_orphans(tmp_path: Path) -> None:
    driver = SlowPullDriver()
    for job, index, attempt in [("a", 0, 1), ("a", 1, 1), ("a", 2, 1), ("b", 0, 1), ("a", 3, 1)]:
        name = attempt_name(f"{job}-{index}", attempt)
        driver.containers[name] = ManagedContainer(
            name, job, f"{job}-{index}", attempt, True, AGENT
        )
    other = attempt_name("c-0", 1)  # another agent's, on the same engine: not ours to judge
    driver.containers[other] = ManagedContainer(other, "c", "c-0", 1, True, "agent-2")
    temporal = FakeTemporal(
        {
            "a": (
                WorkflowExecutionStatus.RUNNING,
                [
                    TaskView(id="a-0", index=0, state=TaskState.STARTED, attempt=1),
                    TaskView(id="a-1", index=1, state=TaskState.FINISHED, attempt=1),
                    TaskView(id="a-2", index=2, state=TaskState.STARTED, attempt=2),
                ],
            ),
            "b": (WorkflowExecutionStatus.CANCELED, []),
        }
    )
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path)
    removed = await remove_orphans(cast(Client, temporal), cast(Any, driver), agent)

    assert removed == 4
    assert sorted(driver.containers) == sorted([attempt_name("a-0", 1), other])
    assert temporal.queries == ["a"]  # one view for job a's four containers, none for b


async def test_reconcile_keeps_a_container_whose_task_a_bounded_view_left_out(
    tmp_path: Path,
) -> None:
    driver = SlowPullDriver()
    name = attempt_name("a-7", 1)
    driver.containers[name] = ManagedContainer(name, "a", "a-7", 1, True, AGENT)
    rows = [TaskView(id="a-0", index=0, state=TaskState.FINISHED, attempt=1)]
    temporal = FakeTemporal({"a": (WorkflowExecutionStatus.RUNNING, rows)}, total_tasks=400)
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path)
    assert await remove_orphans(cast(Client, temporal), cast(Any, driver), agent) == 0
    assert list(driver.containers) == [name]


@dataclass
class RestartingEngineDriver(SlowPullDriver):
    """An engine that does not answer ``outage`` waits, then reports the exit."""

    outage: int = 3
    waits: int = 0

    async def wait(self, name: str, timeout: float) -> Exit | None:
        self.waits += 1
        if self.waits <= self.outage:
            raise EngineUnavailableError("docker wait failed: connection aborted")
        return Exit(exit_code=0, finished_at=datetime.now(UTC))


async def test_a_supervise_waits_out_an_engine_restart_and_reports_the_exit(
    tmp_path: Path,
) -> None:
    """Failing instead would leave a gap (the retry's backoff) where a kill stops nothing."""
    driver = RestartingEngineDriver()
    driver.pulled.set()
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path, heartbeat_every=0.01)
    env = ActivityEnvironment()
    await env.run(agent.launch, _launch_input())
    watch = SuperviseInput(task_id="job-1-0", attempt=1, started_at=datetime.now(UTC))
    result = await env.run(agent.supervise, watch)
    assert driver.waits == driver.outage + 1
    assert (result.reason, result.exit_code) == (FinishReason.NORMAL, 0)


@dataclass
class EngineDownAtLaunchDriver(SlowPullDriver):
    """An engine that does not answer the first ``outage`` launches."""

    outage: int = 2
    launches: int = 0

    async def launch(self, request: LaunchRequest) -> None:
        self.launches += 1
        if self.launches <= self.outage:
            raise EngineUnavailableError("docker launch failed: connection aborted")
        await super().launch(request)


async def test_a_launch_waits_out_an_engine_restart_and_launches_once(tmp_path: Path) -> None:
    """Failing instead ended the attempt while its container could still start (chaos suite)."""
    driver = EngineDownAtLaunchDriver()
    driver.pulled.set()
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path, heartbeat_every=0.01)
    await ActivityEnvironment().run(agent.launch, _launch_input())
    assert driver.launches == driver.outage + 1
    assert list(driver.containers) == [attempt_name("job-1-0", 1)]


@dataclass
class EngineDownAtStopDriver(SlowPullDriver):
    """An engine that does not answer the first ``outage`` stops."""

    outage: int = 2
    stops: int = 0

    async def stop(self, name: str, grace: float) -> None:
        self.stops += 1
        if self.stops <= self.outage:
            raise EngineUnavailableError("docker stop failed: connection aborted")
        await super().stop(name, grace)


async def test_a_stop_waits_out_an_engine_restart_and_removes_the_container(
    tmp_path: Path,
) -> None:
    """Failing instead ended supervise with the container still running (chaos suite)."""
    driver = EngineDownAtStopDriver()
    driver.pulled.set()
    agent = AgentActivities(AGENT, cast(Any, driver), tmp_path, heartbeat_every=0.01)
    env = ActivityEnvironment()
    await env.run(agent.launch, _launch_input())
    name = attempt_name("job-1-0", 1)
    await env.run(agent.stop_and_remove, name, "job-1-0", 1, "killed by request")
    assert driver.stops == driver.outage + 1
    assert driver.removed == [name]
