"""The ``finished_tasks`` activity: which tasks of another job have ended (issue #16).

Batch tasks gated by ``task_order: sequential`` or a ``mode: n_to_n``
dependency (:mod:`titus_flow.workflows.batch_gates`) learn through it how the
tasks they wait on in other workflows ended. Run by the control worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.activities.interfaces import TaskGateActivityInterface, implements
from titus_flow.client.job_views import describe_job
from titus_flow.contracts.task_gates import (
    FinishedTasks,
    FinishedTasksInput,
    as_ranges,
    in_ranges,
)
from titus_flow.lifecycle import FinishReason
from titus_flow.views import PAGE_MAX_TASKS, TaskQuery

FINISHED_TASKS_POLL = 1.0
"""Seconds between two looks at the other job's tasks."""


class TaskGateActivities(TaskGateActivityInterface):
    """Reads other jobs' task outcomes through the Temporal client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @implements(TaskGateActivityInterface.finished_tasks)
    async def finished_tasks(self, request: FinishedTasksInput) -> FinishedTasks:
        """Which of the asked tasks of job ``request.job_id`` have finished, and how.

        Looks every second (heartbeating) until one of them has, or
        ``wait_seconds`` passed: gated tasks learn of finishes in batches, not
        with one call each. A job not found (yet) has finished none.
        """
        deadline = time.monotonic() + request.wait_seconds
        while True:
            found = await self._finished_among(request)
            if not found.empty or time.monotonic() >= deadline:
                return found
            activity.heartbeat()
            await asyncio.sleep(FINISHED_TASKS_POLL)

    async def _finished_among(self, request: FinishedTasksInput) -> FinishedTasks:
        wanted = in_ranges(request.ranges)
        if not wanted:
            return FinishedTasks()
        query = TaskQuery(
            states=["Finished"], first=min(wanted), last=max(wanted), limit=PAGE_MAX_TASKS
        )
        succeeded: list[int] = []
        failed: dict[int, str] = {}
        while True:  # a page (at most 500 rows) at a time
            try:
                view = await describe_job(self.client, request.job_id, query)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return FinishedTasks()
                raise
            for task in view.tasks:
                if task.index not in wanted:
                    continue
                if task.reason is FinishReason.NORMAL:
                    succeeded.append(task.index)
                else:
                    failed[task.index] = (task.reason or FinishReason.FAILED).value
            # A page cut short by its byte budget ends the look: the rest comes next call.
            if len(view.tasks) < query.limit:
                return FinishedTasks(succeeded=as_ranges(succeeded), failed=failed)
            query = query.model_copy(update={"offset": query.offset + len(view.tasks)})

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for a worker's ``activities=``."""
        return [self.finished_tasks]
