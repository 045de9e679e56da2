"""When a batch task may start: array dependencies (issue #16), as AWS Batch has them.

* ``task_order: sequential``: task i starts once task i-1 of the same job
  succeeded;
* ``depends_on: [{job: up, mode: n_to_n}]``: task i starts once task i of job
  ``up`` succeeded (the DAG workflow starts both jobs, and tells this one the
  upstream job's id in :attr:`BatchJobInput.upstream`).

If the task waited on finished other than normally, the task fails without
running, saying which task it waited on and how that ended.

A prerequisite in this workflow run is awaited directly (no command). One in
another workflow (the upstream job, or for the first task of a partition, the
last task of the partition before) is learned through the ``finished_tasks``
activity: one watcher per other job asks about every task still waited on at
once, so a partition of 500 tasks makes a call per batch of finishes, not one
per task. Only a task that never started an attempt is gated; after a
continue-as-new the gates are asked again (what finished stays finished).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow.activities.interfaces import TaskGateActivityInterface
    from titus_flow.contracts import BatchJobInput
    from titus_flow.contracts.task_gates import (
        FinishedTasksInput,
        as_ranges,
        in_ranges,
    )
    from titus_flow.lifecycle import FinishReason, TaskState
    from titus_flow.spec import BatchJob
    from titus_flow.views import TaskView
    from titus_flow.workflows.batch_partitions import partition_id

TASK_GATES_PATCH = "batch-task-gates"
"""``workflow.patched`` id of gating task starts on ``task_order: sequential`` and
``n_to_n`` dependencies; runs of the previous release started every task at once."""


class _OtherJob:
    """What this run learned of another job's tasks, and one watcher asking for more."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.ended: dict[int, str] = {}  # index -> finish reason ("normal": succeeded)
        self._waited: dict[int, int] = {}  # index -> tasks of this run waiting on it
        self._watcher: asyncio.Task[None] | None = None

    async def reason(self, index: int) -> str:
        """How task ``index`` of the other job finished, once it has."""
        if index not in self.ended:
            self._waited[index] = self._waited.get(index, 0) + 1
            try:
                if self._watcher is None or self._watcher.done():
                    self._watcher = asyncio.create_task(self._watch())
                await workflow.wait_condition(lambda: index in self.ended)
            finally:
                self._waited[index] -= 1
                if not self._waited[index]:
                    del self._waited[index]
        return self.ended[index]

    async def _watch(self) -> None:
        # Waiters learn of an end only when they next run: skip what already ended.
        while waited := [index for index in self._waited if index not in self.ended]:
            found = await workflow.execute_activity_method(
                TaskGateActivityInterface.finished_tasks,
                FinishedTasksInput(job_id=self.job_id, ranges=as_ranges(waited)),
                start_to_close_timeout=timedelta(minutes=2),
                heartbeat_timeout=timedelta(seconds=20),
                summary=f"finished tasks of {self.job_id}",
            )
            self.ended.update(dict.fromkeys(in_ranges(found.succeeded), FinishReason.NORMAL.value))
            self.ended.update(found.failed)


class TaskGates:
    """The prerequisites of each task of one batch workflow run (a job or a partition)."""

    def __init__(self, request: BatchJobInput, job_id: str, tasks: list[TaskView]) -> None:
        job: BatchJob = request.job
        self._job_id = job_id
        # A job of more than a partition's tasks: ask the partition holding the
        # task, not the root (which would ask every partition for its counts).
        # n_to_n pairs jobs of equal instances, so both are partitioned alike
        # (a DAG's jobs have one partition size).
        self._partition_size = request.partition_size
        self._partitioned = job.instances > self._partition_size
        self._sequential = job.task_order == "sequential"
        # n_to_n dependencies whose job id the DAG passed (none outside a DAG).
        self._upstream = [
            (dep.job, request.upstream[dep.job])
            for dep in job.depends_on
            if dep.mode == "n_to_n" and dep.job in request.upstream
        ]
        self._here = {task.index: task for task in tasks}
        self._others: dict[str, _OtherJob] = {}
        self._patched: bool | None = None

    @property
    def active(self) -> bool:
        """Whether any task of this run waits on another task."""
        return self._sequential or bool(self._upstream)

    async def blocked(self, task: TaskView) -> str | None:
        """Wait until ``task`` may start (None), or say why it never will."""
        if self._patched is None:
            self._patched = workflow.patched(TASK_GATES_PATCH)
        if not self._patched:
            return None
        prerequisites = [(name, job_id, task.index) for name, job_id in self._upstream]
        if self._sequential and task.index > 0:
            prerequisites.insert(0, ("", self._job_id, task.index - 1))
        for name, job_id, index in prerequisites:
            what = f"task {index} of job {name}" if name else f"task {index} of this job"
            task.pending_reason = f"waiting for {what} to succeed"
            reason = await self._reason(job_id, index)
            if reason != FinishReason.NORMAL.value:
                task.pending_reason = None
                return f"not started: {what} did not succeed (it finished {reason})"
        task.pending_reason = None
        return None

    async def _reason(self, job_id: str, index: int) -> str:
        """How task ``index`` of job ``job_id`` finished, once it has."""
        local = self._here.get(index) if job_id == self._job_id else None
        if local is not None:
            await workflow.wait_condition(lambda: local.state is TaskState.FINISHED)
            return (local.reason or FinishReason.FAILED).value
        holder = partition_id(job_id, index, self._partition_size) if self._partitioned else job_id
        other = self._others.setdefault(holder, _OtherJob(holder))
        return await other.reason(index)
