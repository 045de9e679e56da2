"""Submitting, inspecting, waiting for, killing and listing jobs."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)

from titus_flow import visibility
from titus_flow.client.agents import AgentsClient
from titus_flow.client.base import (
    JobNotFoundError,
    batch_handle,
    job_id_of_task,
    new_job_id,
    not_found_as_no_job,
)
from titus_flow.client.job_views import (
    describe_job,
    final_view,
    partitions_of,
    task_page,
    view_of,
)
from titus_flow.config import Settings
from titus_flow.contracts import BatchJobInput, KillTaskRequest, ServiceJobInput
from titus_flow.errors import ClusterError, UserError
from titus_flow.ids import check_id
from titus_flow.isolation import refuse_host_network
from titus_flow.lifecycle import JobState
from titus_flow.load_balancers.check import check_target_groups
from titus_flow.spec import BatchJob, ServiceJob
from titus_flow.spec.load_balancers import is_local
from titus_flow.views import JobProgress, JobView, TaskPage, TaskQuery, TaskView
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.batch_partitions import partition_holding
from titus_flow.workflows.service import ServiceJobWorkflow


class JobsClient(AgentsClient):
    """Jobs of either kind: submit, describe, page tasks, progress, wait, kill, list."""

    def __init__(self, client: Client, settings: Settings) -> None:
        super().__init__(client, settings)
        # Progress of partitions that have ended, by workflow id: it no longer changes.
        self._ended_partitions: dict[str, JobProgress] = {}

    async def check_load_balancers(self, job: ServiceJob) -> None:
        """Raise :class:`UserError` if a target group of ``job`` cannot take its tasks.

        Each ARN must exist and take ``ip`` or ``instance`` targets; when fleets
        run that could hold the job's tasks, it must be in one of their VPCs.
        ``local:`` groups are not checked.
        """
        if all(is_local(group) for group in job.load_balancers):
            return
        vpcs = await self.fleet_vpcs(job.constraints)
        await check_target_groups(job.load_balancers, vpcs)

    async def submit(self, job: BatchJob | ServiceJob, job_id: str | None = None) -> str:
        """Start ``job``; return its id. The spec was validated when it was built.

        Raises :class:`UserError` for an invalid ``job_id``, for a job on the
        host network when no registered agent allows it, or for a service whose
        target groups cannot take its tasks (missing, not ip/instance, or outside
        the VPCs of the fleets that would run it).
        """
        job_id = check_id(job_id) if job_id is not None else new_job_id(job.name)
        if job.container.network == "host":
            refuse_host_network(await self._agents_if_known())
        if isinstance(job, ServiceJob):
            await self.check_load_balancers(job)
        options: dict[str, Any] = {
            "id": job_id,
            "task_queue": self.settings.control_task_queue,
            "search_attributes": visibility.job_search_attributes(job_id, job),
        }
        submitted_at = datetime.now(UTC)
        if isinstance(job, ServiceJob):
            await self.temporal.start_workflow(
                ServiceJobWorkflow.run,
                ServiceJobInput.submitted(job, submitted_at),
                static_summary=visibility.job_summary(job),
                **options,
            )
        else:
            await self.temporal.start_workflow(
                BatchJobWorkflow.run,
                BatchJobInput(
                    job=job, submitted_at=submitted_at, partition_size=self.settings.partition_size
                ),
                static_summary=visibility.job_summary(job),
                **options,
            )
        return job_id

    async def describe(self, job_id: str, query: TaskQuery | None = None) -> JobView:
        """The job with a page of its tasks and their attempts (running or finished).

        Without ``query``: every task of a small job; the first page of a large
        one (failed first; ``total_tasks`` and ``task_counts`` say how many
        there are). Cost is bounded by the page, not by the size of the job.
        """
        with not_found_as_no_job(f"no job {job_id!r}"):
            return await describe_job(self.temporal, job_id, query)

    async def tasks(self, job_id: str, query: TaskQuery) -> TaskPage:
        """One page of the job's tasks ``query`` selects (failed first), and how many match."""
        with not_found_as_no_job(f"no job {job_id!r}"):
            page, _ = await task_page(self.temporal, await view_of(self.temporal, job_id), query)
        return page

    async def task(self, task_id: str) -> TaskView:
        """One task of a job (its latest attempts); JobNotFoundError if the job has none such."""
        job_id = job_id_of_task(task_id)
        index = int(task_id.rpartition("-")[2])
        page = await self.tasks(job_id, TaskQuery(first=index, last=index, limit=1))
        found = next((t for t in page.tasks if t.id == task_id), None)
        if found is None:
            raise JobNotFoundError(f"job {job_id} has no task {task_id!r}")
        return found

    async def progress(self, job_id: str) -> JobProgress:
        """Task counts per state of a running job (summed over its partitions).

        Cheap to poll: a running partition answers its own ``progress`` query
        (counts, not the view of its 500 tasks, which cost its workflow worker
        the encoding of a quarter megabyte on every poll); an ended one's final
        view is read once and remembered by this client.
        """
        root = await self._handle(job_id).query(BatchJobWorkflow.progress)
        partitions = await self._partitions(job_id)
        if not partitions:
            return root
        parts = await asyncio.gather(
            *(self._partition_progress(p) for p in partitions), return_exceptions=True
        )
        counts: dict[str, int] = {}
        reasons: set[str] = set()
        for part in parts:
            if isinstance(part, JobProgress):
                for state, count in part.counts.items():
                    counts[state] = counts.get(state, 0) + count
                reasons.update(part.pending_reasons)
        return root.model_copy(update={"counts": counts, "pending_reasons": sorted(reasons)[:5]})

    async def _partition_progress(self, workflow_id: str) -> JobProgress:
        ended = self._ended_partitions.get(workflow_id)
        if ended is not None:
            return ended
        handle = batch_handle(self.temporal, workflow_id)
        if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
            return await handle.query(BatchJobWorkflow.progress)
        view = await view_of(self.temporal, workflow_id)
        ended = JobProgress(id=view.id, state=view.state, counts=view.counts())
        if view.state.is_final:
            self._ended_partitions[workflow_id] = ended
        return ended

    async def wait(self, job_id: str) -> JobView:
        """Wait for the job to end; return its final view (as :meth:`describe` gives it).

        Also for a job that failed or was killed (whose workflow failed): check
        ``view.state``.
        """
        try:
            await final_view(self._handle(job_id))
        except WorkflowFailureError as err:
            raise ClusterError(f"job {job_id} workflow failed: {err.cause}") from err
        return await self.describe(job_id)

    async def kill(self, job_id: str) -> None:
        """Kill the job: all its tasks are stopped and it finishes as Killed."""
        with not_found_as_no_job(f"no running job {job_id!r}"):
            await self._handle(job_id).signal(BatchJobWorkflow.kill)

    async def kill_task(self, task_id: str, shrink: bool = False, force: bool = False) -> str:
        """Kill one task; return what happened ("killed", or why the kill waits).

        A batch task finishes as killed and is not retried; a service task is
        replaced, or with ``shrink`` the job's desired drops by one. Without
        ``force`` a service kill waits for the disruption budget.
        """
        job_id = job_id_of_task(task_id)
        root = await self._root_view(job_id)
        if root.type == "service":
            request = KillTaskRequest(task_id=task_id, shrink=shrink, force=force)
            return await self._update(job_id, ServiceJobWorkflow.kill_task, request)
        owner = job_id
        if root.partitions:  # the partition that holds the task's index
            holder = partition_holding(partitions_of(root), int(task_id.rpartition("-")[2]))
            if holder is None:
                raise JobNotFoundError(f"job {job_id} has no task {task_id!r}")
            owner = holder.id
        await self._update(owner, BatchJobWorkflow.kill_task, task_id)  # answers the task's id
        return "killed"

    async def _root_view(self, job_id: str) -> JobView:
        with not_found_as_no_job(f"no job {job_id!r}"):
            return await self._handle(job_id).query(BatchJobWorkflow.describe)

    async def _partitions(self, job_id: str) -> list[str]:
        return (await self._root_view(job_id)).partitions

    async def list_jobs(
        self, state: str | None = None, job_type: str | None = None, limit: int = 100
    ) -> list[dict[str, str | None]]:
        """Jobs from Temporal visibility, the most recently started first.

        ``state`` is a job state in any case (``failed`` is ``Failed``); an
        unknown one raises :class:`UserError` naming the valid ones. A job
        without an owner has ``owner`` None.
        """
        clauses = ["TitusJobType IS NOT NULL"]
        if state:
            clauses.append(f"TitusJobState = '{_quote(job_state(state).value)}'")
        if job_type:
            clauses.append(f"TitusJobType = '{_quote(job_type)}'")
        where = " AND ".join(clauses)
        # Running jobs come newest-started first: the first ``limit`` are enough
        # (10,000 running jobs were all read, 3.7 s). Ended ones follow by close
        # time, and their scan stops once nothing older can be among the newest.
        running = [
            wf
            async for wf in self.temporal.list_workflows(
                f"{where} AND ExecutionStatus = 'Running'", limit=limit
            )
        ]
        ended = self.temporal.list_workflows(f"{where} AND ExecutionStatus != 'Running'")
        jobs: list[dict[str, str | None]] = []
        for wf in await _newest_started(ended, limit, running):
            attrs = wf.typed_search_attributes
            owner = attrs.get(visibility.OWNER)
            jobs.append(
                {
                    "id": wf.id,
                    "name": attrs.get(visibility.JOB_NAME) or "",
                    "type": attrs.get(visibility.JOB_TYPE) or "",
                    "state": attrs.get(visibility.JOB_STATE) or "",
                    "owner": None if owner in (None, "", visibility.NO_OWNER) else owner,
                    "started": wf.start_time.isoformat(),
                }
            )
        return jobs


