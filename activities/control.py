"""Activities of the control plane itself (run by the control worker)."""

from __future__ import annotations

from collections.abc import Callable

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


class ControlActivities:
    """Housekeeping that needs the Temporal client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="closed_workflows")
    async def closed_workflows(self, workflow_ids: list[str]) -> list[str]:
        """Which of ``workflow_ids`` no longer run (ended, or never existed).

        The scheduler uses it to free capacity held by jobs that were terminated
        or reset from outside, which never got to release it themselves.
        """
        closed = []
        for workflow_id in workflow_ids:
            try:
                description = await self.client.get_workflow_handle(workflow_id).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    closed.append(workflow_id)
                continue  # cannot tell now: keep its capacity
            if description.status != WorkflowExecutionStatus.RUNNING:
                closed.append(workflow_id)
        return closed

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for a worker's ``activities=``."""
        return [self.closed_workflows]
