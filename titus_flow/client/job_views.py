"""A job's view as the client assembles it: across partitions, a page at a time.

A partitioned job's root holds counts, not tasks; its pages are built from the
partitions that hold their rows, so the work is bounded by the page, not by the
size of the job.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from titus_flow.client.base import batch_handle
from titus_flow.outcomes import view_of_failure
from titus_flow.views import JobView, PartitionSummary, TaskPage, TaskQuery, TaskView, page_tasks
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.batch_partitions import PARTITION_SIZE


async def final_view(handle: WorkflowHandle[Any, JobView]) -> JobView:
    """Wait for a job (or partition) workflow to end; the job's final view.

    A job that did not succeed fails its workflow with the view in the failure
    (:mod:`titus_flow.outcomes`); any other failure is raised as is.
    """
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        view = view_of_failure(err.cause)
        if view is None:
            raise
        return view


async def view_of(temporal: Client, workflow_id: str) -> JobView:
    """The view a job (or partition) workflow holds.

    Its final view once ended (completed, or failed with the view), else what
    its describe query answers.
    """
    handle = batch_handle(temporal, workflow_id)
    status = (await handle.describe()).status
    if status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        with contextlib.suppress(WorkflowFailureError):  # a failure without a view
            return await final_view(handle)
    return await handle.query(BatchJobWorkflow.describe)


def partitions_of(root: JobView) -> list[PartitionSummary]:
    """The root's partitions (a root started before summaries: ids and index ranges only)."""
    if root.partition_views:
        return root.partition_views
    return [
        PartitionSummary(id=p, first_index=n * PARTITION_SIZE, count=PARTITION_SIZE)
        for n, p in enumerate(root.partitions)
    ]


async def _counts_of(temporal: Client, summary: PartitionSummary) -> dict[str, int]:
    """A partition's tasks per state: kept by the root once it ended, else its progress query."""
    if summary.state.is_final and summary.counts:
        return summary.counts
    return (await view_of(temporal, summary.id)).counts()


async def _partition_page(
    temporal: Client, summary: PartitionSummary, query: TaskQuery
) -> TaskPage:
    """One page of a partition's tasks.

    An ended partition's final view (read from its close event) answers when
    it holds every task ``query`` selects; else the partition's ``tasks``
    query does (for an ended one, the worker replays its history: the slow path).
    """
    handle = batch_handle(temporal, summary.id)
    if summary.state.is_final:
        with contextlib.suppress(WorkflowFailureError):
            view = await final_view(handle)
            matching = [t for t in view.tasks if query.matches(t)]
            ranged = query.first is not None or query.last is not None
            if view.total_tasks is None or (
                not ranged and len(matching) == query.count(view.counts())
            ):
                return page_tasks(view.tasks, query)
    return await handle.query(BatchJobWorkflow.tasks, query)


def _overlaps(summary: PartitionSummary, query: TaskQuery) -> tuple[bool, bool]:
    """Whether the partition's index range meets ``query``'s, and lies wholly inside it."""
    low, high = summary.first_index, summary.first_index + summary.count - 1
    first = -1 if query.first is None else query.first
    last = high if query.last is None else query.last
    return low <= last and high >= first, first <= low and high <= last


async def task_page(
    temporal: Client, view: JobView, query: TaskQuery
) -> tuple[TaskPage, dict[str, int]]:
    """The page of job ``view``'s tasks ``query`` asks for, and the job's counts by state.

    A partitioned job's page is built across its partitions, failed tasks
    first: each partition's counts say how many of its tasks match, so only
    the partitions that hold rows of the page are asked for rows. The work is
    bounded by the page, not by the size of the job.
    """
    if not view.partitions:
        if view.total_tasks is None:
            return page_tasks(view.tasks, query), view.counts()
        page = await batch_handle(temporal, view.id).query(BatchJobWorkflow.tasks, query)
        return page, view.counts()
    summaries = partitions_of(view)
    all_counts = await asyncio.gather(*(_counts_of(temporal, s) for s in summaries))
    counts: dict[str, int] = {}
    for part in all_counts:
        for key, n in part.items():
            counts[key] = counts.get(key, 0) + n
    rows: list[TaskView] = []
    total, offset, limit = 0, query.offset, query.limit
    # Failed tasks of every partition come before the others of any.
    passes = [query.failed] if query.failed is not None else [True, False]
    for failed in passes:
        step = query.model_copy(update={"failed": failed})
        for summary, part in zip(summaries, all_counts, strict=True):
            meets, inside = _overlaps(summary, step)
            matching = step.count(part)
            if not meets or matching == 0:
                continue
            if inside and (offset >= matching or limit == 0):
                total += matching
                offset -= min(offset, matching)
                continue
            page = await _partition_page(
                temporal,
                summary,
                step.model_copy(update={"offset": offset, "limit": max(limit, 1)}),
            )
            total += page.total
            taken = page.tasks[:limit]
            rows += taken
            if len(taken) < min(limit, page.total - offset):
                limit = 0  # the page reached its byte budget: the rest waits for the next page
            else:
                limit -= len(taken)
            offset = max(0, offset - page.total)
    return TaskPage(tasks=rows, total=total), counts


async def describe_job(temporal: Client, job_id: str, query: TaskQuery | None = None) -> JobView:
    """Job ``job_id``'s view with one page of its tasks; raises RPCError if absent.

    Without ``query``: a job whose tasks all fit in its view as it is (a small
    job: every task, by index); a partitioned job with the first page of its
    tasks, failed first, and its counts by state.
    """
    view = await view_of(temporal, job_id)
    if query is None and not view.partitions:
        return view
    page, counts = await task_page(temporal, view, query or TaskQuery())
    total = sum(counts.values()) if view.partitions else view.total_tasks
    if total is None and query is not None:
        total = len(view.tasks)
    return view.model_copy(
        update={"tasks": page.tasks, "total_tasks": total, "task_counts": counts}
    )
