"""Activities through which user workflows drive service jobs (deploy, canary, controls)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from temporalio import activity
from temporalio.exceptions import ApplicationError

from titus_flow.activities.interfaces import ServiceActivityInterface, implements
from titus_flow.client import TitusClient
from titus_flow.contracts import (
    AutoscalingPauseInput,
    PutMetricInput,
    ServiceRolloutInput,
    ServiceWaitInput,
)
from titus_flow.contracts.load_balancers import LoadBalancersView
from titus_flow.errors import UserError
from titus_flow.views import JobView

HEARTBEAT_EVERY = 5.0


class ServiceActivities(ServiceActivityInterface):
    """Service job updates and waits, for :mod:`titus_flow.flow.services`.

    A workflow cannot send an update to another workflow or query it, so these
    run the client's calls from the control worker.
    """

    def __init__(self, titus: TitusClient) -> None:
        self.titus = titus

    @implements(ServiceActivityInterface.rollout)
    async def rollout(self, request: ServiceRolloutInput) -> int:
        """Start an update or canary, promote or roll back; the revision it leaves current."""
        titus, job_id = self.titus, request.job_id
        try:
            if request.action == "promote":
                return await titus.promote(job_id)
            if request.action == "rollback":
                return await titus.rollback(job_id, request.reason)
            if request.job is None:
                raise UserError(f"service_rollout {request.action!r} needs a job spec")
            canary = request.canary if request.action == "canary" else None
            return await titus.update_service(job_id, request.job, canary=canary)
        except UserError as err:  # rejected by the job's validator: retrying will not help
            raise ApplicationError(str(err), type="InvalidRequest", non_retryable=True) from err

    @implements(ServiceActivityInterface.wait)
    async def wait(self, request: ServiceWaitInput) -> JobView:
        """Wait as ``request.until`` says; the job's view at that point (or at the timeout)."""
        titus, job_id = self.titus, request.job_id
        if request.until == "healthy":
            waiting = titus.wait_healthy(job_id, request.timeout_seconds, request.revision)
        else:
            waiting = titus.wait_rollout(job_id, request.timeout_seconds)
        task = asyncio.ensure_future(waiting)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
                if done:
                    break
                activity.heartbeat()
            return task.result()
        except TimeoutError:
            return await titus.describe(job_id)  # the caller judges the view
        except UserError as err:
            raise ApplicationError(str(err), type="InvalidRequest", non_retryable=True) from err
        finally:
            task.cancel()

    @implements(ServiceActivityInterface.autoscaling_paused)
    async def autoscaling_paused(self, request: AutoscalingPauseInput) -> bool:
        """Pause or resume a service job's autoscaling; the new state."""
        with _invalid_request():
            return await self.titus.set_autoscaling_paused(request.job_id, request.paused)

    @implements(ServiceActivityInterface.put_metric)
    async def put_metric(self, request: PutMetricInput) -> str:
        """Push one value of a metric to a service job; the metric's full name."""
        with _invalid_request():
            source = f"workflow:{activity.info().workflow_id}"[:200]
            return await self.titus.put_metric(
                request.job_id, request.name, request.value, source=source
            )

    @implements(ServiceActivityInterface.load_balancers)
    async def load_balancers(self, job_id: str) -> LoadBalancersView:
        """A service job's target groups, each task's target and state in them."""
        with _invalid_request():
            return await self.titus.load_balancers(job_id)

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for a worker's ``activities=``."""
        return [
            self.rollout,
            self.wait,
            self.autoscaling_paused,
            self.put_metric,
            self.load_balancers,
        ]


@contextlib.contextmanager
def _invalid_request() -> Iterator[None]:
    """A request the job (or the client) refuses fails at once: retrying will not help."""
    try:
        yield
    except UserError as err:
        raise ApplicationError(str(err), type="InvalidRequest", non_retryable=True) from err
