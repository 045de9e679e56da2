"""The generated workflow of a job file whose batch jobs use ``depends_on``.

Each job starts, as a child ``BatchJob`` workflow, as soon as every job it
depends on succeeded; independent jobs run at the same time. A failed (or
killed) job skips everything that depends on it, directly or not; the other
branches still run to their end, then the DAG fails with a message naming the
failed and the skipped jobs. The loader already rejected unknown names and
cycles, so every job here is reachable.

A ``mode: n_to_n`` dependency does not wait for the whole job: the dependent
job starts once that job has started (and its other dependencies succeeded),
and each of its tasks waits for its own upstream task
(:mod:`~titus_flow.workflows.batch_gates`); it is skipped only if that job
never started.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from titus_flow.flow import safe_id, start_job
    from titus_flow.lifecycle import JobState
    from titus_flow.spec import BatchJob
    from titus_flow.views import JobView

DAG_WORKFLOW = "JobDag"

ARRAY_DEPENDENCIES_PATCH = "dag-n-to-n"
"""``workflow.patched`` id of starting a job with ``n_to_n`` dependencies once those
jobs started (not ended); the previous release had no such dependencies."""

DAG_TASK_BYTES = 256 * 1024
"""Most JSON bytes of task rows the DAG's result (or failure) carries, over all its jobs."""


class DagInput(BaseModel):
    """The jobs of one file, in file order."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchJob]


class DagResult(BaseModel):
    """Every job's outcome: its final view, or why it never started."""

    model_config = ConfigDict(extra="forbid")

    views: dict[str, JobView] = Field(default_factory=dict)  # bounded: failed tasks first
    skipped: dict[str, str] = Field(default_factory=dict)
    message: str = ""

    @property
    def succeeded(self) -> bool:
        """Whether every job ran and succeeded."""
        return not self.skipped and all(v.state is JobState.SUCCEEDED for v in self.views.values())


def dag_job_id(dag_id: str, job_name: str) -> str:
    """The job id of ``job_name`` inside the DAG ``dag_id`` (readable, one per job)."""
    return f"{safe_id(dag_id)}-{job_name}"


@workflow.defn(name=DAG_WORKFLOW)
class JobDagWorkflow:
    """Runs a file's batch jobs in ``depends_on`` order."""

    def __init__(self) -> None:
        self._result = DagResult()

    @workflow.run
    async def run(self, request: DagInput) -> DagResult:
        """Run every job once its dependencies succeeded; fail if any job did not run or failed."""
        result = self._result
        by_name = {job.name: job for job in request.jobs}
        loop = asyncio.get_running_loop()
        # Each job resolves these: done, True once it succeeded (False: failed or
        # skipped); started, True once it started (False: skipped).
        done: dict[str, asyncio.Future[bool]] = {name: loop.create_future() for name in by_name}
        started: dict[str, asyncio.Future[bool]] = {name: loop.create_future() for name in by_name}
        dag_id = workflow.info().workflow_id

        def skip(job: BatchJob, why: str) -> None:
            result.skipped[job.name] = why
            done[job.name].set_result(False)
            started[job.name].set_result(False)

        async def run_one(job: BatchJob) -> None:
            array = [dep.job for dep in job.depends_on if dep.mode == "n_to_n"]
            if array and not workflow.patched(ARRAY_DEPENDENCIES_PATCH):
                array = []
            names = [name for name in job.dependency_names() if name not in array]
            outcomes = [await done[dep] for dep in names]
            if not all(outcomes):
                failed = [d for d, ok in zip(names, outcomes, strict=True) if not ok]
                skip(job, f"dependency {', '.join(failed)} did not succeed")
                return
            runs = [await started[dep] for dep in array]
            if not all(runs):
                missing = [d for d, ok in zip(array, runs, strict=True) if not ok]
                skip(job, f"dependency {', '.join(missing)} did not run")
                return
            handle = await start_job(
                job,
                id=dag_job_id(dag_id, job.name),
                upstream={dep: dag_job_id(dag_id, dep) for dep in array},
            )
            started[job.name].set_result(True)
            view = await handle.result(check=False)
            # Each job's share of the budget keeps the result below Temporal's limits.
            result.views[job.name] = view.bounded(DAG_TASK_BYTES // len(request.jobs))
            done[job.name].set_result(view.state is JobState.SUCCEEDED)

        await asyncio.gather(*(run_one(job) for job in request.jobs))
        if not result.succeeded:
            failed = [
                f"{n} {v.state.value}"
                for n, v in result.views.items()
                if v.state is not JobState.SUCCEEDED
            ]
            result.message = f"job(s) failed: {', '.join(failed)}" + (
                f"; skipped: {', '.join(f'{n} ({why})' for n, why in result.skipped.items())}"
                if result.skipped
                else ""
            )
            raise ApplicationError(
                result.message, result.model_dump(mode="json"), type="DagFailed", non_retryable=True
            )
        return result

    @workflow.query(name="describe")
    def describe(self) -> DagResult:
        """The outcomes so far (jobs not in ``views`` or ``skipped`` wait or run)."""
        return self._result
