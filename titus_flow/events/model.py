"""Typed events of the event stream, and the pages a workflow's ``events`` query answers.

An :class:`Event` is one thing that happened to a job, a task or an agent, as
the workflow that saw it recorded it: a job accepted or finished, a task's
state change (with its reason, attempt and agent), a health change, a scaling
decision, an agent registered, lost or drained. Each workflow numbers its own
events (``seq``, from 1, never reused across continue-as-new), so a reader
resumes after the last number it saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from titus_flow.views.base import View

JOURNAL_EVENTS = 5_000
"""Most events one workflow keeps; older ones fall off (a reader behind them is told)."""
CARRIED_EVENTS = 100
"""Events a workflow hands to its next run across continue-as-new (bounded payload)."""
PAGE_EVENTS = 500
"""Most events one ``events`` query answers with."""


class EventKind(StrEnum):
    """What an event is about."""

    JOB_ACCEPTED = "job_accepted"
    JOB_STATE = "job_state"  # Running, Degraded, KillInitiated
    JOB_FINISHED = "job_finished"  # Succeeded, Failed, Killed
    TASK_STATE = "task_state"
    TASK_HEALTH = "task_health"
    SCALING = "scaling"
    PLACEMENT = "placement"
    AGENT_REGISTERED = "agent_registered"
    AGENT_LOST = "agent_lost"
    AGENT_DRAINED = "agent_drained"
    GAP = "gap"  # the client's note that events fell off before it read them


@dataclass(frozen=True, slots=True)
class Event:
    """One event; ``cursor`` is set by the client: where a reader resumes after it."""

    seq: int
    at: datetime
    kind: EventKind
    job_id: str | None = None
    task_id: str | None = None
    state: str | None = None
    reason: str | None = None
    attempt: int | None = None
    agent: str | None = None
    message: str = ""
    cursor: str = field(default="", compare=False)


class EventQuery(View):
    """Ask a workflow for its events after sequence number ``after``."""

    after: int = 0
    limit: int = PAGE_EVENTS


class EventTail(View):
    """The end of a journal carried across continue-as-new: its last events and next number.

    ``state``: the job's state as the journal last saw it.
    """

    next_seq: int = 1
    state: str | None = None
    events: list[Event] = []


class EventPage(View):
    """One page of a workflow's events, with what a follower needs to know when to stop.

    ``missed`` counts events after the asked position that fell off the
    journal before they were read (the page starts at ``first_seq``, later).
    ``parts`` lists the workflows whose journals belong to the same stream (a
    partitioned job's partitions). ``ended``: the workflow records nothing more.
    """

    events: list[Event] = []
    first_seq: int = 1
    next_seq: int = 1
    missed: int = 0
    more: bool = False
    state: str | None = None
    ended: bool = False
    parts: list[str] = []
