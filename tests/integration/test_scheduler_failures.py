"""The scheduler's loud failures (issue 11), on the real dev server.

A ledger past what the scheduler can carry across continue-as-new fails the
workflow with ``LedgerTooLarge`` naming the fix, and nothing ever starts it
again empty: ``ensure_scheduler`` (every agent's registration, every control
worker's start) refuses with the fix, and a real agent logs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from titus_cluster import Cluster, eventually

from titus_flow import Resources
from titus_flow.client import ensure_scheduler
from titus_flow.cluster import agent_task_queue, scheduler_workflow_id
from titus_flow.config import load_settings
from titus_flow.contracts import AgentInfo
from titus_flow.worker import control_worker
from titus_flow.workflows import scheduler
from titus_flow.workflows.scheduler import SchedulerWorkflow

FIX = "temporal workflow reset"  # named by both messages


def agent(cluster: Cluster, name: str) -> AgentInfo:
    agent_id = cluster.agent_id(name)
    return AgentInfo(
        agent_id=agent_id,
        task_queue=agent_task_queue(agent_id),
        resources=Resources(cpu=4, memory="4Gi"),
    )


async def test_a_ledger_past_its_bound_fails_loudly_and_is_never_restarted_empty(
    cluster_factory: Callable[[], Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = cluster_factory()
    client = await cluster.client()
    settings = load_settings(environ=cluster.env)
    # A bound any ledger passes, and continue-as-new suggested once asked for:
    # the scheduler workflow is not sandboxed, so the in-process worker sees both.
    monkeypatch.setattr(scheduler, "CARRY_LIMIT_BYTES", 64)
    suggested = {"now": False}
    monkeypatch.setattr(SchedulerWorkflow, "_suggested", staticmethod(lambda: suggested["now"]))
    handle = client.temporal.get_workflow_handle(scheduler_workflow_id(cluster.control_queue))
    async with control_worker(client.temporal, settings):
        await ensure_scheduler(client.temporal, settings, agent(cluster, "a"))

        async def registered() -> bool:
            return [a.agent_id for a in await client.agents()] == [cluster.agent_id("a")]

        await eventually(registered, 20, "agent a registered")
        # The CLI reads the paged answers (in a thread: this loop runs the worker).
        listed = await asyncio.to_thread(cluster.cli, "agents", "list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert [(a["agent_id"], a["task_count"]) for a in json.loads(listed.stdout)] == [
            (cluster.agent_id("a"), 0)
        ]
        tasks = await asyncio.to_thread(cluster.cli, "agents", "tasks", cluster.agent_id("a"))
        assert tasks.returncode == 0 and "0 tasks" in tasks.stderr, tasks.stderr
        first_run = (await handle.describe()).run_id
        suggested["now"] = True
        # Any news wakes it; then it would continue as new with a ledger past its bound.
        await ensure_scheduler(client.temporal, settings, agent(cluster, "b"))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result(follow_runs=False)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "LedgerTooLarge"
    assert "2 agents" in cause.message and FIX in cause.message
    assert cause.non_retryable

    # Never started again empty: not by a registration, nor by a control worker.
    for info in (agent(cluster, "a"), None):
        with pytest.raises(RPCError) as refused:
            await ensure_scheduler(client.temporal, settings, info)
        assert refused.value.status == RPCStatusCode.FAILED_PRECONDITION
        assert FIX in refused.value.message and "temporal workflow delete" in refused.value.message
    description = await handle.describe()
    assert (description.run_id, description.status) == (
        first_run,
        WorkflowExecutionStatus.FAILED,
    )

    # A real agent keeps running and says why it cannot register, and the fix.
    cluster.start_agent("late", "--driver", "process", "--cpu", "1", "--memory", "1Gi")
    log = Path(cluster.home / "logs" / "agent-late.log")

    async def told() -> bool:
        return log.exists() and FIX in log.read_text(errors="replace")

    await eventually(told, 60, "the agent logging the scheduler's fix")
    description = await handle.describe()
    assert (description.run_id, description.status) == (
        first_run,
        WorkflowExecutionStatus.FAILED,
    )


async def test_the_scheduler_continues_as_new_past_its_history_bound_and_keeps_its_agents(
    cluster_factory: Callable[[], Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short history bounds what a worker replays (issue 11: 1 s of CPU at most)."""
    cluster = cluster_factory()
    client = await cluster.client()
    settings = load_settings(environ=cluster.env)
    monkeypatch.setattr(scheduler, "HISTORY_EVENTS", 30)  # read as each run starts
    handle = client.temporal.get_workflow_handle(scheduler_workflow_id(cluster.control_queue))
    names = [f"n{i}" for i in range(12)]
    async with control_worker(client.temporal, settings):
        await ensure_scheduler(client.temporal, settings, agent(cluster, names[0]))
        first_run = (await handle.describe()).run_id
        for name in names[1:]:  # each registration: a signal and a workflow task
            await ensure_scheduler(client.temporal, settings, agent(cluster, name))

        async def continued() -> bool:
            return (await handle.describe()).run_id != first_run

        await eventually(continued, 30, "the scheduler to continue as new")
        first = client.temporal.get_workflow_handle(handle.id, run_id=first_run)
        events = [e async for e in first.fetch_history_events()]
        assert len(events) < 30 + 20, len(events)  # continued soon after the bound
        listed = sorted(a.agent_id for a in await client.agents())
        assert listed == sorted(cluster.agent_id(name) for name in names)
