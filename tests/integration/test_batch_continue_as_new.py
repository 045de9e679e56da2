"""Batch runs that continue as new, and platform retries elsewhere (issues 11 and 13, finding 3/4).

A batch job (or partition) continues as new before its history nears Temporal's
limits, carrying its tasks: finished ones as compact rows, waiting ones with
their retry counts and backoff, Started ones as they run (the next run
supervises their containers again, without a second launch). Here with the
real control worker and fake agents in this process, and a low history limit.

An attempt lost to the platform is retried after a short backoff on another
agent when there is one, without using the user's retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from test_large_jobs import chain_histories, fake_agent, fake_launch
from titus_cluster import Cluster

from titus_flow import BatchJob, Container, Resources
from titus_flow.contracts import (
    AttemptExit,
    BatchJobInput,
    LaunchInput,
    LaunchResult,
    SuperviseInput,
)
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.spec import Retry
from titus_flow.views import TaskQuery
from titus_flow.workflows.batch import BatchJobWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

TASKS = 24
ATTEMPTS = 4
HISTORY_LIMIT = 150
"""Events after which a run continues as new: a few dozen attempts' worth."""


def _index(task_id: str) -> int:
    return int(task_id.rpartition("-")[2])


def _succeeds_at(index: int) -> int | None:
    """The attempt at which task ``index`` succeeds; None: never (a third of the tasks)."""
    return None if index % 3 == 0 else 1 + index % ATTEMPTS


class Agent:
    """A fake agent that counts launches and supervise calls per attempt."""

    def __init__(self) -> None:
        self.launches: Counter[tuple[str, int]] = Counter()
        self.supervised: Counter[tuple[str, int]] = Counter()
        self.supervised_again: defaultdict[tuple[str, int], asyncio.Event] = defaultdict(
            asyncio.Event
        )

    async def _run_until_supervised_again(self, key: tuple[str, int]) -> None:
        """Keep the attempt running (heartbeating) until a later run supervises it again.

        A condition, not a fixed time: on a slow machine a few seconds may not
        reach the first continue-as-new. Gives up after 90 s (the test then fails).
        """
        again = self.supervised_again[key]
        deadline = asyncio.get_running_loop().time() + 90
        while not again.is_set() and asyncio.get_running_loop().time() < deadline:
            activity.heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(again.wait(), 1)

    @activity.defn(name="launch")
    async def launch(self, request: LaunchInput) -> LaunchResult:
        self.launches[request.task_id, request.attempt] += 1
        return await fake_launch(request)

    @activity.defn(name="supervise")
    async def supervise(self, request: SuperviseInput) -> AttemptExit:
        """Tasks fail (with an output) until their attempt of success; each runs a while.

        The first attempts of some tasks run until a later run supervises them
        again: they are Started when a run continues as new.
        """
        key = request.task_id, request.attempt
        self.supervised[key] += 1
        if self.supervised[key] > 1:
            self.supervised_again[key].set()
        index = _index(request.task_id)
        if request.attempt == 1 and index % 6 == 1 and self.supervised[key] == 1:
            await self._run_until_supervised_again(key)
        await asyncio.sleep(0.3 + index % 5 * 0.1)
        success = _succeeds_at(_index(request.task_id))
        ok = success is not None and request.attempt >= success
        return AttemptExit(
            reason=FinishReason.NORMAL if ok else FinishReason.FAILED,
            exit_code=0 if ok else 3,
            message="" if ok else "exited with code 3",
            output={"attempt": request.attempt},
            log_tail=[] if ok else ["boom"],
            finished_at=datetime.now(UTC),
        )


