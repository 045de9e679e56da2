"""A task's health checks, run beside supervise, and the changes reported to its job."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.service import RPCError

from titus_flow.contracts import SuperviseInput, TaskHealth
from titus_flow.runtime.base import Driver
from titus_flow.runtime.health import Health, HealthChange, HealthMonitor
from titus_flow.workflows.service import ServiceJobWorkflow


class HealthWatch:
    """Runs a task's health checks beside supervise and reports changes to its job.

    Probes stay on the agent; only state changes travel, as a ``task_health``
    signal, so a health check every few seconds does not grow the job's history.
    """

    def __init__(self, request: SuperviseInput, name: str, *, driver: Driver, host: str) -> None:
        """Start probing container ``name`` through ``driver``, its ports at ``host``."""
        assert request.health_check is not None
        self.unhealthy: str | None = None
        self.became_healthy = False
        self._request = request
        self._client = activity.client()
        self._stop = asyncio.Event()
        monitor = HealthMonitor(
            request.health_check,
            ports=request.ports,
            container_name=name,
            driver=driver,
            started_at=request.started_at,
            host=host,
        )
        self._task = asyncio.create_task(monitor.run(self._on_change, self._stop))

    async def _on_change(self, change: HealthChange) -> None:
        if change.state is Health.UNHEALTHY:
            self.unhealthy = change.message
        self.became_healthy = self.became_healthy or change.state is Health.HEALTHY
        if self._request.workflow_id is None:
            return
        handle = self._client.get_workflow_handle(self._request.workflow_id)
        try:
            await handle.signal(
                ServiceJobWorkflow.task_health,
                TaskHealth(
                    task_id=self._request.task_id,
                    attempt=self._request.attempt,
                    healthy=change.state is Health.HEALTHY,
                    message=change.message,
                    at=change.at,
                ),
            )
        except RPCError as err:  # the job may have ended meanwhile; supervision goes on
            activity.logger.warning("could not report health of %s: %s", self._request.task_id, err)

    async def close(self) -> None:
        """Stop probing and wait for the probe loop to end."""
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, timeout=10)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
