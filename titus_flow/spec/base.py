"""The base every spec model shares: strict, immutable, schema-exportable."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class SpecModel(BaseModel):
    """Base of all spec models: unknown fields are errors and instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A DNS-label name: lowercase letters, digits and '-', at most 63 characters."""

LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_./]{0,251}[A-Za-z0-9])?$"
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
"""A label key: letters, digits, '-', '_', '.', '/' (Docker / Kubernetes style)."""


def is_name(value: str) -> bool:
    """Whether ``value`` is a valid :data:`Name`."""
    return bool(_NAME.match(value))
