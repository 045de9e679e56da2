"""Deterministic ids for the jobs a user workflow starts, and starting them."""

from __future__ import annotations

import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from titus_flow import visibility
from titus_flow.errors import UserError
from titus_flow.ids import check_id
from titus_flow.spec import BatchJob, ServiceJob
from titus_flow.views import JobView

W = TypeVar("W")
R = TypeVar("R", bound=BaseModel)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

# Per workflow instance: how many jobs of each name it started. Keyed by the
# instance (not a module global), so a replay, which builds a new instance,
# counts from zero again and derives the same child ids.
_started: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def child_job_id(job: BatchJob | ServiceJob) -> str:
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


def next_job_id(job: BatchJob | ServiceJob, id: str | None = None) -> str:
    """Count one more start of ``job`` and return its id (``id`` if given).

    A given ``id`` that is not a valid job id (it becomes a file path on agents)
    fails the calling workflow with ``InvalidJobId``.
    """
    if id is not None:
        try:
            check_id(id)
        except UserError as err:
            raise ApplicationError(str(err), type="InvalidJobId", non_retryable=True) from None
    counts = _started.setdefault(workflow.instance(), {})
    counts[job.name] = counts.get(job.name, 0) + 1
    return id or _default_id(job.name, counts[job.name])


async def start_job_workflow(
    run: Callable[[W, R], Awaitable[JobView]],
    job: BatchJob | ServiceJob,
    request: R,
    id: str | None,
    parent_close_policy: ParentClosePolicy,
) -> ChildWorkflowHandle[W, JobView]:
    """Start a job's workflow (``run``: its ``@workflow.run`` method) as a child.

    The child is findable like any job (search attributes).
    """
    job_id = next_job_id(job, id)
    return await workflow.start_child_workflow(
        run,
        request,
        id=job_id,
        parent_close_policy=parent_close_policy,
        search_attributes=visibility.job_search_attributes(job_id, job),
        static_summary=visibility.job_summary(job),
    )
