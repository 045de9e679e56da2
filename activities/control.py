"""Activities of the control plane itself (run by the control worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

# Describe calls in flight at once when asking for many agents' pollers.
_DESCRIBE_CONCURRENCY = 16


class ControlActivities:
    """Housekeeping that needs the Temporal client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="closed_workflows")
    async def closed_workflows(self, workflow_ids: list[str]) -> list[str]:
        """Which of ``workflow_ids`` no longer run (ended, or never existed).

        The scheduler uses it to free capacity held by jobs that were terminated
        or reset from outside, which never got to release it themselves.
        """
        closed = []
        for workflow_id in workflow_ids:
            try:
                description = await self.client.get_workflow_handle(workflow_id).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    closed.append(workflow_id)
                continue  # cannot tell now: keep its capacity
            if description.status != WorkflowExecutionStatus.RUNNING:
                closed.append(workflow_id)
        return closed

    @activity.defn(name="agent_pollers")
    async def agent_pollers(self, task_queues: list[str]) -> dict[str, float]:
        """When each task queue's activity pollers last polled (epoch seconds).

        The scheduler's agent liveness (issue 11): an agent's worker long-polls
        its queue, so the server's record of its pollers says it is alive
        without the agent adding a signal to the scheduler's history. Queues
        without a poller in the server's record are left out. Any failed
        describe fails the whole call: a partial answer would make live agents
        look silent.
        """
        limit = asyncio.Semaphore(_DESCRIBE_CONCURRENCY)

        async def last_poll(name: str) -> float | None:
            async with limit:
                response = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=name, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                    )
                )
            times = [p.last_access_time.ToMicroseconds() / 1e6 for p in response.pollers]
            return max(times, default=None)

        polls = await asyncio.gather(*(last_poll(q) for q in task_queues))
        return {q: t for q, t in zip(task_queues, polls, strict=True) if t is not None}

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for a worker's ``activities=``."""
        return [self.closed_workflows, self.agent_pollers]
