"""The warning that autoscaling policies are accepted but not evaluated yet."""

from __future__ import annotations

from collections.abc import Iterable

from titus_flow.spec.jobs import BatchJob, ServiceJob


def not_evaluated_warnings(jobs: Iterable[BatchJob | ServiceJob]) -> list[str]:
    """One line per job whose autoscaling policies or scheduled actions nothing runs yet."""
    return [
        f"job {job.name!r}: autoscaling policies are validated but not evaluated yet;"
        " desired stays as set (see docs/services.md, 'Not yet')"
        for job in jobs
        if isinstance(job, ServiceJob)
        and job.autoscaling is not None
        and (job.autoscaling.policies or job.autoscaling.scheduled)
    ]
