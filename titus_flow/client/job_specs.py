"""The spec a job runs with, read from the start of its workflow's latest run."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from titus_flow.client.base import JobNotFoundError, not_found_as_no_job
from titus_flow.contracts.jobs import BatchJobInput, ServiceJobInput
from titus_flow.spec import BatchJob, ServiceJob

# Workflow type name -> its input model; the job's spec is the input's ``job``.
_INPUTS: dict[str, type[BatchJobInput] | type[ServiceJobInput]] = {
    "BatchJob": BatchJobInput,
    "ServiceJob": ServiceJobInput,
}


async def job_spec(temporal: Client, job_id: str) -> BatchJob | ServiceJob:
    """The spec of job ``job_id``, running or finished.

    The input of the workflow's latest run holds it: a service job that was
    updated or scaled continued as new with the current revision and capacity,
    which is what is returned (the scaled capacity replaces the spec's).
    """
    handle = temporal.get_workflow_handle(job_id)
    with not_found_as_no_job(f"no job {job_id!r}"):
        async for event in handle.fetch_history_events():
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                break
            started = event.workflow_execution_started_event_attributes
            model = _INPUTS.get(started.workflow_type.name)
            if model is None:
                break
            [request] = await temporal.data_converter.decode(started.input.payloads, [model])
            if isinstance(request, ServiceJobInput) and request.capacity is not None:
                return request.job.model_copy(update={"capacity": request.capacity})
            job: BatchJob | ServiceJob = request.job
            return job
    raise JobNotFoundError(f"{job_id!r} is not a job (a batch or service job's id)")
