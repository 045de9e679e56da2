"""Workflow-as-code: run titus-flow jobs from your own Temporal workflows.

Use these functions inside an ordinary ``@workflow.defn`` class. Each job runs
as a child workflow of the ``BatchJob`` workflow on the current task queue, so
the user workflow must run on the control task queue (``titus-flow worker
--workflows FILE`` registers it there, ``titus-flow start FILE:Workflow`` starts
it there). Every function is deterministic: child workflow ids are derived from
the parent's id, the job name and a per-run counter, so a replay or a worker
restart finds the job it already started instead of starting it again.

Example::

    from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client

    with workflow.unsafe.imports_passed_through():
        from titus_flow import BatchJob, Container
        from titus_flow.flow import gather_jobs, outputs, run_job


    @workflow.defn
    class Thumbnails:
        @workflow.run
        async def run(self, count: int) -> list[str]:
            listing = await run_job(_lister(count))  # its task writes ["a.jpg", ...]
            names = outputs(listing)[0]
            views = await gather_jobs([_resizer(n) for n in names], max_concurrent=4)
            return [outputs(v)[0] for v in views]
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Generator, Sequence
from typing import Any

from pydantic import JsonValue
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from titus_flow import visibility
from titus_flow.contracts import BatchJobInput
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.spec import BatchJob
from titus_flow.views import JobView, TaskView

#: The workflow type that runs one batch job (``titus_flow.workflows.batch``).
BATCH_JOB_WORKFLOW = "BatchJob"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

# Per workflow instance: how many jobs of each name it started. Keyed by the
# instance (not a module global), so a replay, which builds a new instance,
# counts from zero again and derives the same child ids.
_started: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


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
            type="JobFailed",
            non_retryable=True,
        )


class JobHandle:
    """A job started with :func:`start_job`: await it (or :meth:`result`) for its view.

    Example::

        handle = await start_job(job)
        ...  # do other work while it runs
        view = await handle  # raises JobFailedError unless Succeeded
    """

    def __init__(self, child: ChildWorkflowHandle[Any, JobView], job: BatchJob) -> None:
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
        view: JobView = await self._child
        if check and view.state is not JobState.SUCCEEDED:
            raise JobFailedError(view)
        return view

    async def kill(self) -> None:
        """Kill the job (every task stops; it ends as Killed).

        Example::

            await handle.kill()
            view = await handle.result(check=False)  # state Killed
        """
        await self._child.signal("kill")

    def __await__(self) -> Generator[Any, Any, JobView]:
        return self.result().__await__()


def child_job_id(job: BatchJob) -> str:
    """The id the next :func:`start_job` of ``job`` (without ``id=``) will use.

    ``<workflow id>-<job name>-<n>`` (see :func:`safe_id`), where ``n`` counts
    the jobs of that name this workflow run started (1, 2, ...). Only callable
    inside a workflow.

    Example::

        child_job_id(job)  # "nightly-2024-05-01T02-00-00Z-report-1"
    """
    return _default_id(job.name, _started.get(workflow.instance(), {}).get(job.name, 0) + 1)


def _default_id(name: str, n: int) -> str:
    return f"{safe_id(workflow.info().workflow_id)}-{name}-{n}"


def safe_id(text: str) -> str:
    """``text`` with every character but letters, digits, ``_.-`` replaced by ``-``.

    Job ids end up in container names, which allow only those; a scheduled
    run's workflow id ends with its time (``nightly-2025-01-01T02:00:00Z``).

    Example::

        safe_id("nightly-2025-01-01T02:00:00Z")  # "nightly-2025-01-01T02-00-00Z"
    """
    return _UNSAFE.sub("-", text)


async def start_job(job: BatchJob, *, id: str | None = None) -> JobHandle:
    """Start ``job`` as a child ``BatchJob`` workflow; a handle to wait for it later.

    ``id`` defaults to :func:`child_job_id`. The job carries the TitusJob* search
    attributes, so it shows in ``titus-flow jobs list``. If the calling workflow
    ends first, the job is asked to stop (cancelled), not left running.

    Example::

        handles = [await start_job(job) for job in jobs]
        views = [await h for h in handles]
    """
    counts = _started.setdefault(workflow.instance(), {})
    counts[job.name] = counts.get(job.name, 0) + 1
    job_id = id or _default_id(job.name, counts[job.name])
    child: ChildWorkflowHandle[Any, JobView] = await workflow.start_child_workflow(
        BATCH_JOB_WORKFLOW,
        BatchJobInput(job=job, submitted_at=workflow.now()),
        id=job_id,
        result_type=JobView,
        parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        search_attributes=visibility.job_search_attributes(job_id, job),
        static_summary=visibility.job_summary(job),
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


# --- testing support ---------------------------------------------------------------------


async def register_search_attributes(client: Client, namespace: str = "default") -> None:
    """Register the TitusJob* search attributes (e.g. on the time-skipping test server).

    Jobs started by :func:`start_job` carry them; a server that does not know
    them never starts the job. ``titus-flow up`` and the test dev server
    register them already.

    Example::

        env = await WorkflowEnvironment.start_time_skipping(...)
        await register_search_attributes(env.client)
    """
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in visibility.ALL
            },
        )
    )


def fake_job_view(
    request: BatchJobInput, job_id: str, task_outputs: Sequence[JsonValue], failed: bool = False
) -> JobView:
    """A finished view of ``request.job`` with one task per output, for a fake ``BatchJob``.

    Build it inside a test's stand-in workflow registered as ``@workflow.defn(name="BatchJob")``.

    Example::

        @workflow.defn(name="BatchJob")
        class FakeBatchJob:
            @workflow.run
            async def run(self, request: BatchJobInput) -> JobView:
                return fake_job_view(request, workflow.info().workflow_id, [["a", "b"]])
    """
    reason = FinishReason.FAILED if failed else FinishReason.NORMAL
    return JobView(
        id=job_id,
        name=request.job.name,
        type=request.job.kind,
        owner=request.job.owner,
        state=JobState.FAILED if failed else JobState.SUCCEEDED,
        submitted_at=request.submitted_at,
        tasks=[
            TaskView(
                id=f"{job_id}-{index}",
                index=index,
                state=TaskState.FINISHED,
                reason=reason,
                output=output,
            )
            for index, output in enumerate(task_outputs)
        ],
    )


__all__ = [
    "BATCH_JOB_WORKFLOW",
    "JobFailedError",
    "JobHandle",
    "child_job_id",
    "failure_reasons",
    "fake_job_view",
    "gather_jobs",
    "outputs",
    "register_search_attributes",
    "run_job",
    "safe_id",
    "start_job",
]
