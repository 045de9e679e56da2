"""Reading a task attempt's output from the agent that holds it, also while it runs."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import FailureError

from titus_flow.client.base import JobNotFoundError
from titus_flow.client.jobs import JobsClient
from titus_flow.cluster import agent_task_queue
from titus_flow.contracts import LogsChunk, LogsInput
from titus_flow.errors import UserError
from titus_flow.workflows.logs import FetchLogsInput, FetchLogsWorkflow

FOLLOW_WAIT_SECONDS = 5.0
"""How long one read of a followed attempt waits on the agent for new output."""
FOLLOW_POLL_SECONDS = 1.0
"""How often a follow looks for the first attempt of a task that has not started."""


class LogsClient(JobsClient):
    """Task output, read page by page or followed as it is written."""

    async def read_logs(
        self, task_id: str, attempt: int | None = None, offset: int = 0
    ) -> LogsChunk:
        """Read one page of an attempt's output (default: the latest attempt) from ``offset``.

        Works while the attempt runs (what it has written so far) and after
        (its kept log). A page holds at most ``LOGS_PAGE_BYTES``; ``more`` says
        whether another follows at ``next_offset`` already. A task not yet
        started has no output: an empty chunk for attempt 0.
        """
        source = await self._log_source(task_id, attempt)
        if source is None:
            return LogsChunk(data="", next_offset=0, complete=False)
        return await self._fetch_logs(source, offset)

    async def logs(
        self, task_id: str, attempt: int | None = None, *, follow: bool = False
    ) -> AsyncIterator[LogsChunk]:
        """Yield an attempt's output (default: the latest attempt) page by page.

        Without ``follow``: what it has written so far (all of it once it has
        ended). With ``follow``: then what it writes, as it writes it, until
        the attempt ends (the last chunk is ``complete``); a task that has not
        started yet is waited for. The attempt is chosen once: a retry that
        starts later is another attempt.
        """
        source = await self._log_source(task_id, attempt)
        while source is None:
            if not follow:
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            source = await self._log_source(task_id, attempt)
        offset = 0
        wait = FOLLOW_WAIT_SECONDS if follow else 0.0
        while True:
            chunk = await self._fetch_logs(source, offset, wait)
            offset = chunk.next_offset
            if chunk.data or chunk.complete:
                yield chunk
            if chunk.complete or (not follow and not chunk.more):
                return
            if not (chunk.data or chunk.more) and await self._attempt_ended(source):
                # Ended without output on the agent (e.g. its launch failed): nothing more comes.
                last = await self._fetch_logs(source, offset)
                yield last.model_copy(update={"complete": True})
                return

    async def follow_logs(self, task_id: str, attempt: int | None = None) -> AsyncIterator[str]:
        """Yield an attempt's output as it is written, until the attempt ends."""
        async for chunk in self.logs(task_id, attempt, follow=True):
            if chunk.data:
                yield chunk.data

    async def _log_source(self, task_id: str, attempt: int | None) -> _LogSource | None:
        """Where ``attempt`` of ``task_id`` ran (default: its latest); None before its first."""
        task = await self.task(task_id)
        if not task.attempts and attempt is None:
            return None
        number = attempt or task.attempts[-1].attempt
        record = next((a for a in task.attempts if a.attempt == number), None)
        if record is None or record.agent is None:
            held = len(task.attempts) + task.attempts_omitted
            raise UserError(f"task {task_id} has no attempt {number} with an agent (it has {held})")
        return _LogSource(task_id=task_id, attempt=number, agent=record.agent)

    async def _attempt_ended(self, source: _LogSource) -> bool:
        """Whether the job says ``source``'s attempt has finished."""
        try:
            task = await self.task(source.task_id)
        except JobNotFoundError:  # a service job keeps only its latest finished tasks
            return True
        record = next((a for a in task.attempts if a.attempt == source.attempt), None)
        return record is None or record.finished_at is not None or record.reason is not None

    async def _fetch_logs(self, source: _LogSource, offset: int, wait: float = 0.0) -> LogsChunk:
        """One page from the agent that ran the attempt, through a FetchLogs workflow."""
        try:
            chunk = await self.temporal.execute_workflow(
                FetchLogsWorkflow.run,
                FetchLogsInput(
                    task_queue=agent_task_queue(source.agent),
                    request=LogsInput(
                        task_id=source.task_id, attempt=source.attempt, offset=offset, wait=wait
                    ),
                ),
                id=f"logs-{source.task_id}-a{source.attempt}-{secrets.token_hex(3)}",
                task_queue=self.settings.control_task_queue,
            )
        except WorkflowFailureError as err:
            cause = err.cause  # the activity's failure, inside the workflow's
            if isinstance(cause, FailureError) and cause.cause is not None:
                cause = cause.cause
            raise UserError(
                f"cannot read the logs of {source.task_id} attempt {source.attempt} on agent"
                f" {source.agent}: {cause}"
            ) from err
        return chunk.model_copy(update={"attempt": source.attempt})


@dataclass(frozen=True)
class _LogSource:
    """One attempt of one task, and the agent that holds its output."""

    task_id: str
    attempt: int
    agent: str
