"""Arguments and answers of the scheduler workflow's paged agent queries (issue 11).

An answer is bounded by its ``limit``, never by the cluster's tasks or agents:
Temporal warns at 512 KiB per payload, and 10,000 task keys alone are ~400 KB.
"""

from __future__ import annotations

from pydantic import Field

from titus_flow.contracts import Message

AGENTS_PAGE = 500
"""Agents in one ``agents`` answer (~300 bytes each): the default and the most."""

TASKS_PAGE = 1000
"""Task keys in one ``agent_tasks`` answer (~40 bytes each): the default and the most."""


class AgentQuery(Message):
    """Which agents the ``agents`` query answers: a page, in agent id order.

    ``agent_id``: just that agent (an empty answer if unknown); ``state``: only
    agents in it (active, draining, lost).
    """

    agent_id: str | None = None
    state: str | None = None
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=AGENTS_PAGE, ge=1, le=AGENTS_PAGE)


class AgentTasksQuery(Message):
    """A page of the keys of the tasks holding capacity on one agent (sorted)."""

    agent_id: str
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=TASKS_PAGE, ge=1, le=TASKS_PAGE)


class AgentTasks(Message):
    """Answer of ``agent_tasks``: ``total`` tasks on the agent, ``tasks`` from ``offset``."""

    agent_id: str
    total: int
    offset: int
    tasks: list[str] = Field(default_factory=list)
