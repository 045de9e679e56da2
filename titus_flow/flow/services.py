"""Service jobs from a user workflow: deploy, update and canary, each waiting for health.

Also the controls of a running service job: :func:`pause_autoscaling`,
:func:`resume_autoscaling`, :func:`put_metric` and :func:`load_balancer_targets`
(the CLI's ``job autoscaling --pause/--resume``, ``metrics put`` and ``job
load-balancers``), each one activity on the control worker.

A service job outlives the workflow that deploys it (its child workflow is
abandoned, not cancelled, when the caller ends). Updates, promotions and
rollbacks go through the control worker's ``service_rollout`` activity and
waits through ``service_wait``: a workflow cannot send an update to, or query,
another workflow itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

from titus_flow.activities.interfaces import ServiceActivityInterface
from titus_flow.contracts import (
    AutoscalingPauseInput,
    CanaryCheckInput,
    PutMetricInput,
    ServiceJobInput,
    ServiceRolloutInput,
    ServiceWaitInput,
)
from titus_flow.contracts.load_balancers import LoadBalancersView
from titus_flow.flow.ids import start_job_workflow
from titus_flow.lifecycle import RolloutPhase
from titus_flow.refs import workflow_name
from titus_flow.spec import ServiceJob
from titus_flow.views import JobView
from titus_flow.workflows.service import ServiceJobWorkflow

#: The workflow type that runs one service job (``titus_flow.workflows.service``).
SERVICE_JOB_WORKFLOW = workflow_name(ServiceJobWorkflow.run)

#: A user's canary check: an activity (function or registered name) that gets a
#: :class:`~titus_flow.contracts.CanaryCheckInput` and returns True to promote.
CanaryCheck = Callable[[CanaryCheckInput], Any] | str

DEFAULT_TIMEOUT = timedelta(minutes=10)
CONTROL_TIMEOUT = timedelta(minutes=1)
# Bounded: a server that stays unreachable fails the call, not loops on it.
_CONTROL_RETRY = RetryPolicy(
    maximum_attempts=5,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["InvalidRequest"],
)


class ServiceRolloutError(ApplicationError):
    """A service job did not become healthy, or its update rolled back.

    Raised by :func:`deploy_service` and :func:`update_service` (not by
    :func:`canary`, whose rollback is an expected outcome).

    Attributes:
        view: the job's view when the wait ended.

    Example::

        try:
            await update_service(job_id, new_spec)
        except ServiceRolloutError as err:
            workflow.logger.warning("update failed: %s", err.view.service.update)

    """

    def __init__(self, view: JobView, what: str) -> None:
        self.view = view
        status = view.service
        detail = (status.update if status else "") or view.message
        super().__init__(
            f"service job {view.id}: {what}" + (f" ({detail})" if detail else ""),
            view.model_dump(mode="json"),
            type="ServiceRollout",
            non_retryable=True,
        )


@dataclass(frozen=True)
class CanaryResult:
    """How a :func:`canary` ended.

    Attributes:
        promoted: True if the new revision now runs on every task.
        revision: the job's current revision (the new one if promoted).
        reason: why it was promoted or rolled back.
        view: the job's view at the end (healthy on ``revision``).

    Example::

        result = await canary("web-prod", v2_job, check=serves_ok)
        if not result.promoted:
            workflow.logger.warning("rolled back to %d: %s", result.revision, result.reason)

    """

    promoted: bool
    revision: int
    reason: str
    view: JobView


async def deploy_service(
    job: ServiceJob, *, id: str | None = None, timeout: timedelta = DEFAULT_TIMEOUT
) -> JobView:
    """Start service job ``job`` and wait until ``desired`` tasks are healthy.

    The job keeps running after the calling workflow ends (kill it with
    ``titus-flow job kill``). ``id`` defaults to ``<workflow id>-<name>-<n>``.
    Raises :class:`ServiceRolloutError` if it is not healthy within ``timeout``.

    Example::

        view = await deploy_service(web_job, id="web-prod")
        ports = [t.ports["http"] for t in view.tasks if t.healthy]
    """
    child = await start_job_workflow(
        ServiceJobWorkflow.run,
        job,
        ServiceJobInput.submitted(job, workflow.now()),
        id,
        ParentClosePolicy.ABANDON,  # a service outlives the workflow that deployed it
    )
    job_id = child.id
    view = await _wait(job_id, "healthy", timeout)
    if not _healthy(view):
        raise ServiceRolloutError(view, f"not healthy within {timeout}")
    return view


async def update_service(
    job_id: str, job: ServiceJob, *, timeout: timedelta = DEFAULT_TIMEOUT
) -> JobView:
    """Roll out ``job`` as the next revision of service job ``job_id`` and wait for it.

    Tasks are replaced within the job's ``max_surge`` / ``max_unavailable``.
    Raises :class:`ServiceRolloutError` if the update rolled back (new tasks
    failed or were not healthy in time) or did not finish within ``timeout``.

    Example::

        view = await update_service("web-prod", web_job.model_copy(update={"container": v2}))
        assert view.service.revision == 2
    """
    revision = await _rollout(ServiceRolloutInput(job_id=job_id, action="update", job=job))
    view = await _wait(job_id, "settled", timeout)
    status = view.service
    if status is None or status.rollout is not RolloutPhase.ROLLED_OUT:
        raise ServiceRolloutError(view, f"revision {revision} did not roll out")
    return view


async def canary(
    job_id: str,
    job: ServiceJob,
    *,
    tasks: int = 1,
    hold: timedelta = timedelta(seconds=30),
    check: CanaryCheck | None = None,
    check_timeout: timedelta = timedelta(minutes=5),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> CanaryResult:
    """Canary ``job`` on ``tasks`` tasks of service job ``job_id``, then promote or roll back.

    Steps: move ``tasks`` tasks to the new revision (the rest keep the old
    one); wait until they are healthy; hold for ``hold`` (a durable timer);
    run ``check`` (your activity, given a :class:`CanaryCheckInput`; it must
    be registered on the worker, e.g. defined in the ``--workflows`` file); if
    the canary is still healthy and the check returns True, roll the new
    revision out to every task, else roll back. Either way the job ends healthy
    and this returns a :class:`CanaryResult` (raises
    :class:`ServiceRolloutError` only if the job cannot get healthy at all).

    Example::

        @activity.defn
        async def error_rate_ok(request: CanaryCheckInput) -> bool:
            return await metrics.error_rate(request.job_id, request.revision) < 0.01

        result = await canary("web-prod", v2_job, tasks=1, hold=timedelta(minutes=5),
                              check=error_rate_ok)
        if not result.promoted:
            workflow.logger.warning("v2 rolled back: %s", result.reason)
    """
    revision = await _rollout(
        ServiceRolloutInput(job_id=job_id, action="canary", job=job, canary=tasks)
    )
    view = await _wait(job_id, "settled", timeout)
    if not view.canary_ready:
        return await _rolled_back(job_id, view, revision, "canary not healthy", timeout)
    await workflow.sleep(hold)
    view = await _wait(job_id, "settled", timeout)  # still healthy after the hold?
    if not view.canary_ready:
        return await _rolled_back(job_id, view, revision, "canary unhealthy during hold", timeout)
    if check is not None:
        # The user's own activity, a function or the name it is registered under:
        # a name here is the user's, not ours (allowed in test_typed_references).
        check_activity: Any = check  # execute_activity takes both
        verdict = await workflow.execute_activity(
            check_activity,
            CanaryCheckInput(job_id=job_id, revision=revision, view=view),
            start_to_close_timeout=check_timeout,
            result_type=bool,
        )
        if not verdict:
            return await _rolled_back(job_id, view, revision, "canary check failed", timeout)
    await _rollout(ServiceRolloutInput(job_id=job_id, action="promote"))
    view = await _wait(job_id, "settled", timeout)
    status = view.service
    if status is None or status.rollout is not RolloutPhase.ROLLED_OUT:
        return await _rolled_back(job_id, view, revision, "promotion did not roll out", timeout)
    return CanaryResult(True, revision, "canary healthy and checked; promoted", view)


async def _rolled_back(
    job_id: str, view: JobView, revision: int, why: str, timeout: timedelta
) -> CanaryResult:
    """Roll back unless the job already did, then wait until it is healthy again."""
    status = view.service
    if status is not None and status.revision == revision:
        current = await _rollout(ServiceRolloutInput(job_id=job_id, action="rollback", reason=why))
    else:  # the job rolled the canary back by itself (its tasks failed)
        current = status.revision if status else revision - 1
        why = status.update if status and status.update else why
    view = await _wait(job_id, "healthy", timeout, revision=current)
    if not _healthy(view):
        raise ServiceRolloutError(view, f"not healthy after rolling back to revision {current}")
    return CanaryResult(False, current, why, view)


async def pause_autoscaling(job_id: str) -> None:
    """Pause service job ``job_id``'s policies and scheduled actions (``job autoscaling --pause``).

    While paused nothing changes ``desired``; metrics are still kept. Fails
    (an ``ActivityError`` whose cause is an ``InvalidRequest`` ``ApplicationError``)
    for an unknown job or one without autoscaling.

    Example::

        await pause_autoscaling("web-prod")
        try:
            await run_job(load_test)  # the load must not scale the service
        finally:
            await resume_autoscaling("web-prod")
    """
    await _autoscaling_paused(job_id, True)


async def resume_autoscaling(job_id: str) -> None:
    """Let service job ``job_id``'s autoscaling act again (``job autoscaling --resume``).

    Fails as :func:`pause_autoscaling` does.

    Example::

        await resume_autoscaling("web-prod")
    """
    await _autoscaling_paused(job_id, False)


async def put_metric(job_id: str, name: str, value: float) -> str:
    """Push one value of metric ``name`` to service job ``job_id`` now (``metrics put``).

    ``name`` is ``custom:<name>``, a bare ``<name>`` (the same) or a built-in
    metric; it must be one a policy of the job reads. The sample's source is
    ``workflow:<your workflow id>``. Returns the metric's full name. Fails (an
    ``InvalidRequest``, not retried) for a value that is not a finite number, a
    job that is not a service, or a metric no policy reads.

    Example::

        depth = await workflow.execute_activity(queue_depth, start_to_close_timeout=...)
        await put_metric("workers", "queue_depth", depth)
    """
    return await workflow.execute_activity_method(
        ServiceActivityInterface.put_metric,
        PutMetricInput(job_id=job_id, name=name, value=value),
        start_to_close_timeout=CONTROL_TIMEOUT,
        retry_policy=_CONTROL_RETRY,
    )


async def load_balancer_targets(job_id: str) -> LoadBalancersView:
    """Service job ``job_id``'s target groups and their targets (``job load-balancers``).

    Example::

        view = await load_balancer_targets("web-prod")
        registered = [t for g in view.groups for t in g.targets if t.state == "registered"]
    """
    return await workflow.execute_activity_method(
        ServiceActivityInterface.load_balancers,
        job_id,
        start_to_close_timeout=CONTROL_TIMEOUT,
        retry_policy=_CONTROL_RETRY,
    )


async def _autoscaling_paused(job_id: str, paused: bool) -> None:
    await workflow.execute_activity_method(
        ServiceActivityInterface.autoscaling_paused,
        AutoscalingPauseInput(job_id=job_id, paused=paused),
        start_to_close_timeout=CONTROL_TIMEOUT,
        retry_policy=_CONTROL_RETRY,
    )


def _healthy(view: JobView) -> bool:
    status = view.service
    return status is not None and view.healthy_tasks() >= status.desired


async def _rollout(request: ServiceRolloutInput) -> int:
    return await workflow.execute_activity_method(
        ServiceActivityInterface.rollout,
        request,
        start_to_close_timeout=timedelta(minutes=1),
        # Bounded: a server that stays unreachable fails the rollout, not loops on it
        # (a retry is a no-op for the job: the update id is the activity's).
        retry_policy=RetryPolicy(
            maximum_attempts=5,
            maximum_interval=timedelta(seconds=30),
            non_retryable_error_types=["InvalidRequest"],
        ),
    )


async def _wait(
    job_id: str,
    until: Literal["healthy", "settled"],
    timeout: timedelta,
    revision: int | None = None,
) -> JobView:
    return await workflow.execute_activity_method(
        ServiceActivityInterface.wait,
        ServiceWaitInput(
            job_id=job_id,
            until=until,
            revision=revision,
            timeout_seconds=timeout.total_seconds(),
        ),
        start_to_close_timeout=timeout + timedelta(minutes=1),
        heartbeat_timeout=timedelta(seconds=30),
    )
