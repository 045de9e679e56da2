"""Custom search attributes that make jobs findable in the CLI, `temporal` and the Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

JOB_ID = SearchAttributeKey.for_keyword("TitusJobId")
JOB_NAME = SearchAttributeKey.for_keyword("TitusJobName")
JOB_TYPE = SearchAttributeKey.for_keyword("TitusJobType")
JOB_STATE = SearchAttributeKey.for_keyword("TitusJobState")
OWNER = SearchAttributeKey.for_keyword("TitusOwner")

ALL = (JOB_ID, JOB_NAME, JOB_TYPE, JOB_STATE, OWNER)
"""Every attribute titus-flow registers; all are Keyword (exact-match) attributes."""
