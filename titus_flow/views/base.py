"""The base of every view: plain data, JSON-ready, read leniently."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class View(BaseModel):
    """Base of views: plain data, JSON-ready.

    Unknown fields are ignored, not refused: a CLI or client of this release
    reads the views of a newer control plane (which adds fields) as
    Kubernetes clients do, rather than failing to describe every job.
    """

    model_config = ConfigDict(extra="ignore")
