"""A service of a few hundred tasks on hollow agents continues as new, keeping every task.

Issue 11: the service workflow carries its live tasks as compact rows
(:class:`~titus_flow.contracts.CarriedService`), so its continue-as-new input
stays tens of bytes a task (the previous release's whole records took ~620).
Under a low history limit the job continues as new while it scales up and
again once every task runs; each run adopts the tasks the last one held: no
task is launched twice, none is lost, none is replaced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError
from test_hollow_agents import hollow_cluster
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Container, Resources, ServiceJob, visibility
from titus_flow.client import TitusClient, new_job_id
from titus_flow.contracts import ServiceJobInput, TaskHealth
from titus_flow.events.model import CARRIED_EVENTS
from titus_flow.history_stats import HISTORY_EVENTS_WARN, PAYLOAD_BYTES_WARN, history_stats
from titus_flow.lifecycle import FinishReason, JobState
from titus_flow.views import TaskQuery, TaskView
from titus_flow.workflows.service import ServiceJobWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Sized for the parallel suite on 2 cores: bench/scale.py runs 1,000-task services.
TASKS = 150
AGENTS = 10  # 20 tasks of 0.1 core each on a hollow agent of 2 cores: 200 slots
HISTORY_LIMIT = 250  # below the events of a scale-up to TASKS: it continues meanwhile

Task = tuple[str | None, datetime | None, dict[str, int]]  # agent, started, ports


async def live_tasks(client: TitusClient, job_id: str) -> dict[str, Task]:
    """Every Started task of the job, paged through its ``tasks`` query."""
    found: dict[str, Task] = {}
    while True:
        query = TaskQuery(states=["Started"], offset=len(found), limit=500)
        page = await client.tasks(job_id, query)
        for t in page.tasks:
            found[t.id] = (t.agent, t.attempts[0].started_at if t.attempts else None, t.ports)
        if len(found) >= page.total or not page.tasks:
            return found


def handover_changes(before: dict[str, Task], after: dict[str, Task]) -> dict[str, str]:
    """Tasks not carried over as they were (same agent and ports, started at the same
    time to the ms), each with what changed."""
    changes: dict[str, str] = {}
    for task_id, (agent, started, ports) in before.items():
        if task_id not in after:
            changes[task_id] = "no longer Started"
            continue
        agent2, started2, ports2 = after[task_id]
        assert started is not None and started2 is not None
        if (agent, ports) != (agent2, ports2) or abs(started - started2) > timedelta(
            milliseconds=1
        ):
            changes[task_id] = f"was {agent} {ports} {started}, now {agent2} {ports2} {started2}"
    return changes


STOPS = (FinishReason.KILLED, FinishReason.SCALED_DOWN)
"""How a handover that lost track of a task would have ended it."""


async def unexplained(client: TitusClient, job_id: str, changes: dict[str, str]) -> list[str]:
    """The changes a handover caused: a task whose attempt was stopped, not one that
    failed by itself (a hollow agent lost under load ends its tasks as ``lost``, and
    the job replaces them, continue-as-new or not)."""
    rows: dict[str, TaskView] = {}
    for failed in (True, False):
        offset = 0
        while True:
            page = await client.tasks(job_id, TaskQuery(failed=failed, offset=offset, limit=500))
            rows.update((t.id, t) for t in page.tasks)
            offset += len(page.tasks)
            if offset >= page.total or not page.tasks:
                break
    causes = []
    for task_id, change in changes.items():
        row = rows.get(task_id)
        ended = [a for a in row.attempts if a.reason is not None] if row else []
        if not ended or ended[0].reason in STOPS:
            causes.append(f"{task_id}: {change}; {row.model_dump_json() if row else 'gone'}")
    return causes


async def continued_as_new_inputs(client: TitusClient, job_id: str) -> list[int]:
    """Bytes of each continue-as-new input the job's runs carried, oldest run last."""
    sizes: list[int] = []
    run_id: str | None = None
    while True:
        handle = client.temporal.get_workflow_handle(job_id, run_id=run_id)
        previous = ""
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                previous = (
                    event.workflow_execution_started_event_attributes.continued_execution_run_id
                )
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                attributes = event.workflow_execution_continued_as_new_event_attributes
                sizes.append(attributes.input.ByteSize())
        if not previous:
            return sizes
        run_id = previous


async def wait_all_started(client: TitusClient, job_id: str, timeout: float) -> None:
    """Wait until the job's every task is Started; fail with what its view last said."""
    last = ""

    async def all_started() -> bool:
        nonlocal last
        try:
            view = await client.describe(job_id)
        except (RPCError, WorkflowQueryFailedError) as err:  # timed out, or the SDK's
            last = str(err)  # 2 s deadlock limit passed while a starved worker replayed
            return False
        last = f"{view.counts()} {view.message!r} {view.service}"
        # Launches a handover stopped stay listed as Finished/killed rows.
        return view.counts().get("Started") == TASKS

    try:
        await eventually(all_started, timeout, f"{TASKS} tasks Started")
    except AssertionError as err:
        waits = await what_it_waits_for(client, job_id)
        raise AssertionError(f"{err}; last: {last}\n{waits}") from None


