"""Service jobs: waiting for health, scaling, rolling updates, canaries, rollbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from titus_flow.client.jobs import JobsClient
from titus_flow.contracts import CanaryRequest, ScaleRequest
from titus_flow.errors import UserError
from titus_flow.lifecycle import JobState
from titus_flow.spec import Capacity, ServiceJob
from titus_flow.views import JobView, ServiceStatus
from titus_flow.workflows.service import ServiceJobWorkflow


class ServicesClient(JobsClient):
    """What only service jobs do, on top of :class:`~titus_flow.client.jobs.JobsClient`."""

    async def wait_healthy(
        self,
        job_id: str,
        timeout: float = 300.0,
        revision: int | None = None,
        on_progress: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Wait until service job ``job_id`` has ``desired`` healthy tasks.

        With ``revision``, only tasks of that revision count and none of another
        may still run (an update or rollback has finished). ``on_progress`` is
        called with the job's view at every look. Returns the job's view;
        raises TimeoutError with the job's last message after ``timeout`` seconds.
        """

        def done(view: JobView, status: ServiceStatus) -> bool:
            others = revision is not None and view.runs_other_revisions(revision)
            healthy = view.healthy_tasks(revision) >= status.desired
            return healthy and not others and view.state is JobState.RUNNING

        def progress(view: JobView, status: ServiceStatus) -> str:
            healthy = f"{view.healthy_tasks(revision)}/{status.desired} healthy"
            return healthy + (f"; {view.message}" if view.message else "")

        return await self._wait_service(job_id, timeout, done, progress, on_progress)

    async def scale(
        self,
        job_id: str,
        desired: int | None = None,
        min: int | None = None,
        max: int | None = None,
    ) -> Capacity:
        """Change a service job's desired/min/max.

        Rejected, changing nothing, unless the result keeps min <= desired <= max.
        """
        request = ScaleRequest(desired=desired, min=min, max=max)
        return await self._update(job_id, ServiceJobWorkflow.scale, request)

    async def update_service(self, job_id: str, job: ServiceJob, canary: int | None = None) -> int:
        """Roll out ``job`` as the next revision of service job ``job_id``.

        With ``canary``, only that many tasks move to the new revision and the
        job holds there until :meth:`promote` or :meth:`rollback`. Returns the
        new revision number. Its target groups are checked as at submit.
        """
        await self.check_load_balancers(job)
        if canary is None:
            return await self._update(job_id, ServiceJobWorkflow.update_job, job)
        request = CanaryRequest(job=job, tasks=canary)
        return await self._update(job_id, ServiceJobWorkflow.canary, request)

    async def promote(self, job_id: str) -> int:
        """Roll a service job's canary revision out to every task."""
        return await self._update(job_id, ServiceJobWorkflow.promote)

    async def rollback(self, job_id: str, reason: str = "") -> int:
        """Return a service job to its previous revision; the revision now current."""
        return await self._update(job_id, ServiceJobWorkflow.rollback, reason)

    async def wait_rollout(self, job_id: str, timeout: float = 600.0) -> JobView:
        """Wait until a service job's update settles.

        Settled: rolled out, rolled back, or a canary whose tasks are all
        healthy. Raises TimeoutError after ``timeout`` seconds.
        """
        return await self._wait_service(
            job_id,
            timeout,
            lambda view, status: status.rollout.is_settled or view.canary_ready,
            lambda view, status: status.update or view.message,
        )

    async def _wait_service(
        self,
        job_id: str,
        timeout: float,
        done: Callable[[JobView, ServiceStatus], bool],
        progress: Callable[[JobView, ServiceStatus], str],
        on_progress: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Poll ``job_id`` until ``done`` or the job ends; TimeoutError after ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            view = await self.describe(job_id)
            status = view.service
            if status is None:
                raise UserError(f"job {job_id} is a {view.type} job, not a service job")
            if on_progress is not None:
                on_progress(view)
            if done(view, status) or view.state.is_final:
                return view
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"job {job_id}: {progress(view, status)} after {timeout:g}s")
            await asyncio.sleep(0.5)
