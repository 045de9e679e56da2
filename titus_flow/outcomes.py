"""How a job's workflow ends, and how to read the job's final view from either ending.

A job that Succeeded completes its workflow, with its final view as the result.
A job that did not fails its workflow, so the Temporal Web UI (and
``temporal workflow list``) shows it as failed at a glance: a Failed job with
an ``ApplicationError`` of type ``JobFailed``, a Killed one with type
``JobKilled``. The failure's first detail is the job's final view, so every
reader (the client, ``run_job`` in a user workflow, the root of a partitioned
job) still gets the whole view. Workflows started by the previous release
(which completed every job's workflow) still end that way on replay: the new
ending is behind the ``workflow.patched`` marker :data:`FAILED_JOBS_FAIL_PATCH`.

Example::

    try:
        await handle.result()
    except WorkflowFailureError as err:
        view = view_of_failure(err.cause)  # the job's view, or None
"""

from __future__ import annotations

from collections.abc import Awaitable

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

from titus_flow.lifecycle import FinishReason, JobState
from titus_flow.views import JobView, TaskView

#: ``workflow.patched`` id of "a job that did not succeed fails its workflow".
FAILED_JOBS_FAIL_PATCH = "failed-jobs-fail-their-workflow"

JOB_FAILED = "JobFailed"
"""Failure type of the workflow of a Failed job (also of ``JobFailedError``)."""
JOB_KILLED = "JobKilled"
"""Failure type of the workflow of a Killed job."""

_FAILURE_TYPES = {JobState.KILLED: JOB_KILLED}


def job_failure(view: JobView) -> ApplicationError:
    """The non-retryable failure a job workflow ends with when the job did not succeed.

    Its type is ``JobKilled`` for a Killed job, else ``JobFailed``; its first
    detail is ``view`` as JSON.

    Example::

        job_failure(view).message  # "job hello-1a2b (hello) Failed: 1 of 3 task(s) failed; ..."
    """
    return ApplicationError(
        f"job {view.id} ({view.name}) {view.state.value}"
        + (f": {view.message}" if view.message else ""),
        view.model_dump(mode="json"),
        type=_FAILURE_TYPES.get(view.state, JOB_FAILED),
        non_retryable=True,
    )


def batch_job_ending(counts: dict[str, int], failed: list[TaskView]) -> tuple[JobState, str]:
    """A batch job's final state and message, from its tasks (a job not killed).

    ``counts``: the tasks per state; ``failed``: (some of) the failed ones, the
    first of which the message names. Succeeded only if every task did.
    """
    total = sum(counts.values())
    normal = counts.get(f"Finished/{FinishReason.NORMAL.value}", 0)
    if normal == total:
        return JobState.SUCCEEDED, ""
    message = f"{total - normal} of {total} task(s) failed"
    first = min(failed, key=lambda t: t.index, default=None)
    if first is not None:
        message += (
            f"; first: task {first.index}"
            f" {first.reason.value if first.reason else 'unknown'}"
            + (f": {first.message}" if first.message else "")
        )
    return JobState.FAILED, message


def end_job(view: JobView) -> JobView:
    """Inside a job workflow: return ``view`` as its result, or fail unless it Succeeded.

    Fails with :func:`job_failure`, except when replaying a history recorded
    before that change (no :data:`FAILED_JOBS_FAIL_PATCH` marker), which
    completed. Call it once, as the workflow's last step.

    Example::

        return end_job(self._view)
    """
    if view.state is JobState.SUCCEEDED or not workflow.patched(FAILED_JOBS_FAIL_PATCH):
        return view
    raise job_failure(view)


def view_of_failure(error: BaseException | None) -> JobView | None:
    """The job view a job workflow's failure carries, or None if it carries none.

    Accepts the failure itself (``WorkflowFailureError.cause``,
    ``ChildWorkflowError.cause``) or the error wrapping it.

    Example::

        view_of_failure(err.cause)  # JobView(state=Failed, ...)
    """
    if isinstance(error, ChildWorkflowError):
        error = error.cause
    if not (
        isinstance(error, ApplicationError)
        and error.type in (JOB_FAILED, JOB_KILLED)
        and error.details
    ):
        return None
    detail = error.details[0]
    return detail if isinstance(detail, JobView) else JobView.model_validate(detail)


async def child_job_view(child: Awaitable[JobView]) -> JobView:
    """The final view of a job run as a child workflow, whether it completed or failed.

    Any other failure of the child (cancelled, terminated, a failure without a
    view) is raised as is.

    Example::

        view = await child_job_view(handle)  # Failed jobs too, no exception
    """
    try:
        return await child
    except ChildWorkflowError as err:
        view = view_of_failure(err)
        if view is None:
            raise
        return view
