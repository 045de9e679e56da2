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
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowExecution, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow import visibility
from titus_flow.client.base import JobNotFoundError, batch_handle, scheduler_handle
from titus_flow.client.jobs import JobsClient
from titus_flow.errors import UserError
from titus_flow.events import Cursor, Event, EventKind, EventPage, EventQuery, gap, merge
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.scheduler import SchedulerWorkflow

POLL_FIRST_SECONDS = 0.25
"""The wait between rounds while events come; it doubles while none do."""
POLL_MAX_SECONDS = 2.0
"""The longest wait between rounds of an idle follow."""
CLUSTER_START = timedelta(hours=1)
"""How far back the cluster stream starts without a cursor."""
VISIBILITY_LAG = timedelta(seconds=10)
"""While following, jobs are looked for again this far before the last one printed:
visibility may index a job after later ones (each is printed once per follower)."""
JOB_QUERY = "TitusJobType IS NOT NULL"


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

    async def cluster_events(
        self, *, after: str | None = None, follow: bool = False
    ) -> AsyncIterator[Event]:
        """Yield the cluster's events after cursor ``after`` (default: the last hour's).

        The scheduler's journal (agents registered, lost, drained; placements,
        one event per job and scheduling iteration) merged with jobs accepted
        and finished as Temporal visibility lists them (those two events have
        their time in milliseconds as ``seq``): no job workflow is queried.
        Without ``follow``, stops once what is there was read; with it, never.
        """
        try:
            cursor = Cursor.parse(after)
        except ValueError as err:
            raise UserError(f"--after: {err}") from err
        if after is None:
            start = int((datetime.now(UTC) - CLUSTER_START).timestamp() * 1000)
            cursor = Cursor([0, start, start])
        seen: dict[tuple[str, EventKind], int] = {}  # visibility events printed, by time
        wait = POLL_FIRST_SECONDS
        while True:
            page = await self._scheduler_page(cursor.after(0))
            lookback = int(VISIBILITY_LAG.total_seconds() * 1000) if seen else 0
            accepted, finished = await asyncio.gather(
                self._visible_jobs(EventKind.JOB_ACCEPTED, cursor.after(1) - lookback, seen),
                self._visible_jobs(EventKind.JOB_FINISHED, cursor.after(2) - lookback, seen),
            )
            for event in _gaps(["the scheduler"], [page], cursor):
                yield event
            for event in merge([page.events, accepted, finished], cursor):
                if event.kind in (EventKind.JOB_ACCEPTED, EventKind.JOB_FINISHED):
                    seen[(event.job_id or "", event.kind)] = event.seq
                yield event
            horizon = min(cursor.after(1), cursor.after(2)) - 2 * lookback
            seen = {key: at for key, at in seen.items() if at > horizon}
            if page.more:
                continue
            if not follow:
                return
            busy = bool(page.events or accepted or finished)
            wait = POLL_FIRST_SECONDS if busy else min(wait * 2, POLL_MAX_SECONDS)
            await asyncio.sleep(wait)

    async def _scheduler_page(self, after: int) -> EventPage:
        """A page of the scheduler's journal (empty while there is no scheduler)."""
        try:
            handle = scheduler_handle(self.temporal, self.settings)
            return await handle.query(SchedulerWorkflow.events, EventQuery(after=after))
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return EventPage()
            raise

    async def _visible_jobs(
        self, kind: EventKind, after_ms: int, seen: dict[tuple[str, EventKind], int]
    ) -> list[Event]:
        """Jobs that started (or ended) after ``after_ms``, as events, oldest first."""
        field = "StartTime" if kind is EventKind.JOB_ACCEPTED else "CloseTime"
        since = datetime.fromtimestamp(after_ms / 1000, UTC).isoformat(timespec="milliseconds")
        listed = self.temporal.list_workflows(f"{JOB_QUERY} AND {field} > '{since}'")
        found = [_job_event(wf, kind) async for wf in listed]
        fresh = [e for e in found if e.seq > after_ms and (e.job_id or "", kind) not in seen]
        return sorted(fresh, key=lambda event: event.seq)

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


def _job_event(wf: WorkflowExecution, kind: EventKind) -> Event:
    """Job workflow ``wf`` accepted (started) or finished (closed), as visibility lists it."""
    attrs = wf.typed_search_attributes
    at = (wf.start_time if kind is EventKind.JOB_ACCEPTED else wf.close_time) or wf.start_time
    state = "Accepted" if kind is EventKind.JOB_ACCEPTED else attrs.get(visibility.JOB_STATE)
    return Event(
        seq=int(at.timestamp() * 1000),
        at=at,
        kind=kind,
        job_id=wf.id,
        state=state,
        message=f"{attrs.get(visibility.JOB_TYPE)} job {attrs.get(visibility.JOB_NAME)}",
    )


def _gaps(names: list[str], pages: list[EventPage], cursor: Cursor) -> list[Event]:
    """A ``gap`` event for each page whose journal dropped events the reader had not read."""
    gaps = []
    for source, (name, page) in enumerate(zip(names, pages, strict=True)):
        if page.missed:
            cursor.advance(source, page.first_seq - 1)
            note = gap(name, page.missed, page.first_seq, datetime.now(UTC))
            gaps.append(dataclasses.replace(note, cursor=cursor.encode()))
    return gaps