async def what_it_waits_for(client: TitusClient, job_id: str) -> str:
    """What the job's current run awaits: its coroutines (past those supervising a
    Started task), its pending activities and its last events."""
    handle = client.temporal.get_workflow_handle(job_id)
    lines: list[str] = []
    try:
        desc = await handle.describe()
        pending = Counter(a.activity_type.name for a in desc.raw_description.pending_activities)
        lines.append(
            f"run {desc.run_id} ({desc.status}): {desc.history_length} events,"
            f" pending activities {dict(pending)}"
        )
        events = [event async for event in handle.fetch_history_events()]
        tail = [EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in events]
        lines.append(f"last events: {tail[-15:]}")
        stacks = str(await handle.query("__stack_trace")).split("\n\n\nStack for ")
        rest = [s for s in stacks if "supervise" not in s]  # a Started task's, or its activity's
        lines.append(f"{len(stacks) - len(rest)} stack(s) supervise a task; the rest await:")
        lines.extend(s[-700:] for s in rest[:10])
    except RPCError as err:
        lines.append(f"(describing it failed: {err})")
    return "\n".join(lines)


@pytest.mark.slow
async def test_a_large_service_continues_as_new_and_keeps_every_task(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster, client = await hollow_cluster(cluster_factory, AGENTS)
    job = ServiceJob(
        name="svc-scale",
        container=Container(image="busybox:latest", command="sleep 1d", ports=["http"]),
        resources=Resources(cpu=0.1, memory=64, disk=0, network_mbps=0),
        capacity=Capacity(min=0, desired=TASKS, max=TASKS),
    )
    job_id = new_job_id(job.name)
    await client.temporal.start_workflow(
        ServiceJobWorkflow.run,
        ServiceJobInput(job=job, submitted_at=datetime.now(UTC), history_limit=HISTORY_LIMIT),
        id=job_id,
        task_queue=cluster.control_queue,
        search_attributes=visibility.job_search_attributes(job_id, job),
    )
    latest = client.temporal.get_workflow_handle(job_id)  # whichever run is current
    try:
        await wait_all_started(client, job_id, 120)
        started = await live_tasks(client, job_id)
        assert len(started) == TASKS
        # A handover stops launches still in flight past twice the limit (the next
        # run starts their replacements); a task that had started is never stopped.
        ended = await client.tasks(job_id, TaskQuery(failed=True, limit=500))
        # (A launch that landed after its stop is stopped too, as "killed by request".)
        stopped = [t for t in ended.tasks if t.attempts[0].started_at is None]
        odd = [t.model_dump_json(indent=1) for t in ended.tasks if t not in stopped]
        assert not odd, "\n".join(odd)[:3000]
        assert all(agent and ports.get("http") for agent, _, ports in started.values())

        # Every task runs: push the run past its limit, and it hands them all over.
        before = (await latest.describe()).run_id
        nobody = TaskHealth(task_id=f"{job_id}-none", attempt=1, healthy=True, at=datetime.now(UTC))

        async def continued() -> bool:
            for _ in range(25):  # ignored by the job, but each adds to its history
                await latest.signal(ServiceJobWorkflow.task_health, nobody)
            return (await latest.describe()).run_id != before

        await eventually(continued, 60, "a continue-as-new with every task Started")
        await wait_all_started(client, job_id, 60)
        changes = handover_changes(started, await live_tasks(client, job_id))
        assert len(changes) <= TASKS // 20, changes  # a few replaced under load, not a run's worth
        assert not await unexplained(client, job_id, changes)
    finally:
        await latest.signal(ServiceJobWorkflow.kill)
    view = await cluster.wait_for(job_id, timeout=120)
    assert view.state is JobState.KILLED

    inputs = await continued_as_new_inputs(client, job_id)
    assert len(inputs) >= 2, inputs  # during the scale-up and once all ran
    # Tens of bytes a task, not hundreds: 300 whole records were ~190 KB. Plus the
    # event journal's tail, a constant: CARRIED_EVENTS events of ~250 bytes.
    assert max(inputs) < 60 * TASKS + 16 * 1024 + CARRIED_EVENTS * 300, inputs
    stats = await history_stats(client.temporal, [job_id])
    assert stats.runs == len(inputs) + 1
    assert not stats.problems(HISTORY_EVENTS_WARN, PAYLOAD_BYTES_WARN), stats.problems()
