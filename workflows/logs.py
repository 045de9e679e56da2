"""A tiny workflow that fetches an attempt's logs from the agent that ran it.

Logs stay on the agent host; the client may be anywhere. Routing the read
through the agent's task queue needs no extra network path to the agent.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from titus_flow.activities.interfaces import AgentActivityInterface
    from titus_flow.contracts import LogsChunk, LogsInput, Message


class FetchLogsInput(Message):
    """Which agent queue to ask, and what to read."""

    task_queue: str
    request: LogsInput


@workflow.defn(name="FetchLogs")
class FetchLogsWorkflow:
    """Reads one chunk of an attempt's output on its agent."""

    @workflow.run
    async def run(self, request: FetchLogsInput) -> LogsChunk:
        """Return the chunk, or fail fast if the agent does not answer."""
        return await workflow.execute_activity_method(
            AgentActivityInterface.read_logs,
            request.request,
            task_queue=request.task_queue,
            schedule_to_start_timeout=timedelta(seconds=10),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
