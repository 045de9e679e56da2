"""A large batch job as partitions: child workflows of at most :data:`PARTITION_SIZE` tasks.

The root workflow of a job of more than :data:`PARTITION_SIZE` tasks runs no
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
    from titus_flow.contracts import BatchJobInput
    from titus_flow.views import PartitionSummary

# Tasks per workflow history: ~10 events a task keeps a partition far below the
# 10,240-event warning; a 10,000-task job is 20 partitions.
PARTITION_SIZE = 500


def partition_id(job_id: str, index: int) -> str:
    """The id of the partition of job ``job_id`` that runs task ``index``."""
    return f"{job_id}-p{index // PARTITION_SIZE}"


def partition_summaries(job_id: str, instances: int) -> list[PartitionSummary]:
    """The partitions of job ``job_id`` (ids ``<job>-p<n>``), each with its range of indexes."""
    return [
        PartitionSummary(
            id=partition_id(job_id, first),
            first_index=first,
            count=min(PARTITION_SIZE, instances - first),
        )
        for n, first in enumerate(range(0, instances, PARTITION_SIZE))
    ]


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
