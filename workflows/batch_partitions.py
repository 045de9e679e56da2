"""A large batch job as partitions: child workflows of at most ``partition_size`` tasks.

The root workflow of a job of more than ``partition_size`` tasks (its input's;
:data:`PARTITION_SIZE` unless a test lowers it) runs no
task itself: it starts one partition (a
:class:`~titus_flow.workflows.batch.BatchJobWorkflow` child) per slice of task
indexes and sums up their ends. These are the pure parts: how a job is sliced,
what each partition is started with, how their counts add up, and their kill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from temporalio import workflow
from temporalio.workflow import ChildWorkflowHandle

with workflow.unsafe.imports_passed_through():
    from titus_flow.cluster import PARTITION_SIZE
    from titus_flow.contracts import BatchJobInput
    from titus_flow.views import PartitionSummary

__all__ = [
    "PARTITION_SIZE",
    "kill_partitions",
    "partition_holding",
    "partition_id",
    "partition_input",
    "partition_summaries",
    "summed_counts",
]


def partition_id(job_id: str, index: int, size: int = PARTITION_SIZE) -> str:
    """The id of the partition (of ``size`` tasks) of job ``job_id`` that runs task ``index``."""
    return f"{job_id}-p{index // size}"


def partition_summaries(
    job_id: str, instances: int, size: int = PARTITION_SIZE
) -> list[PartitionSummary]:
    """The partitions of job ``job_id`` (ids ``<job>-p<n>``), each with its range of indexes."""
    return [
        PartitionSummary(
            id=partition_id(job_id, first, size),
            first_index=first,
            count=min(size, instances - first),
        )
        for first in range(0, instances, size)
    ]


def partition_holding(partitions: list[PartitionSummary], index: int) -> PartitionSummary | None:
    """The partition of a root's ``partitions`` that runs task ``index``; None if none does."""
    for partition in partitions:
        if partition.first_index <= index < partition.first_index + partition.count:
            return partition
    return None


def partition_input(
    request: BatchJobInput, job_id: str, partition: PartitionSummary
) -> BatchJobInput:
    """What ``partition`` of the root's job is started with: the job, and its slice of tasks."""
    update = {"job_id": job_id, "first_index": partition.first_index, "count": partition.count}
    return request.model_copy(update=update)


def summed_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Tasks per state over every partition."""
    total: dict[str, int] = {}
    for part in counts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


async def kill_partitions(
    partitions: Sequence[ChildWorkflowHandle[Any, Any]], kill: Callable[[Any], Awaitable[None]]
) -> None:
    """Send the ``kill`` signal (its handler) to each of a root's ``partitions``, ended ones too."""
    # A partition that has ended cannot be signalled, and needs no kill: its
    # failure to take the signal must not fail the root (it did, and left the
    # other partitions running).
    results = await asyncio.gather(
        *(partition.signal(kill) for partition in partitions), return_exceptions=True
    )
    for partition, result in zip(partitions, results, strict=True):
        if isinstance(result, Exception):
            workflow.logger.info("partition %s not killed: %s", partition.id, result)
