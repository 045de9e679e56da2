"""The event stream of jobs, tasks and agents; all pure.

Typed events (:mod:`.model`), the bounded journal each workflow keeps
(:mod:`.journal`), the cursor and merge a reader uses (:mod:`.cursor`), and
the bounded label values of the workflow-side metrics (:mod:`.labels`).
"""

from titus_flow.events.cursor import Cursor, gap, merge
from titus_flow.events.journal import Journal
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

__all__ = [
    "CARRIED_EVENTS",
    "JOURNAL_EVENTS",
    "PAGE_EVENTS",
    "Cursor",
    "Event",
    "EventKind",
    "EventPage",
    "EventQuery",
    "EventTail",
    "Journal",
    "gap",
    "merge",
]
