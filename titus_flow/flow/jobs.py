"""Batch jobs from a user workflow: run, start, gather, read outputs."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from pydantic import JsonValue
from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from titus_flow.contracts import BatchJobInput
from titus_flow.flow.ids import start_job_workflow
from titus_flow.lifecycle import FinishReason, JobState
from titus_flow.outcomes import JOB_FAILED, child_job_view
from titus_flow.refs import workflow_name
from titus_flow.spec import BatchJob
from titus_flow.views import JobView
from titus_flow.workflows.batch import BatchJobWorkflow

#: The workflow type that runs one batch job (``titus_flow.workflows.batch``).
BATCH_JOB_WORKFLOW = workflow_name(BatchJobWorkflow.run)


class JobFailedError(ApplicationError):
    """A job run from a workflow ended in any state but Succeeded.

    Raised by :func:`run_job`, :meth:`JobHandle.result` and :func:`gather_jobs`.
    Left uncaught, it fails the calling workflow (it is an ``ApplicationError``,
    not retried) with a message naming the job and its failed tasks.

    Attributes:
        view: the failed job's final view (tasks, attempts, outputs).
        reasons: per failed task index, why it finished (e.g. ``"failed: exited with code 3"``).
        views: for :func:`gather_jobs`, the views of every job, in input order.

    Example::

        try:
            await run_job(job)
        except JobFailedError as err:
            workflow.logger.warning("%s failed: %s", err.view.id, err.reasons)

    """

    def __init__(self, view: JobView, views: Sequence[JobView] = (), failed_count: int = 1) -> None:
        self.view = view
        self.views = list(views) or [view]
        self.reasons = failure_reasons(view)
        detail = "; ".join(f"task {i}: {r}" for i, r in sorted(self.reasons.items())[:3])
        prefix = f"{failed_count} of {len(self.views)} jobs failed; first: " if views else ""
        super().__init__(
            f"{prefix}job {view.id} ({view.name}) {view.state.value}"
            + (f": {view.message}" if view.message and not detail else "")
            + (f": {detail}" if detail else ""),
            view.model_dump(mode="json"),
            type=JOB_FAILED,
            non_retryable=True,
        )


class JobHandle:
    """A job started with :func:`start_job`: await it (or :meth:`result`) for its view.

    Example::

        handle = await start_job(job)
        ...  # do other work while it runs
        view = await handle  # raises JobFailedError unless Succeeded
    """

    def __init__(
        self, child: ChildWorkflowHandle[BatchJobWorkflow, JobView], job: BatchJob
    ) -> None:
        self._child = child
        self.job = job

    @property
    def id(self) -> str:
        """The job id (the child workflow id), as ``titus-flow job describe`` takes it."""
        return self._child.id

    async def result(self, *, check: bool = True) -> JobView:
        """Wait for the job to end; its final view.

        Raises :class:`JobFailedError` if it did not succeed, unless ``check`` is False.

        Example::

            view = await handle.result(check=False)
            if view.state is JobState.FAILED: ...
        """
        view = await child_job_view(self._child)  # a job that did not succeed fails its workflow
        if check and view.state is not JobState.SUCCEEDED:
            raise JobFailedError(view)
        return view

    async def kill(self) -> None:
        """Kill the job (every task stops; it ends as Killed).

        Example::

            await handle.kill()
            view = await handle.result(check=False)  # state Killed
        """
        await self._child.signal(BatchJobWorkflow.kill)

    def __await__(self) -> Generator[Any, Any, JobView]:
        return self.result().__await__()


async def start_job(
    job: BatchJob, *, id: str | None = None, upstream: Mapping[str, str] | None = None
) -> JobHandle:
    """Start ``job`` as a child ``BatchJob`` workflow; a handle to wait for it later.

    ``id`` defaults to :func:`child_job_id`. The job carries the TitusJob* search
    attributes, so it shows in ``titus-flow jobs list``. If the calling workflow
    ends first, the job is asked to stop (cancelled), not left running.
    ``upstream`` gives the job ids of the jobs ``job`` depends on with
    ``mode: n_to_n``, by name (the job-file DAG passes them): without one, that
    dependency does not gate the job's tasks.

    Example::

        handles = [await start_job(job) for job in jobs]
        views = [await h for h in handles]
    """
    child = await start_job_workflow(
        BatchJobWorkflow.run,
        job,
        BatchJobInput(job=job, submitted_at=workflow.now(), upstream=dict(upstream or {})),
        id,
        ParentClosePolicy.REQUEST_CANCEL,
    )
    return JobHandle(child, job)


async def run_job(job: BatchJob, *, id: str | None = None) -> JobView:
    """Run ``job`` to its end and return its final view.

    Raises :class:`JobFailedError` (carrying the view and per-task reasons) if
    the job ends in any state but Succeeded.

    Example::

        view = await run_job(BatchJob(name="split", container=Container(image="busybox")))
        chunks = outputs(view)[0]
    """
    return await (await start_job(job, id=id)).result()


async def gather_jobs(
    jobs: Sequence[BatchJob], *, max_concurrent: int | None = None
) -> list[JobView]:
    """Run ``jobs`` with at most ``max_concurrent`` at once; their views, in input order.

    Jobs start in input order as slots free up (a deterministic bound: no job
    starts until one of the running ones ended). Failure policy: a failed job
    does not stop the others; every job runs to its end, then, if any failed,
    :class:`JobFailedError` is raised for the first failed one (in input order),
    with ``views`` holding every job's view. ``max_concurrent=None`` runs all at once.

    Example::

        views = await gather_jobs([encode(c) for c in chunks], max_concurrent=2)
        results = [outputs(v)[0] for v in views]
    """
    if max_concurrent is not None and max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
    views: list[JobView | None] = [None] * len(jobs)
    queue = iter(range(len(jobs)))

    async def lane() -> None:
        # Each lane runs one job at a time; lanes take the next index in turn, so
        # the start order is the input order on every replay.
        for index in queue:
            views[index] = await (await start_job(jobs[index])).result(check=False)

    await asyncio.gather(*(lane() for _ in range(min(len(jobs), max_concurrent or len(jobs)))))
    done = [v for v in views if v is not None]
    failed = [v for v in done if v.state is not JobState.SUCCEEDED]
    if failed:
        raise JobFailedError(failed[0], views=done, failed_count=len(failed))
    return done


def outputs(view: JobView) -> list[JsonValue]:
    """The JSON each task wrote to ``$TITUS_OUTPUT_PATH``, by task index (None if none).

    Example::

        view = await run_job(split_job)
        chunks = outputs(view)[0]  # task 0 wrote ["a", "b", "c"]
    """
    return [task.output for task in sorted(view.tasks, key=lambda t: t.index)]


def failure_reasons(view: JobView) -> dict[int, str]:
    """Why each task that did not finish normally ended, by task index.

    Example::

        failure_reasons(view)  # {1: "failed: exited with code 3"}
    """
    return {
        task.index: (task.reason.value if task.reason else task.state.value)
        + (f": {task.message}" if task.message else "")
        for task in view.tasks
        if task.reason is not FinishReason.NORMAL
    }
