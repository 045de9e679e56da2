"""Custom search attributes that make jobs findable in the CLI, `temporal` and the Web UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from titus_flow.spec import ServiceJob

if TYPE_CHECKING:
    from titus_flow.spec import BatchJob

JOB_ID = SearchAttributeKey.for_keyword("TitusJobId")
JOB_NAME = SearchAttributeKey.for_keyword("TitusJobName")
JOB_TYPE = SearchAttributeKey.for_keyword("TitusJobType")
JOB_STATE = SearchAttributeKey.for_keyword("TitusJobState")
OWNER = SearchAttributeKey.for_keyword("TitusOwner")

ALL = (JOB_ID, JOB_NAME, JOB_TYPE, JOB_STATE, OWNER)
"""Every attribute titus-flow registers; all are Keyword (exact-match) attributes."""

NO_OWNER = "-"
"""``TitusOwner`` of a job without an owner (so that `TitusOwner = '-'` finds them)."""


def job_search_attributes(job_id: str, job: BatchJob | ServiceJob) -> TypedSearchAttributes:
    """The attributes a job workflow starts with (state Accepted)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(JOB_ID, job_id),
            SearchAttributePair(JOB_NAME, job.name),
            SearchAttributePair(JOB_TYPE, job.kind),
            SearchAttributePair(JOB_STATE, "Accepted"),
            SearchAttributePair(OWNER, job.owner or NO_OWNER),
        ]
    )


def job_summary(job: BatchJob | ServiceJob) -> str:
    """One line on the job for the Web UI (the workflow's static summary).

    Example::

        job_summary(job)  # "batch job hello: 3 task(s) of busybox:latest"
    """
    tasks = job.capacity.desired if isinstance(job, ServiceJob) else job.instances
    return f"{job.kind} job {job.name}: {tasks} task(s) of {job.container.image}"
