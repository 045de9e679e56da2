"""The warning that scheduled actions are accepted but not run yet (policies are evaluated)."""

from __future__ import annotations

from collections.abc import Iterable

from titus_flow.spec.jobs import BatchJob, ServiceJob


def not_evaluated_warnings(jobs: Iterable[BatchJob | ServiceJob]) -> list[str]:
    """One line per job whose scheduled actions nothing runs yet."""
    return [
        f"job {job.name!r}: scheduled actions are validated but not run yet;"
        " policies are evaluated (see docs/services.md, 'Not yet')"
        for job in jobs
        if isinstance(job, ServiceJob) and job.autoscaling is not None and job.autoscaling.scheduled
    ]
