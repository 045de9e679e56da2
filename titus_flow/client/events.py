"""Following a job's events: the ``events`` query of each of its workflows, merged, resumable.

A job's events live in the journals of its workflows (:mod:`titus_flow.workflows.journal`):
the job's own, and for a partitioned batch job each partition's. A reader polls
each with one ``events`` query per round (backing off while nothing happens),
merges what they answer in time order, and yields each event with the
:class:`~titus_flow.events.Cursor` that resumes right after it. A journal keeps
its latest events only: a reader that fell behind is told how many it missed
(an event of kind ``gap``) instead of skipping them silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.client.base import JobNotFoundError, batch_handle
from titus_flow.client.jobs import JobsClient
from titus_flow.errors import UserError
from titus_flow.events import Cursor, Event, EventPage, EventQuery, gap, merge
from titus_flow.workflows.batch import BatchJobWorkflow

POLL_FIRST_SECONDS = 0.25
"""The wait between rounds while events come; it doubles while none do."""
POLL_MAX_SECONDS = 2.0
"""The longest wait between rounds of an idle follow."""


class EventsClient(JobsClient):
    """A job's events: read once, or followed until the job ends."""

    async def job_events(
        self, job_id: str, *, after: str | None = None, follow: bool = False
    ) -> AsyncIterator[Event]:
        """Yield job ``job_id``'s events after cursor ``after`` (default: from its start).

        Each event's ``cursor`` resumes after it (``after=event.cursor``): no
        gap, no repeat. Without ``follow``, stops once every event recorded so
        far was read; with it, waits for more (and for a job not started yet)
        until the job has ended and its events are drained. ``after`` that is
        not a cursor raises :class:`~titus_flow.errors.UserError`.
        """
        try:
            cursor = Cursor.parse(after)
        except ValueError as err:
            raise UserError(f"--after: {err}") from err
        wait = POLL_FIRST_SECONDS
        while True:
            root = await self._events_page(job_id, cursor.after(0))
            if root is None:
                if not follow:
                    raise JobNotFoundError(f"no job {job_id!r}")
                await asyncio.sleep(wait)
                wait = min(wait * 2, POLL_MAX_SECONDS)
                continue
            parts = await asyncio.gather(
                *(self._events_page(p, cursor.after(n + 1)) for n, p in enumerate(root.parts))
            )
            pages = [root, *(page or EventPage() for page in parts)]
            for event in _gaps([job_id, *root.parts], pages, cursor):
                yield event
            for event in merge([page.events for page in pages], cursor):
                yield event
            if any(page.more for page in pages):
                continue
            if not follow or all(page.ended for page in pages):
                return
            busy = any(page.events for page in pages)
            wait = POLL_FIRST_SECONDS if busy else min(wait * 2, POLL_MAX_SECONDS)
            await asyncio.sleep(wait)

    async def _events_page(self, workflow_id: str, after: int) -> EventPage | None:
        """One page of ``workflow_id``'s journal after ``after``; None if it does not exist yet."""
        try:
            return await batch_handle(self.temporal, workflow_id).query(
                BatchJobWorkflow.events, EventQuery(after=after)
            )
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        except WorkflowQueryFailedError as err:
            raise UserError(
                f"job workflow {workflow_id} keeps no events ({err}): it runs on a release"
                " before the event stream; its state is in `titus-flow job describe`"
            ) from err


def _gaps(names: list[str], pages: list[EventPage], cursor: Cursor) -> list[Event]:
    """A ``gap`` event for each page whose journal dropped events the reader had not read."""
    gaps = []
    for source, (name, page) in enumerate(zip(names, pages, strict=True)):
        if page.missed:
            cursor.advance(source, page.first_seq - 1)
            note = gap(name, page.missed, page.first_seq, datetime.now(UTC))
            gaps.append(dataclasses.replace(note, cursor=cursor.encode()))
    return gaps