async def test_a_job_of_retried_tasks_continues_as_new_and_ends_as_if_it_had_not(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    cluster.start_worker()
    client = await cluster.client()
    agent = Agent()
    job = BatchJob(
        name="continued",
        container=Container(image="busybox:latest", command="true"),
        resources=Resources(cpu=0.5, memory=8, disk=0, network_mbps=0),
        instances=TASKS,
        retry=Retry(attempts=ATTEMPTS),
    )
    async with fake_agent(cluster, client, [agent.launch, agent.supervise]):
        handle = await client.temporal.start_workflow(
            BatchJobWorkflow.run,
            BatchJobInput(job=job, submitted_at=datetime.now(UTC), history_limit=HISTORY_LIMIT),
            id=f"continued-{cluster.control_queue}",
            task_queue=cluster.control_queue,
        )
        job_id = handle.id
        view = await asyncio.wait_for(client.wait(job_id), timeout=120)
    runs = [len(events) for events in await chain_histories(client, job_id)]
    assert len(runs) >= 3, f"continued as new {len(runs) - 1} time(s): {runs}"
    # A run ends soon after the limit: launches in flight land, nothing starts.
    assert max(runs) < HISTORY_LIMIT * 2, runs
    # Each task as if the job had run in one go.
    failing = [i for i in range(TASKS) if _succeeds_at(i) is None]
    assert view.state is JobState.FAILED
    assert view.message.startswith(f"{len(failing)} of {TASKS} task(s) failed; first: task 0")
    assert view.counts() == {
        "Finished/normal": TASKS - len(failing),
        "Finished/failed": len(failing),
    }
    for task in view.tasks:
        success = _succeeds_at(task.index)
        attempts = ATTEMPTS if success is None else success
        assert (task.state, task.attempt) == (TaskState.FINISHED, attempts), task
        assert task.reason is (FinishReason.FAILED if success is None else FinishReason.NORMAL)
        assert [a.attempt for a in task.attempts] == list(range(1, attempts + 1))[-5:]
        assert all(a.state is TaskState.FINISHED and a.finished_at for a in task.attempts)
        assert task.output == {"attempt": attempts}
    # No attempt launched twice; some ran across a continue-as-new (supervised again).
    assert set(agent.launches.values()) == {1}
    assert sum(len(t.attempts) for t in view.tasks) == len(agent.launches)
    assert max(agent.supervised.values()) >= 2, "no Started task was carried over"
    page = await client.tasks(job_id, TaskQuery(states=["failed"], limit=3))
    assert [t.index for t in page.tasks] == failing[:3] and page.total == len(failing)


@activity.defn(name="launch")
async def launch_fails_on_first_attempt(request: LaunchInput) -> LaunchResult:
    """The first agent's engine is broken for the first attempt: a platform error."""
    if request.attempt == 1:
        raise ApplicationError("engine unavailable", type="DriverError", non_retryable=True)
    return await fake_launch(request)


@activity.defn(name="supervise")
async def supervise_succeeds(request: SuperviseInput) -> AttemptExit:
    return AttemptExit(reason=FinishReason.NORMAL, exit_code=0, finished_at=datetime.now(UTC))


async def test_a_platform_failure_is_retried_after_a_backoff_on_another_agent(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    cluster.start_worker()
    client = await cluster.client()
    job = BatchJob(
        name="elsewhere",
        container=Container(image="busybox:latest", command="true"),
        resources=Resources(cpu=1, memory=8, disk=0, network_mbps=0),
        instances=1,
        retry=Retry(attempts=1),  # no user retry: only the platform's
    )
    # Both agents are empty and alike: best fit alone would pick the same one again.
    first = fake_agent(
        cluster, client, [launch_fails_on_first_attempt, supervise_succeeds], name="a"
    )
    second = fake_agent(
        cluster, client, [launch_fails_on_first_attempt, supervise_succeeds], name="b"
    )
    async with first, second:
        await cluster.wait_for_agents(2)
        view = await asyncio.wait_for(client.wait(await client.submit(job)), timeout=90)
    assert view.state is JobState.SUCCEEDED, view.message
    (task,) = view.tasks
    failed, retried = task.attempts
    assert failed.reason is FinishReason.SYSTEM_ERROR and "engine unavailable" in failed.message
    assert not failed.counts_against_retries  # no user charge
    assert retried.reason is FinishReason.NORMAL and retried.counts_against_retries
    assert retried.agent != failed.agent
    assert {failed.agent, retried.agent} == {cluster.agent_id("a"), cluster.agent_id("b")}
    # Retried after a backoff (1 s), not at once.
    assert failed.finished_at and retried.launched_at
    assert (retried.launched_at - failed.finished_at).total_seconds() >= 1
