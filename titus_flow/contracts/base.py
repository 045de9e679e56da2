"""The base of every wire message."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """Base of every message: unknown fields are a bug, not data."""

    model_config = ConfigDict(extra="forbid")
