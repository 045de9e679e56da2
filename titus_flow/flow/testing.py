"""Testing support for user workflows: search attributes, fake job views."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import JsonValue
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client

from titus_flow import visibility
from titus_flow.contracts import BatchJobInput
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.views import JobView, TaskView


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
