"""What the capacity ledger records of each agent, reservation and pending request.

A leaf module: the ledger (:mod:`.core`) keeps these records in its state and
:mod:`.placement` turns them into scheduler snapshots, so both import them
from here rather than from each other.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from titus_flow.contracts import AgentInfo, Message, PlacementItem


class AgentRecord(Message):
    """An agent and what the ledger knows of its health."""

    info: AgentInfo
    state: str = "active"  # active | draining | lost
    last_seen: datetime | None = None


class Reservation(Message):
    """Capacity held on an agent for one task."""

    requester: str
    agent_id: str
    item: PlacementItem
    ports: dict[str, int] = Field(default_factory=dict)
    evicting: bool = False  # its requester was told to move it off a draining agent


class PendingRequest(Message):
    """A request waiting for capacity; ``reason`` as last told to its requester."""

    requester: str
    item: PlacementItem
    reason: str | None = None
    held_by_group: bool = False  # by its capacity group: more agents would not help
