"""A workflow's bounded, numbered journal of events (pure: no clock, no I/O).

The workflow appends at its state-change points; the journal keeps the last
:data:`~titus_flow.events.model.JOURNAL_EVENTS` and answers pages after a
sequence number. Rebuilt by replay like any workflow state; across
continue-as-new only a short :class:`~titus_flow.events.model.EventTail` and
the next number go on, so no payload grows with the job.
"""

from __future__ import annotations

import itertools
from collections import deque
from datetime import datetime

from titus_flow.events.model import (
    CARRIED_EVENTS,
    JOURNAL_EVENTS,
    PAGE_EVENTS,
    Event,
    EventKind,
    EventPage,
    EventQuery,
    EventTail,
)


class Journal:
    """The events one workflow recorded, the latest ``limit`` of them, numbered from 1."""

    def __init__(
        self, job_id: str | None = None, tail: EventTail | None = None, limit: int = JOURNAL_EVENTS
    ) -> None:
        self.job_id = job_id
        self._events: deque[Event] = deque(tail.events if tail else (), maxlen=limit)
        self._next = tail.next_seq if tail else 1

    def __len__(self) -> int:
        return len(self._events)

    @property
    def next_seq(self) -> int:
        """The number the next event takes."""
        return self._next

    def append(self, at: datetime, kind: EventKind, **fields: str | int | None) -> Event:
        """Record an event of ``kind`` at ``at`` (``fields``: those of :class:`Event`)."""
        fields.setdefault("job_id", self.job_id)
        event = Event(seq=self._next, at=at, kind=kind, **fields)  # type: ignore[arg-type]
        self._events.append(event)
        self._next += 1
        return event

    def page(self, query: EventQuery) -> EventPage:
        """The events after ``query.after``, at most ``query.limit`` (and at most a page)."""
        first = self._events[0].seq if self._events else self._next
        start = max(query.after + 1, first)
        limit = max(1, min(query.limit, PAGE_EVENTS))
        skip = start - first
        events = list(itertools.islice(self._events, skip, skip + limit))
        return EventPage(
            events=events,
            first_seq=first,
            next_seq=self._next,
            missed=max(0, first - query.after - 1) if query.after < self._next else 0,
            more=skip + len(events) < len(self._events),
        )

    def tail(self, count: int = CARRIED_EVENTS) -> EventTail:
        """The last ``count`` events and the next number, for the next run."""
        kept = list(itertools.islice(self._events, max(0, len(self._events) - count), None))
        return EventTail(next_seq=self._next, events=kept)