def job_state(name: str) -> JobState:
    """The job state called ``name``, in any case; UserError naming the valid ones."""
    for state in JobState:
        if state.value.lower() == name.lower():
            return state
    valid = ", ".join(s.value for s in JobState)
    raise UserError(f"invalid job state {name!r}: use one of {valid}")


async def _newest_started(
    executions: AsyncIterator[WorkflowExecution],
    limit: int,
    already: Sequence[WorkflowExecution] = (),
) -> list[WorkflowExecution]:
    """The ``limit`` most recently started of ``already`` and ``executions``, newest first.

    Visibility on SQL (the dev server's) cannot ORDER BY: it lists running
    workflows first, newest started first, then closed ones by close time,
    newest first. A workflow closes after it starts, so once ``limit`` kept
    workflows started after the close time the listing has reached, none
    listed later can be newer: the scan stops there instead of reading every job.
    """
    newest: list[tuple[datetime, int, WorkflowExecution]] = []  # min-heap of the kept
    for position, wf in enumerate(already):
        heapq.heappush(newest, (wf.start_time, -1 - position, wf))
        if len(newest) > limit:
            heapq.heappop(newest)
    position = 0  # breaks ties in start time
    async for wf in executions:
        position += 1
        heapq.heappush(newest, (wf.start_time, position, wf))
        if len(newest) > limit:
            heapq.heappop(newest)
        if wf.close_time is not None and len(newest) == limit and newest[0][0] >= wf.close_time:
            break
    return [wf for _, _, wf in sorted(newest, key=lambda kept: kept[0], reverse=True)]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
