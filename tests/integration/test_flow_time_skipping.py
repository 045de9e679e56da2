"""Unit-testing a user workflow: examples/pipeline.py with a fake job runner.

This is the pattern docs/workflows-as-code.md describes: the user's workflow is
the real one; the ``BatchJob`` child workflow it starts is replaced by a fake
registered under the same name, which "runs" a job by returning a finished view
(with the outputs the real containers would write). The time-skipping test
server needs no Docker, no agent and no control worker.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import JsonValue
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from titus_cluster import max_overlap, time_skipping_server

from titus_flow.contracts import BatchJobInput
from titus_flow.flow import fake_job_view, register_search_attributes
from titus_flow.userflows import find_workflow
from titus_flow.views import JobView
from titus_flow.worker import SANDBOX

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = Path(__file__).parents[2] / "examples"
QUEUE = "flow-ts"


async def _environment() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    await register_search_attributes(env.client)  # jobs carry them; unknown ones stall starts
    return env


@workflow.defn(name="BatchJob")
class FakeBatchJob:
    """Stands in for titus-flow's BatchJob workflow: answers from the job's env."""

    @workflow.run
    async def run(self, request: BatchJobInput) -> JobView:
        job = request.job
        env = job.container.env
        started = workflow.now()
        await workflow.sleep(timedelta(seconds=float(env.get("ENCODE_SECONDS", "1"))))
        if job.name == "split":
            count = int(env["CHUNKS"])
            output: JsonValue = [f"chunk-{i}" for i in range(1, count + 1)]
        elif job.name.startswith("encode-"):
            if workflow.info().workflow_id.endswith("-fail-encode-chunk-3-1"):
                return fake_job_view(request, workflow.info().workflow_id, [None], failed=True)
            output = {
                "chunk": env["CHUNK"],
                "encoded": env["CHUNK"].upper(),
                "window": [started.timestamp(), workflow.now().timestamp()],
            }
        else:
            output = {"merged": env["PARTS"], "count": int(env["COUNT"])}
        return fake_job_view(request, workflow.info().workflow_id, [output])


async def test_pipeline_with_fake_jobs_fans_out_within_the_bound_and_merges_all() -> None:
    pipeline = find_workflow(f"{EXAMPLES / 'pipeline.py'}:Pipeline")
    env = await _environment()
    async with (
        env,
        Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[pipeline, FakeBatchJob],
            workflow_runner=SANDBOX,
        ),
    ):
        result = await env.client.execute_workflow(
            "Pipeline",
            {"chunks": 5, "max_concurrent": 2, "encode_seconds": 60},
            id="pipeline-ts-1",
            task_queue=QUEUE,
        )
        # Child ids: <parent id>-<job name>-<n>, readable and deterministic.
        assert result["job_ids"] == [
            "pipeline-ts-1-split-1",
            *(f"pipeline-ts-1-encode-chunk-{i}-1" for i in range(1, 6)),
            "pipeline-ts-1-merge-1",
        ]
        assert result["chunks"] == [f"chunk-{i}" for i in range(1, 6)]
        assert result["merged"]["count"] == 5
        assert (
            result["merged"]["merged"] == '["CHUNK-1", "CHUNK-2", "CHUNK-3", "CHUNK-4", "CHUNK-5"]'
        )
        # The bound, on the fake jobs' (skipped) clock: 5 jobs of 60 s, 2 at once.
        windows = [part["window"] for part in result["encoded"]]
        assert max_overlap(windows) == 2
        assert max(end for _, end in windows) - min(start for start, _ in windows) >= 180


async def test_failed_encode_fails_the_pipeline_with_job_failed_error() -> None:
    pipeline = find_workflow(f"{EXAMPLES / 'pipeline.py'}:Pipeline")
    env = await _environment()
    async with (
        env,
        Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[pipeline, FakeBatchJob],
            workflow_runner=SANDBOX,
        ),
    ):
        with pytest.raises(WorkflowFailureError) as caught:
            await env.client.execute_workflow(
                "Pipeline",
                {"chunks": 4, "max_concurrent": 4, "encode_seconds": 1},
                id="pipeline-ts-fail",
                task_queue=QUEUE,
            )
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "JobFailed", cause
    assert "1 of 4 jobs failed; first: job pipeline-ts-fail-encode-chunk-3-1" in cause.message
    assert "task 0: failed" in cause.message
