"""What the capacity ledger records of each agent and of each reservation.

A leaf module: :mod:`titus_flow.ledger` keeps these records in its state and
:mod:`titus_flow.placement` turns them into scheduler snapshots, so both import
them from here rather than from each other. :mod:`titus_flow.ledger` still
exports them under their old names.
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
