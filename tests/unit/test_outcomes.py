"""How job workflows end: a job that did not succeed fails its workflow, carrying its view."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError, ChildWorkflowError, RetryState

from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.outcomes import JOB_FAILED, JOB_KILLED, job_failure, view_of_failure
from titus_flow.views import JobView, TaskView


def final_view(state: JobState) -> JobView:
    return JobView(
        id="j-1",
        name="j",
        type="batch",
        state=state,
        message="1 of 1 task(s) failed; first: task 0 failed: exited with code 3",
        tasks=[TaskView(id="j-1-0", index=0, state=TaskState.FINISHED, reason=FinishReason.FAILED)],
    )


@pytest.mark.parametrize(
    ("state", "kind"), [(JobState.FAILED, JOB_FAILED), (JobState.KILLED, JOB_KILLED)]
)
def test_a_job_that_did_not_succeed_fails_with_its_view(state: JobState, kind: str) -> None:
    view = final_view(state)
    failure = job_failure(view)
    assert failure.type == kind and failure.non_retryable
    assert failure.message.startswith(f"job j-1 (j) {state.value}: 1 of 1 task(s) failed")
    # The view survives the trip through the failure's details (as JSON) ...
    carried = ApplicationError("x", view.model_dump(mode="json"), type=kind)
    assert view_of_failure(carried) == view
    # ... also when a parent workflow sees it as its child's failure.
    child = ChildWorkflowError(
        "child failed",
        namespace="default",
        workflow_id="j-1",
        run_id="r",
        workflow_type="BatchJob",
        initiated_event_id=1,
        started_event_id=2,
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    child.__cause__ = carried
    assert view_of_failure(child) == view


def test_other_failures_carry_no_view() -> None:
    assert view_of_failure(ApplicationError("boom", type="Other")) is None
    assert view_of_failure(ApplicationError("no details", type=JOB_FAILED)) is None
    assert view_of_failure(None) is None
