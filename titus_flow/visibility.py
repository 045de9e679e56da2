"""Custom search attributes that make jobs findable in the CLI, `temporal` and the Web UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

if TYPE_CHECKING:
    from titus_flow.spec import BatchJob, ServiceJob

JOB_ID = SearchAttributeKey.for_keyword("TitusJobId")
JOB_NAME = SearchAttributeKey.for_keyword("TitusJobName")
JOB_TYPE = SearchAttributeKey.for_keyword("TitusJobType")
JOB_STATE = SearchAttributeKey.for_keyword("TitusJobState")
OWNER = SearchAttributeKey.for_keyword("TitusOwner")

ALL = (JOB_ID, JOB_NAME, JOB_TYPE, JOB_STATE, OWNER)
"""Every attribute titus-flow registers; all are Keyword (exact-match) attributes."""


def job_search_attributes(job_id: str, job: BatchJob | ServiceJob) -> TypedSearchAttributes:
    """The attributes a job workflow starts with (state Accepted)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(JOB_ID, job_id),
            SearchAttributePair(JOB_NAME, job.name),
            SearchAttributePair(JOB_TYPE, job.kind),
            SearchAttributePair(JOB_STATE, "Accepted"),
            SearchAttributePair(OWNER, job.owner or "-"),
        ]
    )
