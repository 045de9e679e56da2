"""What an import or export produced, what it could not carry, and bad input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO_COUNTERPART = "no titus-flow counterpart"
"""The reason given for an input field nobody read."""


@dataclass(frozen=True)
class Dropped:
    """A field of the input that the translation does not carry, and why.

    ``path`` names it in the input's own spelling, e.g.
    ``container.resources.efsMounts[0]``.
    """

    path: str
    reason: str

    def as_json(self) -> dict[str, str]:
        """The entry as ``{"path": ..., "reason": ...}``."""
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Translation:
    """A translated definition and every field of the input it left behind.

    On import ``document`` is a titus-flow job mapping (as a job file holds it);
    on export it is the other system's definition.
    """

    document: dict[str, Any]
    dropped: list[Dropped] = field(default_factory=list)


class MigrateInputError(ValueError):
    """The input is not a definition that can be translated: ``path`` says where.

    The CLI prints it as one line and exits 2. ``path`` and ``message`` are kept
    as data: they may hold text of the input, so they are only ever joined, never
    used as a format string.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
