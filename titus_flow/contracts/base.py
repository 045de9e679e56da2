"""The base of every wire message, and the names agents and workflows share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """Base of every message: unknown fields are a bug, not data."""

    model_config = ConfigDict(extra="forbid")


def agent_task_queue(agent_id: str) -> str:
    """The task queue an agent serves."""
    return f"titus-agent-{agent_id}"
