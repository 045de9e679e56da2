"""Reading a task attempt's output from the agent that holds it, also while it runs.

An attempt that has ended is read from S3 instead when its agent cannot give
it (gone, or no longer keeping it) and its log was uploaded there
(docs/logs.md). S3 is read by this process, with the user's AWS credentials:
boto3's standard chain, ``AWS_ENDPOINT_URL_S3`` for a test server.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import FailureError
from temporalio.service import RPCError

from titus_flow.client.base import JobNotFoundError
from titus_flow.client.jobs import JobsClient
from titus_flow.cluster import AGENT_SILENCE, agent_task_queue
from titus_flow.contracts import LogsChunk, LogsInput
from titus_flow.errors import ClusterError, UserError
from titus_flow.log_store import LogNotFoundError, LogStoreError, S3Store, log_location, read_log
from titus_flow.views import AttemptView
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
        stored = await self._without_agent(source)
        if stored is not None:
            yield stored
            return
        offset = 0
        wait = FOLLOW_WAIT_SECONDS if follow else 0.0
        while True:
            try:
                chunk = await self._fetch_logs(source, offset, wait)
            except AgentLogsUnavailableError as err:
                if not (source.ended and source.url is not None):
                    raise
                yield await self._required_logs(source, offset, str(err))
                return
            if offset == 0 and source.ended and not (chunk.data or chunk.complete):
                # Ended, yet its agent keeps nothing of it (pruned): S3 may have it.
                why = f"its agent {source.agent} no longer keeps them"
                stored = await (
                    self._required_logs(source, 0, why)
                    if source.recorded
                    else self._stored_logs(source, 0)
                )
                if stored is not None:
                    yield stored
                    return
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
        """Where ``attempt`` of ``task_id`` ran (default: its latest); None before its first.

        An attempt the task's row no longer lists (it keeps the latest few) is
        read from the log bucket of this client's settings, if it has one.
        """
        task = await self.task(task_id)
        if not task.attempts and attempt is None:
            return None
        number = attempt or task.attempts[-1].attempt
        record = next((a for a in task.attempts if a.attempt == number), None)
        held = len(task.attempts) + task.attempts_omitted
        location = log_location(self.settings)
        derived = None if location is None else location.ref(task_id, number).url
        if record is None and derived is not None and 1 <= number < task.attempt:
            return _LogSource(task_id, number, agent=None, ended=True, url=derived)
        if record is None or record.agent is None:
            raise UserError(f"task {task_id} has no attempt {number} with an agent (it has {held})")
        # Without a recorded log (killed, or its agent uploads nowhere): the settings' bucket.
        return _LogSource(
            task_id,
            number,
            agent=record.agent,
            ended=_has_ended(record),
            url=record.log.url if record.log is not None else derived,
            recorded=record.log is not None,
        )

    async def _without_agent(self, source: _LogSource) -> LogsChunk | None:
        """The ended attempt's log from S3 when no agent is worth asking; else None.

        Asking an agent that is gone costs the read's 10 s start timeout: one
        that has not polled its queue lately is not asked first.
        """
        if source.url is None:
            return None
        if source.agent is None:
            return await self._required_logs(source, 0, "the task no longer lists the attempt")
        if not source.ended or await self._agent_polls(source.agent):
            return None
        return await self._stored_logs(source, 0)

    async def _agent_polls(self, agent: str) -> bool:
        """Whether ``agent`` polled its task queue lately (so may answer a read); unknown: True."""
        try:
            response = await self.temporal.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.temporal.namespace,
                    task_queue=TaskQueue(
                        name=agent_task_queue(agent), kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL
                    ),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
        except RPCError:
            return True
        since = time.time() - AGENT_SILENCE.total_seconds()
        return any(p.last_access_time.ToMicroseconds() / 1e6 > since for p in response.pollers)

    async def _stored_logs(self, source: _LogSource, offset: int) -> LogsChunk | None:
        """The attempt's log from ``offset`` on, read from S3; None if S3 has none.

        Failing to read it (no credentials, denied, unreachable) is a
        :class:`~titus_flow.errors.ClusterError`.
        """
        if source.url is None:
            return None
        try:
            data = await asyncio.to_thread(read_log, S3Store(), source.url)
        except LogNotFoundError:
            return None
        except LogStoreError as err:
            raise ClusterError(
                f"cannot read the logs of {source.task_id} attempt {source.attempt} from S3: {err}"
                " (AWS credentials and endpoint come from boto3's standard chain)"
            ) from None
        return LogsChunk(
            data=data[offset:].decode(errors="replace"),
            next_offset=len(data),
            complete=True,
            attempt=source.attempt,
        )

    async def _required_logs(self, source: _LogSource, offset: int, why: str) -> LogsChunk:
        """:meth:`_stored_logs`, when nothing else has them: a ClusterError if S3 has none."""
        stored = await self._stored_logs(source, offset)
        if stored is None:
            raise ClusterError(
                f"no logs of {source.task_id} attempt {source.attempt}: {why}, and {source.url}"
                " does not exist (an upload still under way or given up: see the agent's log)"
            )
        return stored

    async def _attempt_ended(self, source: _LogSource) -> bool:
        """Whether the job says ``source``'s attempt has finished."""
        try:
            task = await self.task(source.task_id)
        except JobNotFoundError:  # a service job keeps only its latest finished tasks
            return True
        record = next((a for a in task.attempts if a.attempt == source.attempt), None)
        return record is None or _has_ended(record)

    async def _fetch_logs(self, source: _LogSource, offset: int, wait: float = 0.0) -> LogsChunk:
        """One page from the agent that ran the attempt, through a FetchLogs workflow."""
        assert source.agent is not None
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
            raise AgentLogsUnavailableError(
                f"cannot read the logs of {source.task_id} attempt {source.attempt} on agent"
                f" {source.agent}: {cause}"
            ) from err
        return chunk.model_copy(update={"attempt": source.attempt})


class AgentLogsUnavailableError(UserError):
    """The agent that ran the attempt did not give its logs (gone, or failed the read)."""


def _has_ended(record: AttemptView) -> bool:
    """Whether the job records the attempt as ended."""
    return record.finished_at is not None or record.reason is not None


@dataclass(frozen=True)
class _LogSource:
    """One attempt of one task, the agent that holds its output and where S3 would.

    ``agent`` None: only S3 can tell. ``url``: the log's S3 object, ``recorded``
    when the attempt's agent said it uploads there (rather than derived from
    this client's settings).
    """

    task_id: str
    attempt: int
    agent: str | None
    ended: bool = False
    url: str | None = None
    recorded: bool = False
