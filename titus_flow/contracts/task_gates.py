"""The ``finished_tasks`` activity's messages: which tasks of another job have ended.

A batch task whose start waits on a task of another workflow (``depends_on``
``mode: n_to_n``, or ``task_order: sequential`` across partitions) learns of
it through this activity (:mod:`titus_flow.workflows.batch_gates`).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from titus_flow.contracts.base import Message

IndexRange = tuple[int, int]
"""Task indexes ``first..last``, both included."""


def as_ranges(indexes: Iterable[int]) -> list[IndexRange]:
    """``indexes`` as sorted ranges of consecutive indexes: a bounded payload."""
    ranges: list[IndexRange] = []
    for index in sorted(set(indexes)):
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
    return ranges


def in_ranges(ranges: Iterable[IndexRange]) -> set[int]:
    """Every index of ``ranges``."""
    return {index for first, last in ranges for index in range(first, last + 1)}


class FinishedTasksInput(Message):
    """Ask which of job ``job_id``'s tasks in ``ranges`` have finished."""

    job_id: str
    ranges: list[IndexRange]
    wait_seconds: float = Field(default=30.0, ge=0)  # for at least one to finish


class FinishedTasks(Message):
    """Tasks among those asked about that have finished: how each ended."""

    succeeded: list[IndexRange] = Field(default_factory=list)
    failed: dict[int, str] = Field(default_factory=dict)  # index -> finish reason

    @property
    def empty(self) -> bool:
        """Whether none of the tasks asked about has finished."""
        return not self.succeeded and not self.failed
