"""Where a reader of an event stream stands, and the merge of several workflows' events.

A stream reads one or more journals (sources): a job's workflow, then each of
a partitioned job's partitions in order. A :class:`Cursor` holds the last
sequence number read from each; its text form (printed with every event,
accepted back with ``--after``) is those numbers joined by dots, e.g. ``12``
or ``3.480.512``. Resuming from an event's cursor reads every later event of
every source once: no gap, no repeat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from titus_flow.events.model import Event, EventKind


@dataclasses.dataclass
class Cursor:
    """The last sequence number read from each source (0: none yet)."""

    seqs: list[int] = dataclasses.field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """The cursor ``text`` (as :meth:`encode` wrote it); ValueError if it is not one."""
        if not text:
            return cls()
        parts = text.split(".")
        if not all(part.isdigit() for part in parts):
            raise ValueError(f"not an event cursor: {text!r} (use the cursor an event printed)")
        return cls([int(part) for part in parts])

    def encode(self) -> str:
        """The cursor as text."""
        return ".".join(str(seq) for seq in self.seqs) or "0"

    def after(self, source: int) -> int:
        """The last sequence number read from ``source``."""
        return self.seqs[source] if source < len(self.seqs) else 0

    def advance(self, source: int, seq: int) -> None:
        """Note that ``source``'s events up to ``seq`` were read."""
        if source >= len(self.seqs):
            self.seqs.extend([0] * (source + 1 - len(self.seqs)))
        self.seqs[source] = max(self.seqs[source], seq)


def gap(source_name: str, missed: int, first_seq: int, at: datetime) -> Event:
    """The event that says ``missed`` events of ``source_name`` fell off before they were read."""
    return Event(
        seq=first_seq - 1,
        at=at,
        kind=EventKind.GAP,
        message=f"{missed} event(s) of {source_name} fell off its journal before they were read",
    )


def merge(batches: Sequence[Sequence[Event]], cursor: Cursor) -> list[Event]:
    """The events of each source (``batches[n]`` read from source n), merged in time order.

    Each source's events keep their order; each event comes out with the
    cursor that resumes after it (``cursor`` is advanced past them all).
    """
    tagged = sorted(
        (
            (event.at, source, event.seq, event)
            for source, batch in enumerate(batches)
            for event in batch
        ),
        key=lambda row: row[:3],
    )
    merged = []
    for _, source, _, event in tagged:
        cursor.advance(source, event.seq)
        merged.append(dataclasses.replace(event, cursor=cursor.encode()))
    return merged
